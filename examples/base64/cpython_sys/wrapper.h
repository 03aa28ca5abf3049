/* What cpython_sys binds for modules built into the interpreter: the public
 * C API and, when the target defines Py_BUILD_CORE (as CPython compiles its
 * core), internal headers of the core runtime. */
#include "Python.h"
#ifdef Py_BUILD_CORE
#include "internal/pycore_object.h"
#include "internal/pycore_long.h"
#endif
