//! A small safe layer over `cpython_sys` for modules written in Rust: errors
//! as `PyResult`, argument conversion (`FromPyArg`), return values
//! (`IntoPyObject`), the METH_FASTCALL argument parser the `#[pyfunction]`
//! wrappers call, and static method and module definitions. The macros
//! (`#[pyfunction]`, `pymodule!`) come from `cpython_macros` and generate
//! code against this crate; modules name only this crate.
//!
//! Nothing here keeps global mutable state, so modules built on it can
//! declare that they run without the GIL and in isolated interpreters.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use cpython_macros::{pyfunction, pymodule};
pub use cpython_sys as ffi;

/// A Python exception to raise, or one already set in the interpreter.
#[derive(Debug)]
pub struct PyErr(ErrState);

#[derive(Debug)]
enum ErrState {
    /// The interpreter's error indicator is set (a C API call failed).
    Set,
    /// A built-in exception type, by getter (extern statics are not const).
    Builtin(fn() -> *mut ffi::PyObject, String),
    /// An exception class found as `module.attr` when raised (e.g. binascii.Error).
    Named(&'static str, &'static str, String),
}

pub type PyResult<T> = Result<T, PyErr>;

impl PyErr {
    /// The error a failed C API call has already set.
    pub fn fetch() -> Self {
        PyErr(ErrState::Set)
    }
    pub fn type_error(msg: impl Into<String>) -> Self {
        PyErr(ErrState::Builtin(|| unsafe { ffi::PyExc_TypeError }, msg.into()))
    }
    pub fn value_error(msg: impl Into<String>) -> Self {
        PyErr(ErrState::Builtin(|| unsafe { ffi::PyExc_ValueError }, msg.into()))
    }
    pub fn system_error(msg: impl Into<String>) -> Self {
        PyErr(ErrState::Builtin(|| unsafe { ffi::PyExc_SystemError }, msg.into()))
    }
    /// An instance of the class `module.attr`, imported when raised; if that
    /// fails, the import error is raised instead.
    pub fn named(module: &'static str, attr: &'static str, msg: impl Into<String>) -> Self {
        PyErr(ErrState::Named(module, attr, msg.into()))
    }

    /// Sets the interpreter's error indicator to this error.
    ///
    /// # Safety
    /// The caller holds an attached thread state (the GIL, where there is one).
    pub unsafe fn restore(self) {
        match self.0 {
            ErrState::Set => {}
            ErrState::Builtin(ty, msg) => set_string(ty(), &msg),
            ErrState::Named(module, attr, msg) => {
                let m = ffi::PyImport_ImportModule(cstring(module).as_ptr() as *const c_char);
                if m.is_null() {
                    return;
                }
                let ty = ffi::PyObject_GetAttrString(m, cstring(attr).as_ptr() as *const c_char);
                ffi::Py_DECREF(m);
                if ty.is_null() {
                    return;
                }
                set_string(ty, &msg);
                ffi::Py_DECREF(ty);
            }
        }
    }
}

fn cstring(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().filter(|&b| b != 0).collect();
    v.push(0);
    v
}

unsafe fn set_string(ty: *mut ffi::PyObject, msg: &str) {
    ffi::PyErr_SetString(ty, cstring(msg).as_ptr() as *const c_char);
}

/// Values a function returns to Python: converted to a new reference.
pub trait IntoPyObject {
    /// # Safety
    /// The caller holds an attached thread state.
    unsafe fn into_py(self) -> PyResult<*mut ffi::PyObject>;
}

unsafe fn bytes_object(data: &[u8]) -> PyResult<*mut ffi::PyObject> {
    let obj = ffi::PyBytes_FromStringAndSize(data.as_ptr() as *const c_char, data.len() as ffi::Py_ssize_t);
    if obj.is_null() {
        Err(PyErr::fetch())
    } else {
        Ok(obj)
    }
}

impl IntoPyObject for Vec<u8> {
    unsafe fn into_py(self) -> PyResult<*mut ffi::PyObject> {
        bytes_object(&self)
    }
}

