/* _b16: a small C extension module (base16 / hex, as in base64.b16encode
 * and b16decode), built by cpython_extension from C sources. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static const char digits[] = "0123456789ABCDEF";

static PyObject *
b16encode(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, view.len * 2);
    if (out != NULL) {
        char *p = PyBytes_AS_STRING(out);
        const unsigned char *in = view.buf;
        for (Py_ssize_t i = 0; i < view.len; i++) {
            *p++ = digits[in[i] >> 4];
            *p++ = digits[in[i] & 15];
        }
    }
    PyBuffer_Release(&view);
    return out;
}

static int
nibble(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static PyObject *
b16decode(PyObject *module, PyObject *arg)
{
    PyObject *ascii = NULL;
    if (PyUnicode_Check(arg)) {
        ascii = PyUnicode_AsASCIIString(arg);
        if (ascii == NULL)
            return NULL;
        arg = ascii;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
        Py_XDECREF(ascii);
        return NULL;
    }
    PyObject *out = NULL;
    const unsigned char *in = view.buf;
    if (view.len % 2 != 0) {
        PyErr_SetString(PyExc_ValueError, "Odd-length string");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, view.len / 2);
    if (out == NULL)
        goto done;
    char *p = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < view.len; i += 2) {
        int hi = nibble(in[i]), lo = nibble(in[i + 1]);
        if (hi < 0 || lo < 0) {
            PyErr_SetString(PyExc_ValueError, "Non-base16 digit found");
            Py_CLEAR(out);
            goto done;
        }
        *p++ = (char)(hi << 4 | lo);
    }
done:
    PyBuffer_Release(&view);
    Py_XDECREF(ascii);
    return out;
}

static PyMethodDef methods[] = {
    {"b16encode", b16encode, METH_O, "Encode a bytes-like object as upper-case hex."},
    {"b16decode", b16decode, METH_O, "Decode upper-case hex; ValueError on bad input."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_b16", "Base16 in C.", 0, methods,
};

PyMODINIT_FUNC
PyInit__b16(void)
{
    return PyModule_Create(&module);
}
