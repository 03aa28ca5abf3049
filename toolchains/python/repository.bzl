"""A repository with an installed CPython's headers, for extension modules and bindgen.

It holds `Python.h` and friends, the target's real `pyconfig.h` (Debian's
/usr/include/python3.X/pyconfig.h is only a multiarch wrapper), the C library
headers that Python.h includes (listed by the target's `gcc -M` at fetch
time, so bindgen actions can use -nostdinc and declare every header they
read), the extension-module suffix (EXT_SUFFIX), and a toolchain() for the
target's platform.

For the machine's own architecture the interpreter (`python`) says where its
headers are. For another one (Debian's libpython3.X-dev:arm64 installs only
headers and libraries) `multiarch` names the target and the suffix follows
from the version and the triple, as CPython's configure makes it.
"""

load("//toolchains:cpu.bzl", "cpu_constraint")

def _run(rctx, args):
    res = rctx.execute(args)
    if res.return_code != 0:
        fail("ferrule_python_headers: `{}` failed: {}".format(" ".join([str(a) for a in args]), res.stderr))
    return res.stdout.strip()

def _interpreter_facts(rctx):
    python = rctx.path(rctx.attr.python)
    if not python.exists:
        fail("ferrule_python_headers: {} not found: install python{}-dev (./tools/setup.sh)".format(python, rctx.attr.version))
    script = "; ".join([
        "import sysconfig",
        "print(sysconfig.get_paths()['include'])",
        "print(sysconfig.get_config_var('EXT_SUFFIX'))",
        "print(sysconfig.get_config_var('MULTIARCH') or '')",
    ])
    include, ext_suffix, multiarch = _run(rctx, [python, "-c", script]).split("\n")
    return python, include, ext_suffix, multiarch

def _normalize(p):
    # An absolute path without "." and ".." segments (gcc prints both).
    out = []
    for part in p.split("/"):
        if part == "..":
            if out:
                out.pop()
        elif part and part != ".":
            out.append(part)
    return "/" + "/".join(out)

def _search_dirs(rctx, gcc):
    # The C compiler's #include <...> search list, in order.
    res = rctx.execute([gcc, "-E", "-x", "c", "-v", "/dev/null"])
    dirs, on = [], False
    for line in res.stderr.splitlines():
        if line.startswith("#include <...> search starts here"):
            on = True
        elif line.startswith("End of search list"):
            on = False
        elif on:
            d = _normalize(line.strip())

            # (The compiler's own headers are not the C library's: bindgen
            # brings clang's.)
            if "/gcc/" not in d and "/gcc-cross/" not in d:
                dirs.append(d)
    if not dirs:
        fail("ferrule_python_headers: `{} -v` listed no include directories".format(gcc))
    return dirs

def _python_headers_impl(rctx):
    version = rctx.attr.version
    inc_name = "python" + version
    python = None
    if rctx.attr.multiarch:
        multiarch = rctx.attr.multiarch
        include = "/usr/include/" + inc_name
        ext_suffix = ".cpython-{}-{}.so".format(version.replace(".", ""), multiarch)
    else:
        python, include, ext_suffix, multiarch = _interpreter_facts(rctx)
    cpu = cpu_constraint(multiarch)
    if not cpu:
        fail("ferrule_python_headers: no platform constraint known for {}".format(multiarch))
    inc = rctx.path(include)
    if not inc.get_child("Python.h").exists:
        fail("ferrule_python_headers: {} has no Python.h: install python{}-dev".format(inc, version))
    for child in inc.readdir():
        if child.basename != "pyconfig.h":
            rctx.symlink(child, "include/{}/{}".format(inc_name, child.basename))
    pyconfig = rctx.path("/usr/include/{}/{}/pyconfig.h".format(multiarch, inc_name))
    if not pyconfig.exists:
        if rctx.attr.multiarch:
            fail("ferrule_python_headers: {} not found: install libpython{}-dev for {}".format(pyconfig, version, multiarch))
        pyconfig = inc.get_child("pyconfig.h")
    rctx.symlink(pyconfig, "include/{}/pyconfig.h".format(inc_name))

    # The C library headers Python.h reads, linked under sysinclude/N/ for
    # the Nth directory of the target compiler's search list: those of this
    # Python.h, and those the Python.h of every CPython version Ferrule
    # builds from source includes (their bindgen actions use this C library
    # too). pyconfig.h defines _GNU_SOURCE, which makes the C library include
    # more.
    gcc = rctx.attr.gcc or "gcc"
    dirs = _search_dirs(rctx, gcc)
    rctx.file("probe.h", "#define _GNU_SOURCE 1\n" + "".join(["#include <{}>\n".format(h) for h in rctx.attr.more_system_headers]) + '#include "Python.h"\n')
    deps = _run(rctx, [gcc, "-M", "-fno-canonical-system-headers", "-x", "c", "-I", str(inc), "-I", str(pyconfig.dirname), str(rctx.path("probe.h"))])
    used = {}
    for word in deps.replace("\\\n", " ").split(" "):
        word = word.strip()
        if not word.startswith("/") or ("/" + inc_name + "/") in word:
            continue
        word = _normalize(word)
        for i, d in enumerate(dirs):
            if word.startswith(d + "/"):
                rctx.symlink(rctx.path(word), "sysinclude/{}/{}".format(i, word[len(d) + 1:]))
                used[i] = True
                break
    include_dirs = ["sysinclude/{}".format(i) for i in range(len(dirs)) if i in used]
    if python:
        # The interpreter itself, for tests that import the built modules.
        rctx.symlink(python, "bin/python3")
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD.bazel", """\
load("@ferrule//rules/private:toolchain.bzl", "cpython_headers")