impl IntoPyObject for &[u8] {
    unsafe fn into_py(self) -> PyResult<*mut ffi::PyObject> {
        bytes_object(self)
    }
}

/// Arguments a function takes from Python. `Holder` keeps what the value
/// borrows (e.g. a buffer view) alive for the call and releases it after.
pub trait FromPyArg<'a>: Sized {
    type Holder: Default;
    /// Converts the argument `obj` (borrowed; null when an optional argument
    /// is absent) of parameter `param` of function `func`.
    ///
    /// # Safety
    /// `obj` is null or a live object; the caller holds an attached thread state.
    unsafe fn from_arg(obj: *mut ffi::PyObject, holder: &'a mut Self::Holder, func: &str, param: &str) -> PyResult<Self>;
}

/// A buffer view held for the duration of a call.
#[derive(Default)]
pub struct BufferHolder(Option<Box<ffi::Py_buffer>>);

impl Drop for BufferHolder {
    fn drop(&mut self) {
        if let Some(view) = self.0.as_mut() {
            unsafe { ffi::PyBuffer_Release(&mut **view) };
        }
    }
}

unsafe fn borrow_buffer<'a>(obj: *mut ffi::PyObject, holder: &'a mut BufferHolder, func: &str, param: &str) -> PyResult<&'a [u8]> {
    if obj.is_null() {
        return Err(PyErr::type_error(format!("{func}() missing required argument '{param}'")));
    }
    let mut view: Box<ffi::Py_buffer> = Box::new(core::mem::zeroed());
    if ffi::PyObject_GetBuffer(obj, &mut *view, ffi::PyBUF_SIMPLE as c_int) != 0 {
        return Err(PyErr::fetch());
    }
    let (buf, len) = (view.buf as *const u8, view.len as usize);
    holder.0 = Some(view);
    Ok(if len == 0 { &[] } else { core::slice::from_raw_parts(buf, len) })
}

/// A bytes-like object (the buffer protocol): bytes, bytearray, memoryview, ...
impl<'a> FromPyArg<'a> for &'a [u8] {
    type Holder = BufferHolder;
    unsafe fn from_arg(obj: *mut ffi::PyObject, holder: &'a mut BufferHolder, func: &str, param: &str) -> PyResult<Self> {
        borrow_buffer(obj, holder, func, param)
    }
}

/// A bytes-like object or an ASCII-only str, as Argument Clinic's
/// `ascii_buffer` converter (binascii's decoders) takes them.
#[derive(Clone, Copy, Debug)]
pub struct AsciiBuffer<'a>(pub &'a [u8]);

impl core::ops::Deref for AsciiBuffer<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0
    }
}

impl<'a> FromPyArg<'a> for AsciiBuffer<'a> {
    type Holder = BufferHolder;
    unsafe fn from_arg(obj: *mut ffi::PyObject, holder: &'a mut BufferHolder, func: &str, param: &str) -> PyResult<Self> {
        if !obj.is_null() && ffi::PyObject_IsInstance(obj, ptr::addr_of_mut!(ffi::PyUnicode_Type).cast()) == 1 {
            // The UTF-8 form is cached in the str, which the caller keeps alive.
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
            if data.is_null() {
                return Err(PyErr::fetch());
            }
            let text = core::slice::from_raw_parts(data as *const u8, len as usize);
            if !text.is_ascii() {
                return Err(PyErr::value_error("string argument should contain only ASCII characters"));
            }
            return Ok(AsciiBuffer(text));
        }
        borrow_buffer(obj, holder, func, param).map(AsciiBuffer)
    }
}

/// An optional parameter: absent or None gives `None`.
impl<'a, T: FromPyArg<'a>> FromPyArg<'a> for Option<T> {
    type Holder = T::Holder;
    unsafe fn from_arg(obj: *mut ffi::PyObject, holder: &'a mut T::Holder, func: &str, param: &str) -> PyResult<Self> {
        if obj.is_null() || obj == ptr::addr_of_mut!(ffi::_Py_NoneStruct) {
            return Ok(None);
        }
        T::from_arg(obj, holder, func, param).map(Some)
    }
}

