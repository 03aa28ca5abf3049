"""A repository with an installed CPython's headers, for extension modules and bindgen.

It holds `Python.h` and friends, the target's real `pyconfig.h` (Debian's
/usr/include/python3.X/pyconfig.h is only a multiarch wrapper), the C library
headers that Python.h includes (listed by `gcc -M` at fetch time, so bindgen
actions can use -nostdinc and declare every header they read), and the
extension-module suffix (EXT_SUFFIX) of that interpreter.
"""

def _run(rctx, args):
    res = rctx.execute(args)
    if res.return_code != 0:
        fail("ferrule_python_headers: `{}` failed: {}".format(" ".join([str(a) for a in args]), res.stderr))
    return res.stdout.strip()

def _python_headers_impl(rctx):
    python = rctx.path(rctx.attr.python)
    if not python.exists:
        fail("ferrule_python_headers: {} not found: install python{}-dev (./tools/setup.sh)".format(python, rctx.attr.version))
    script = "; ".join([
        "import sysconfig",
        "print(sysconfig.get_paths()['include'])",
        "print(sysconfig.get_config_var('EXT_SUFFIX'))",
        "print(sysconfig.get_config_var('MULTIARCH') or '')",
        "print(sysconfig.get_config_var('SOABI') or '')",
    ])
    include, ext_suffix, multiarch, soabi = _run(rctx, [python, "-c", script]).split("\n")
    inc = rctx.path(include)
    if not inc.get_child("Python.h").exists:
        fail("ferrule_python_headers: {} has no Python.h: install python{}-dev".format(inc, rctx.attr.version))
    inc_name = "python" + rctx.attr.version
    for child in inc.readdir():
        if child.basename != "pyconfig.h":
            rctx.symlink(child, "include/{}/{}".format(inc_name, child.basename))
    pyconfig = inc.get_child("pyconfig.h")
    if multiarch:
        real = rctx.path("/usr/include/{}/{}/pyconfig.h".format(multiarch, inc_name))
        if real.exists:
            pyconfig = real
    rctx.symlink(pyconfig, "include/{}/pyconfig.h".format(inc_name))

    # The C library headers Python.h reads, linked under sysinclude/ with
    # their paths below /usr/include: those of this Python.h, and those the
    # Python.h of every CPython version Ferrule builds from source includes
    # (their bindgen actions use this C library too).
    # (pyconfig.h defines _GNU_SOURCE, which makes the C library include more.)
    rctx.file("probe.h", "#define _GNU_SOURCE 1\n" + "".join(["#include <{}>\n".format(h) for h in rctx.attr.more_system_headers]) + '#include "Python.h"\n')
    deps = _run(rctx, ["gcc", "-M", "-fno-canonical-system-headers", "-x", "c", "-I", str(inc), "-I", str(pyconfig.dirname), str(rctx.path("probe.h"))])
    sysheaders = {}
    for word in deps.replace("\\\n", " ").split(" "):
        if word.startswith("/usr/include/") and ("/" + inc_name + "/") not in word:
            sysheaders[word] = True
    for h in sorted(sysheaders.keys()):
        rctx.symlink(rctx.path(h), "sysinclude/" + h[len("/usr/include/"):])
    # The interpreter itself, for tests that import the built modules.
    rctx.symlink(python, "bin/python3")
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD.bazel", """\
load("@ferrule//rules/private:toolchain.bzl", "cpython_headers")

package(default_visibility = ["//visibility:public"])

# The interpreter these headers belong to (runs tests of extension modules).
exports_files(["bin/python3"])

cc_library(
    name = "cc_headers",
    hdrs = glob(["include/{inc}/**/*.h"]),
    includes = ["include/{inc}"],
)

# Headers of {python} ({soabi}), extension suffix {ext}.
cpython_headers(
    name = "headers",
    hdrs = glob(["include/{inc}/**/*.h"]),
    include_dir = "include/{inc}",
    system_hdrs = glob(["sysinclude/**"]),
    system_include_dirs = ["sysinclude/{multiarch}", "sysinclude"],
    ext_suffix = "{ext}",
    cc = ":cc_headers",
)

# The default headers for targets of this machine's kind of platform.
toolchain(
    name = "headers_toolchain",
    target_compatible_with = ["@platforms//os:linux", "@platforms//cpu:{cpu}"],
    toolchain = ":headers",
    toolchain_type = "@ferrule//toolchains/python:headers_toolchain_type",
)
""".format(cpu = {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(rctx.os.arch, rctx.os.arch), inc = inc_name, python = python, soabi = soabi, ext = ext_suffix, multiarch = multiarch))

ferrule_python_headers = repository_rule(
    implementation = _python_headers_impl,
    attrs = {
        "python": attr.string(default = "/usr/bin/python3.14", doc = "The installed interpreter whose headers and EXT_SUFFIX are used."),
        "version": attr.string(default = "3.14", doc = "Its X.Y version."),
        "more_system_headers": attr.string_list(
            default = ["sys/time.h", "sys/select.h", "sys/stat.h", "sys/types.h", "time.h", "unistd.h", "limits.h", "math.h", "stdio.h", "stdlib.h", "string.h", "errno.h", "assert.h", "wchar.h", "inttypes.h", "stdint.h", "stddef.h", "stdarg.h", "stdbool.h", "float.h", "signal.h", "fcntl.h", "pthread.h"],
            doc = "C library headers linked in besides those this Python.h includes (older and newer Python.h include others).",
        ),
    },
    local = True,
    doc = "Links an installed CPython's headers into a repository with :headers (cpython_headers) and :cc_headers (cc_library).",
)
