//! Compares the layout of the bindgen-generated structs with what the C
//! compiler gives the same headers: runs the C program layout.c (its path is
//! CPYTHON_LAYOUT_C, relative to the test's runfiles directory) and checks
//! every size and offset it prints. bindgen's own layout assertions (against
//! libclang) are compiled into cpython_sys as well; this checks gcc's.
use core::mem::{offset_of, size_of};
use cpython_sys as ffi;
use std::collections::BTreeMap;

fn rust_layout() -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    m.insert("size PyObject", size_of::<ffi::PyObject>());
    m.insert("size PyVarObject", size_of::<ffi::PyVarObject>());
    m.insert("size PyTypeObject", size_of::<ffi::PyTypeObject>());
    m.insert("size PyModuleDef", size_of::<ffi::PyModuleDef>());
    m.insert("size PyModuleDef_Base", size_of::<ffi::PyModuleDef_Base>());
    m.insert("size PyModuleDef_Slot", size_of::<ffi::PyModuleDef_Slot>());
    m.insert("size PyMethodDef", size_of::<ffi::PyMethodDef>());
    m.insert("size Py_buffer", size_of::<ffi::Py_buffer>());
    m.insert("size PyBytesObject", size_of::<ffi::PyBytesObject>());
    m.insert("offset PyObject.ob_type", offset_of!(ffi::PyObject, ob_type));
    #[cfg(Py_GIL_DISABLED)]
    {
        m.insert("offset PyObject.ob_tid", offset_of!(ffi::PyObject, ob_tid));
        m.insert("offset PyObject.ob_ref_local", offset_of!(ffi::PyObject, ob_ref_local));
        m.insert("offset PyObject.ob_ref_shared", offset_of!(ffi::PyObject, ob_ref_shared));
    }
    #[cfg(not(Py_GIL_DISABLED))]
    m.insert("offset PyObject.ob_refcnt", offset_of!(ffi::PyObject, __bindgen_anon_1));
    m.insert("offset PyVarObject.ob_size", offset_of!(ffi::PyVarObject, ob_size));
    m.insert("offset PyTypeObject.tp_name", offset_of!(ffi::PyTypeObject, tp_name));
    m.insert("offset PyTypeObject.tp_basicsize", offset_of!(ffi::PyTypeObject, tp_basicsize));
    m.insert("offset PyTypeObject.tp_dealloc", offset_of!(ffi::PyTypeObject, tp_dealloc));
    m.insert("offset PyTypeObject.tp_as_buffer", offset_of!(ffi::PyTypeObject, tp_as_buffer));
    m.insert("offset PyTypeObject.tp_flags", offset_of!(ffi::PyTypeObject, tp_flags));
    m.insert("offset PyTypeObject.tp_methods", offset_of!(ffi::PyTypeObject, tp_methods));
    m.insert("offset PyTypeObject.tp_vectorcall", offset_of!(ffi::PyTypeObject, tp_vectorcall));
    m.insert("offset PyModuleDef.m_name", offset_of!(ffi::PyModuleDef, m_name));
    m.insert("offset PyModuleDef.m_methods", offset_of!(ffi::PyModuleDef, m_methods));
    m.insert("offset PyModuleDef.m_slots", offset_of!(ffi::PyModuleDef, m_slots));
    m.insert("offset PyModuleDef.m_free", offset_of!(ffi::PyModuleDef, m_free));
    m.insert("offset PyMethodDef.ml_flags", offset_of!(ffi::PyMethodDef, ml_flags));
    m.insert("offset Py_buffer.buf", offset_of!(ffi::Py_buffer, buf));
    m.insert("offset Py_buffer.len", offset_of!(ffi::Py_buffer, len));
    m.insert("offset Py_buffer.shape", offset_of!(ffi::Py_buffer, shape));
    m.insert("offset Py_buffer.internal", offset_of!(ffi::Py_buffer, internal));
    m.insert("offset PyBytesObject.ob_shash", offset_of!(ffi::PyBytesObject, ob_shash));
    m.insert("offset PyBytesObject.ob_sval", offset_of!(ffi::PyBytesObject, ob_sval));
    m
}

fn c_layout() -> BTreeMap<String, usize> {
    let exe = env!("CPYTHON_LAYOUT_C");
    let out = std::process::Command::new(exe).output().unwrap_or_else(|e| panic!("running {exe}: {e}"));
    assert!(out.status.success(), "{exe} failed: {:?}", out.status);
    let mut m = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        m.insert(key.to_string(), value.parse().unwrap());
    }
    m
}

#[test]
fn layout_matches_the_c_compiler() {
    let rust = rust_layout();
    let c = c_layout();
    let rust_keys: Vec<&str> = rust.keys().copied().collect();
    let c_keys: Vec<&str> = c.keys().map(String::as_str).collect();
    assert_eq!(rust_keys, c_keys, "the C program and the test check different fields");
    for (key, size) in &rust {
        assert_eq!(*size, c[*key], "{key}: Rust {size}, C {}", c[*key]);
    }
}

#[test]
fn object_header_is_the_configurations() {
    // 16 bytes with the GIL; the free-threaded header adds the owning
    // thread, the biased and shared reference counts and a mutex (32).
    let want = if cfg!(Py_GIL_DISABLED) { 32 } else { 16 };
    assert_eq!(size_of::<ffi::PyObject>(), want);
}