/// Any object's truth value (absent: false).
impl<'a> FromPyArg<'a> for bool {
    type Holder = ();
    unsafe fn from_arg(obj: *mut ffi::PyObject, _: &'a mut (), _func: &str, _param: &str) -> PyResult<Self> {
        if obj.is_null() {
            return Ok(false);
        }
        match ffi::PyObject_IsTrue(obj) {
            -1 => Err(PyErr::fetch()),
            v => Ok(v == 1),
        }
    }
}

unsafe fn utf8<'a>(obj: *mut ffi::PyObject) -> Option<&'a [u8]> {
    let mut len: ffi::Py_ssize_t = 0;
    let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
    if data.is_null() {
        ffi::PyErr_Clear();
        return None;
    }
    Some(core::slice::from_raw_parts(data as *const u8, len as usize))
}

/// Matches the arguments of a METH_FASTCALL | METH_KEYWORDS call to the
/// parameters (`required` of them first): `out[i]` becomes the borrowed
/// argument of `params[i]`, or null when it was not given. The errors are
/// CPython's own TypeErrors for bad calls.
///
/// # Safety
/// `args` holds `nargs` positional arguments followed by one value per name
/// in the tuple `kwnames` (or `kwnames` is null), as vectorcall passes them.
pub unsafe fn parse_args(
    func: &str,
    params: &[&str],
    required: usize,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    out: &mut [*mut ffi::PyObject],
) -> PyResult<()> {
    let nargs = nargs as usize;
    let nkw = if kwnames.is_null() { 0 } else { ffi::PyTuple_Size(kwnames) as usize };
    if nargs > params.len() {
        return Err(PyErr::type_error(format!(
            "{func}() takes at most {} argument{} ({} given)",
            params.len(),
            if params.len() == 1 { "" } else { "s" },
            nargs + nkw
        )));
    }
    for i in 0..nargs {
        out[i] = *args.add(i);
    }
    for k in 0..nkw {
        let name = ffi::PyTuple_GetItem(kwnames, k as ffi::Py_ssize_t);
        let text = utf8(name).unwrap_or(b"?");
        let Some(i) = params.iter().position(|p| p.as_bytes() == text) else {
            return Err(PyErr::type_error(format!(
                "{func}() got an unexpected keyword argument '{}'",
                String::from_utf8_lossy(text)
            )));
        };
        if !out[i].is_null() {
            return Err(PyErr::type_error(format!(
                "argument for {func}() given by name ('{}') and position ({})",
                params[i],
                i + 1
            )));
        }
        out[i] = *args.add(nargs + k);
    }
    for i in 0..required {
        if out[i].is_null() {
            return Err(PyErr::type_error(format!("{func}() missing required argument '{}' (pos {})", params[i], i + 1)));
        }
    }
    Ok(())
}

/// Runs a wrapper's body: an error or a panic becomes a Python exception
/// (a panic, SystemError) and null, as the C API expects; nothing unwinds
/// into C.
///
/// # Safety
/// The caller holds an attached thread state.
pub unsafe fn trampoline(body: impl FnOnce() -> PyResult<*mut ffi::PyObject>) -> *mut ffi::PyObject {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(obj)) => obj,
        Ok(Err(err)) => {
            err.restore();
            ptr::null_mut()
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            PyErr::system_error(format!("Rust code panicked: {msg}")).restore();
            ptr::null_mut()
        }
    }
}

/// A METH_FASTCALL | METH_KEYWORDS function's C signature.
pub type FastcallFn = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

type CFunction = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject;

const fn c_str(s: &'static str) -> *const c_char {
    let b = s.as_bytes();
    assert!(!b.is_empty() && b[b.len() - 1] == 0, "names and docs end in NUL");
    b.as_ptr() as *const c_char
}

