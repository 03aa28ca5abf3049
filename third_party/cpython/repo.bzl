"""The @cpython repository: a CPython source tree with Ferrule's own BUILD overlay.

In a WORKSPACE:

    load("@ferrule//third_party/cpython:repo.bzl", "cpython_source")

    cpython_source(name = "cpython")                      # ./tools/setup.sh's 3.11 copy
    cpython_source(name = "cpython", path = "/src/cpython")  # any 3.11 checkout
    cpython_source(name = "cpython313", version = "3.13")  # ./tools/setup.sh's 3.13 copy

The version must be an entry of sources.bzl's CPYTHON_VERSIONS, and the
tree's Include/patchlevel.h must say that version.

The source tree is linked in, never copied or modified; the overlay
(BUILD.cpython.bazel) and the per-platform pyconfig.h files come from this
package. Nothing runs configure: the build compiles the tree as it is.
"""

load(":sources.bzl", "CPYTHON_VERSIONS")

def _main_workspace_dir(rctx):
    return rctx.path(Label("@ferrule//:MODULE.bazel")).dirname

def _source_dir(rctx, entry):
    path = rctx.attr.path or rctx.os.environ.get(entry.src_env, "") or entry.setup_dir
    if path.startswith("/"):
        return rctx.path(path)
    return rctx.path("{}/{}".format(_main_workspace_dir(rctx), path))

def _version(rctx, src):
    # PY_VERSION from Include/patchlevel.h, e.g. "3.11.2".
    for line in rctx.read(src.get_child("Include").get_child("patchlevel.h")).split("\n"):
        words = [w for w in line.replace("\t", " ").split(" ") if w]
        if len(words) >= 3 and words[0] == "#define" and words[1] == "PY_VERSION":
            return words[2].strip('"')
    return ""

def _stub(rctx, message):
    # A repository whose targets load (so `bazel test //...` still loads in a
    # workspace without the sources) and fail with `message` when built.
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD.bazel", """\
load("@ferrule//third_party/cpython:stub.bzl", "cpython_missing")

package(default_visibility = ["//visibility:public"])

[cpython_missing(name = n, message = {message}) for n in [
    "python3",
    "python3t",
    "python",
    "stdlib",
    "testsuite",
    "headers",
    "python_headers",
    "t/headers",
    "t/python_headers",
    "libpython",
    "shared_modules_list",
    "builtin_modules_list",
]]
""".format(message = repr(message)))

def _cpython_source_impl(rctx):
    want = rctx.attr.version
    entry = CPYTHON_VERSIONS.get(want)
    if not entry:
        # A mistake in the MODULE.bazel / WORKSPACE call itself: fail now.
        fail("@{}: cpython_source(version = {}): Ferrule's overlay (third_party/cpython/sources.bzl) knows CPython {}".format(
            rctx.name,
            repr(want),
            ", ".join(sorted(CPYTHON_VERSIONS.keys())),
        ))
    src = _source_dir(rctx, entry)
    if not src.get_child("Include").get_child("Python.h").exists:
        msg = "CPython {} source not found at {}: run ./tools/setup.sh ({}), or set {} / cpython_source(path = ...)".format(want, src, entry.setup_script, entry.src_env)
        print("WARNING: @{}: {}".format(rctx.name, msg))
        _stub(rctx, msg)
        return
    version = _version(rctx, src)
    if not version.startswith(want + "."):
        msg = "CPython source at {} is version {} (Include/patchlevel.h), but @{} wants {}.x".format(src, version or "unknown", rctx.name, want)
        print("WARNING: @{}: {}".format(rctx.name, msg))
        _stub(rctx, msg)
        return

    # Link every top-level entry of the checkout (as new_local_repository
    # does), so edits to the sources are seen by the next build.
    for child in src.readdir():
        if child.basename in ("BUILD", "BUILD.bazel", "WORKSPACE", "WORKSPACE.bazel", "ferrule"):
            continue
        rctx.symlink(child, child.basename)
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.symlink(rctx.attr.build_file, "BUILD.bazel")
    rctx.file("ferrule/BUILD.bazel", "")
    rctx.file("ferrule/version.bzl", "CPYTHON_VERSION = {}\nCPYTHON_SOURCE = {}\n".format(repr(version), repr(str(src))))
    rctx.file("ferrule/extra.bzl", "EXTRA_EXTENSIONS = {}\n".format(repr(dict(rctx.attr.extra_extensions))))

cpython_source = repository_rule(
    implementation = _cpython_source_impl,
    doc = "A CPython source tree of a version in CPYTHON_VERSIONS (path, its $FERRULE_CPYTHON*_SRC, or ./tools/setup.sh's copy) with Ferrule's BUILD overlay.",
    attrs = {
        "version": attr.string(
            default = "3.11",
            doc = "The CPython X.Y of the tree: an entry of sources.bzl's CPYTHON_VERSIONS; the tree must say the same.",
        ),
        "path": attr.string(
            doc = "The CPython checkout: absolute, or relative to the main workspace. " +
                  "Default: the version's variable ($FERRULE_CPYTHON_SRC for 3.11, $FERRULE_CPYTHON313_SRC for 3.13), " +
                  "else its setup step's copy (.ferrule/cpython-src, .ferrule/cpython313-src).",
        ),
        "extra_extensions": attr.string_dict(
            doc = "More extension modules for the interpreter's lib-dynload: module name -> label of " +
                  "a cpython_extension built against @<name>//:python_headers (e.g. a Rust module).",
        ),
        "build_file": attr.label(
            default = Label("@ferrule//third_party/cpython:BUILD.cpython.bazel"),
            doc = "The BUILD overlay for the tree.",
        ),
    },
    environ = sorted([e.src_env for e in CPYTHON_VERSIONS.values()]),
    local = True,
)

def cpython_dependencies(name = "cpython", name313 = "cpython313", **kwargs):
    """Declares @cpython (3.11) and @cpython313 (3.13), unless the WORKSPACE already has them.

    Ferrule's own workspace builds the Rust `_base64` module (examples/base64,
    built for this interpreter in //third_party/cpython/rust) into the 3.11
    interpreter, so `bazel run @cpython//:python3 -- -c "import _base64"` works.
    """
    kwargs.setdefault("extra_extensions", {"_base64": "@ferrule//third_party/cpython/rust:_base64"})
    if name not in native.existing_rules():
        cpython_source(name = name, **kwargs)
    if name313 not in native.existing_rules():
        cpython_source(name = name313, version = "3.13")
