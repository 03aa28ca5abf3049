//! `_base64`: a CPython extension module written in Rust on top of the
//! bindgen-generated `cpython_sys` crate, like the prototype of the "Rust for
//! CPython" proposal. Errors are Python exceptions, never panics across FFI.

use core::ffi::{c_char, c_int};
use core::ptr;
use cpython_sys as ffi;

mod codec;

/// Borrows the bytes of a bytes-like object (or, for decoding, an ASCII str)
/// for the duration of `f`. Returns null with a Python exception set on error.
unsafe fn with_bytes(
    obj: *mut ffi::PyObject,
    allow_str: bool,
    f: impl FnOnce(&[u8]) -> *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if allow_str && ffi::PyObject_IsInstance(obj, ptr::addr_of_mut!(ffi::PyUnicode_Type).cast()) == 1 {
        // Raises UnicodeEncodeError (a ValueError) for non-ASCII text.
        let ascii = ffi::PyUnicode_AsASCIIString(obj);
        if ascii.is_null() {
            return ptr::null_mut();
        }
        let result = with_bytes(ascii, false, f);
        ffi::Py_DECREF(ascii);
        return result;
    }
    let mut view: ffi::Py_buffer = core::mem::zeroed();
    if ffi::PyObject_GetBuffer(obj, &mut view, ffi::PyBUF_SIMPLE as c_int) != 0 {
        return ptr::null_mut();
    }
    let data: &[u8] = if view.len == 0 {
        &[]
    } else {
        core::slice::from_raw_parts(view.buf as *const u8, view.len as usize)
    };
    let result = f(data);
    ffi::PyBuffer_Release(&mut view);
    result
}

unsafe fn new_bytes(data: &[u8]) -> *mut ffi::PyObject {
    ffi::PyBytes_FromStringAndSize(data.as_ptr() as *const c_char, data.len() as ffi::Py_ssize_t)
}

unsafe extern "C" fn standard_b64encode(_module: *mut ffi::PyObject, arg: *mut ffi::PyObject) -> *mut ffi::PyObject {
    with_bytes(arg, false, |data| new_bytes(&codec::encode(data)))
}

unsafe extern "C" fn standard_b64decode(_module: *mut ffi::PyObject, arg: *mut ffi::PyObject) -> *mut ffi::PyObject {
    with_bytes(arg, true, |data| match codec::decode(data) {
        Ok(decoded) => new_bytes(&decoded),
        Err(err) => {
            let mut msg = err.to_string().into_bytes();
            msg.push(0);
            ffi::PyErr_SetString(ffi::PyExc_ValueError, msg.as_ptr() as *const c_char);
            ptr::null_mut()
        }
    })
}

static mut METHODS: [ffi::PyMethodDef; 3] = [
    ffi::PyMethodDef {
        ml_name: c"standard_b64encode".as_ptr(),
        ml_meth: Some(standard_b64encode),
        ml_flags: ffi::METH_O as c_int,
        ml_doc: c"Encode a bytes-like object with the standard base64 alphabet.".as_ptr(),
    },
    ffi::PyMethodDef {
        ml_name: c"standard_b64decode".as_ptr(),
        ml_meth: Some(standard_b64decode),
        ml_flags: ffi::METH_O as c_int,
        ml_doc: c"Decode standard base64 (bytes-like or ASCII str); ValueError on bad input.".as_ptr(),
    },
    ffi::PyMethodDef { ml_name: ptr::null(), ml_meth: None, ml_flags: 0, ml_doc: ptr::null() },
];

static mut MODULE: ffi::PyModuleDef = ffi::PyModuleDef {
    m_base: ffi::PyModuleDef_HEAD_INIT,
    m_name: c"_base64".as_ptr(),
    m_doc: c"Standard base64 implemented in Rust.".as_ptr(),
    m_size: 0,
    m_methods: ptr::null_mut(),
    m_slots: ptr::null_mut(),
    m_traverse: None,
    m_clear: None,
    m_free: None,
};

/// The module's entry point, found by the import system by name.
#[no_mangle]
pub unsafe extern "C" fn PyInit__base64() -> *mut ffi::PyObject {
    let module = ptr::addr_of_mut!(MODULE);
    (*module).m_methods = ptr::addr_of_mut!(METHODS).cast();
    ffi::PyModule_Create2(module, ffi::PYTHON_API_VERSION as c_int)
}