/// A module function's `PyMethodDef`, made by `#[pyfunction]`.
#[repr(transparent)]
pub struct MethodDef(pub ffi::PyMethodDef);

// The definition is never written after construction.
unsafe impl Sync for MethodDef {}

impl MethodDef {
    /// `name` and `doc` end in NUL.
    pub const fn fastcall(name: &'static str, f: FastcallFn, doc: &'static str) -> Self {
        MethodDef(ffi::PyMethodDef {
            ml_name: c_str(name),
            // The C API stores every kind of function as a PyCFunction and
            // calls it by the flags.
            ml_meth: Some(unsafe { core::mem::transmute::<FastcallFn, CFunction>(f) }),
            ml_flags: (ffi::METH_FASTCALL | ffi::METH_KEYWORDS) as c_int,
            ml_doc: c_str(doc),
        })
    }

    /// The end of a method table.
    pub const END: MethodDef = MethodDef(ffi::PyMethodDef { ml_name: ptr::null(), ml_meth: None, ml_flags: 0, ml_doc: ptr::null() });
}

/// A module definition for multi-phase initialisation, made by `pymodule!`.
/// Its slots declare that the module supports per-interpreter GILs (3.12+)
/// and does not need the GIL (3.13+), by the version it is compiled for.
pub struct ModuleDef {
    def: UnsafeCell<ffi::PyModuleDef>,
}

// PyModuleDef_Init writes the object header once, under the import lock.
unsafe impl Sync for ModuleDef {}

/// `Py_mod_multiple_interpreters`, `Py_mod_gil` and their values (moduleobject.h).
const MOD_MULTIPLE_INTERPRETERS: c_int = 3;
const MOD_PER_INTERPRETER_GIL_SUPPORTED: usize = 2;
const MOD_GIL: c_int = 4;
const MOD_GIL_NOT_USED: usize = 1;

#[repr(transparent)]
pub struct Slots([ffi::PyModuleDef_Slot; 3]);

unsafe impl Sync for Slots {}

const fn slot(slot: c_int, value: usize) -> ffi::PyModuleDef_Slot {
    ffi::PyModuleDef_Slot { slot, value: value as *mut c_void }
}

impl Slots {
    pub const FOR_THIS_VERSION: Slots = {
        let end = slot(0, 0);
        let interpreters = slot(MOD_MULTIPLE_INTERPRETERS, MOD_PER_INTERPRETER_GIL_SUPPORTED);
        // The X.Y of the headers the module is compiled against.
        let minor = if ffi::PY_MAJOR_VERSION > 3 { u32::MAX } else { ffi::PY_MINOR_VERSION };
        if minor >= 13 {
            Slots([interpreters, slot(MOD_GIL, MOD_GIL_NOT_USED), end])
        } else if minor >= 12 {
            Slots([interpreters, end, end])
        } else {
            Slots([end, end, end])
        }
    };
}

impl ModuleDef {
    /// `name` and `doc` end in NUL; `methods` ends with `MethodDef::END`.
    pub const fn new(name: &'static str, doc: &'static str, methods: &'static [MethodDef], slots: &'static Slots) -> Self {
        ModuleDef {
            def: UnsafeCell::new(ffi::PyModuleDef {
                m_base: ffi::PyModuleDef_HEAD_INIT,
                m_name: c_str(name),
                m_doc: c_str(doc),
                m_size: 0,
                m_methods: methods.as_ptr() as *mut ffi::PyMethodDef,
                m_slots: slots.0.as_ptr() as *mut ffi::PyModuleDef_Slot,
                m_traverse: None,
                m_clear: None,
                m_free: None,
            }),
        }
    }

    /// What `PyInit_<name>` returns: the initialised definition.
    ///
    /// # Safety
    /// Called by the import system, from `PyInit_<name>`.
    pub unsafe fn init(&'static self) -> *mut ffi::PyObject {
        ffi::PyModuleDef_Init(self.def.get())
    }
}
