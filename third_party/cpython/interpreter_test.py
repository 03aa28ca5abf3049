"""Checks of the interpreter @cpython built, run by that interpreter.

It must be CPython of the expected X.Y started from its own install tree (not from the
source tree or the host's Python), with the built-in and shared extension
modules Ferrule's overlay compiles importable (the shared ones from its
lib-dynload, including the Rust _base64 when the workspace adds it).
Arguments: the files listing the shared and the built-in modules, and X.Y
(X.Yt: the free-threaded build, which must run without the GIL after
importing every module).
"""
import importlib
import os
import sys
import sysconfig

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


shared_list, builtin_list, want = sys.argv[1:4]
free_threaded = want.endswith("t")
want = want.rstrip("t")
check("%d.%d" % sys.version_info[:2] == want, "version is %s: %s" % (want, sys.version.split()[0]))
check(sys.abiflags == ("t" if free_threaded else ""), "ABI flags %r" % sys.abiflags)
if sys.version_info >= (3, 13):
    check(sysconfig.get_config_var("Py_GIL_DISABLED") == (1 if free_threaded else 0),
          "sysconfig Py_GIL_DISABLED = %r" % sysconfig.get_config_var("Py_GIL_DISABLED"))
check(sys.implementation.name == "cpython", "implementation is cpython")
prefix = os.path.realpath(sys.prefix)
check(prefix.endswith(os.path.join("external", "cpython", "install")) or prefix.endswith("/install"),
      "sys.prefix is the install tree: %s" % prefix)
check(os.path.realpath(os.__file__).startswith(prefix), "os comes from the install tree: %s" % os.__file__)
check(not os.path.exists(os.path.join(prefix, "Lib")), "no source tree (Lib/) under the prefix")
check(sys.flags.dont_write_bytecode == 1, "tests do not write bytecode into Bazel's outputs")
check(sys.implementation._multiarch == sysconfig.get_config_var("MULTIARCH"), "sysconfig data matches sys.implementation")

with open(builtin_list) as f:
    builtin = f.read().split() + ["marshal", "_imp", "gc"]
check(len(builtin) >= 20, "%d built-in modules listed" % len(builtin))
for name in builtin:
    check(name in sys.builtin_module_names, "built-in module %s" % name)

suffix = sysconfig.get_config_var("EXT_SUFFIX")
with open(shared_list) as f:
    shared = f.read().split()
check(len(shared) >= 9, "%d shared modules listed" % len(shared))
for name in shared:
    try:
        mod = importlib.import_module(name)
    except ImportError as e:
        check(False, "import %s: %s" % (name, e))
        continue
    check(getattr(mod, "__file__", "").endswith(suffix), "shared module %s: %s" % (name, os.path.basename(mod.__file__)))

import zlib, binascii, json, struct, math
check(zlib.decompress(zlib.compress(b"ferrule" * 100)) == b"ferrule" * 100, "zlib round trip")
check(binascii.crc32(b"ferrule") == zlib.crc32(b"ferrule"), "binascii crc32 (zlib's) agrees with zlib")
check(json.loads(json.dumps({"a": [1, 2.5]})) == {"a": [1, 2.5]}, "json round trip (C accelerator)")
check(json.scanner.c_make_scanner is not None, "json uses _json")
check(struct.unpack("<iq", struct.pack("<iq", -1, 2**40)) == (-1, 2**40), "struct round trip")
check(math.isclose(math.gamma(5), 24.0), "math.gamma")
if "_base64" in shared:
    import _base64, base64
    data = bytes(range(256)) * 3
    check(_base64.standard_b64encode(data) == base64.standard_b64encode(data), "Rust _base64 agrees with base64")
    check(_base64.standard_b64decode(base64.standard_b64encode(data)) == data, "Rust _base64 decodes")

import importlib.util
import __hello__  # a frozen test module
check(importlib.util.find_spec("__hello__").origin == "frozen", "frozen modules are in the binary")

if sys.version_info >= (3, 13):
    # An extension module without Py_mod_gil turns the GIL back on.
    check(sys._is_gil_enabled() == (not free_threaded), "GIL enabled: %s" % sys._is_gil_enabled())

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all checks passed")