package(default_visibility = ["//visibility:public"])

{interpreter}
cc_library(
    name = "cc_headers",
    hdrs = glob(["include/{inc}/**/*.h"]),
    includes = ["include/{inc}"],
)

# Headers of CPython {version} for {multiarch}, extension suffix {ext}.
cpython_headers(
    name = "headers",
    hdrs = glob(["include/{inc}/**/*.h"]),
    include_dir = "include/{inc}",
    system_hdrs = glob(["sysinclude/**"]),
    system_include_dirs = {include_dirs},
    ext_suffix = "{ext}",
    cc = ":cc_headers",
)

# The default headers for targets of that platform.
toolchain(
    name = "headers_toolchain",
    target_compatible_with = ["@platforms//os:linux", "@platforms//cpu:{cpu}"],
    toolchain = ":headers",
    toolchain_type = "@ferrule//toolchains/python:headers_toolchain_type",
)
""".format(
        interpreter = '# The interpreter these headers belong to (runs tests of extension modules).\nexports_files(["bin/python3"])\n' if python else "",
        inc = inc_name,
        version = version,
        multiarch = multiarch,
        ext = ext_suffix,
        include_dirs = repr(include_dirs),
        cpu = cpu,
    ))

ferrule_python_headers = repository_rule(
    implementation = _python_headers_impl,
    attrs = {
        "python": attr.string(default = "/usr/bin/python3.14", doc = "The installed interpreter whose headers and EXT_SUFFIX are used (targets of this machine's architecture)."),
        "version": attr.string(default = "3.14", doc = "Its X.Y version."),
        "multiarch": attr.string(doc = "Another architecture's Debian multiarch triple (e.g. aarch64-linux-gnu): headers of libpython3.X-dev for it, no interpreter."),
        "gcc": attr.string(doc = "The target's C compiler, for the C library headers (default gcc; e.g. aarch64-linux-gnu-gcc)."),
        "more_system_headers": attr.string_list(
            default = ["sys/time.h", "sys/select.h", "sys/stat.h", "sys/types.h", "time.h", "unistd.h", "limits.h", "math.h", "stdio.h", "stdlib.h", "string.h", "errno.h", "assert.h", "wchar.h", "inttypes.h", "stdint.h", "stddef.h", "stdarg.h", "stdbool.h", "float.h", "signal.h", "fcntl.h", "pthread.h", "locale.h", "dlfcn.h"],
            doc = "C library headers linked in besides those this Python.h includes (older and newer Python.h include others; 3.13's internal headers, bound with Py_BUILD_CORE, locale.h and dlfcn.h).",
        ),
    },
    local = True,
    doc = "Links an installed CPython's headers into a repository with :headers (cpython_headers), :cc_headers (cc_library) and a headers toolchain.",
)
