/* Prints the sizes and field offsets of C API structs as the C compiler lays
 * them out with this interpreter's headers and pyconfig.h; layout_test.rs
 * compares them with the bindgen-generated Rust structs. */
#include "Python.h"

#include <stddef.h>
#include <stdio.h>

#define SIZE(T) printf("size %s %zu\n", #T, sizeof(T))
#define OFFSET(T, f) printf("offset %s.%s %zu\n", #T, #f, offsetof(T, f))

int main(void) {
    SIZE(PyObject);
    SIZE(PyVarObject);
    SIZE(PyTypeObject);
    SIZE(PyModuleDef);
    SIZE(PyModuleDef_Base);
    SIZE(PyModuleDef_Slot);
    SIZE(PyMethodDef);
    SIZE(Py_buffer);
    SIZE(PyBytesObject);
    OFFSET(PyObject, ob_type);
#ifdef Py_GIL_DISABLED
    OFFSET(PyObject, ob_tid);
    OFFSET(PyObject, ob_ref_local);
    OFFSET(PyObject, ob_ref_shared);
#else
    OFFSET(PyObject, ob_refcnt);
#endif
    OFFSET(PyVarObject, ob_size);
    OFFSET(PyTypeObject, tp_name);
    OFFSET(PyTypeObject, tp_basicsize);
    OFFSET(PyTypeObject, tp_dealloc);
    OFFSET(PyTypeObject, tp_as_buffer);
    OFFSET(PyTypeObject, tp_flags);
    OFFSET(PyTypeObject, tp_methods);
    OFFSET(PyTypeObject, tp_vectorcall);
    OFFSET(PyModuleDef, m_name);
    OFFSET(PyModuleDef, m_methods);
    OFFSET(PyModuleDef, m_slots);
    OFFSET(PyModuleDef, m_free);
    OFFSET(PyMethodDef, ml_flags);
    OFFSET(Py_buffer, buf);
    OFFSET(Py_buffer, len);
    OFFSET(Py_buffer, shape);
    OFFSET(Py_buffer, internal);
    OFFSET(PyBytesObject, ob_shash);
    OFFSET(PyBytesObject, ob_sval);
    return 0;
}
