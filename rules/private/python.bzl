"""cpython_bindgen and the extension-module naming rule."""

load(":providers.bzl", "BINDGEN_TOOLCHAIN_TYPE", "CPYTHON_HEADERS_TOOLCHAIN_TYPE", "CPythonHeadersInfo", "RUST_TOOLCHAIN_TYPE", "RustCrateInfo")

_ENV = {
    "PATH": "/usr/bin:/bin",
    "LC_ALL": "C",
    "SOURCE_DATE_EPOCH": "0",
}

# The headers toolchain is optional: a target naming its headers needs none.
_HEADERS_TOOLCHAIN = config_common.toolchain_type(CPYTHON_HEADERS_TOOLCHAIN_TYPE, mandatory = False)

def _headers(ctx):
    # The CPython build to bind or name modules for: the `headers` attribute,
    # else the headers toolchain registered for the target platform.
    if ctx.attr.headers:
        return ctx.attr.headers[CPythonHeadersInfo]
    tc = ctx.toolchains[CPYTHON_HEADERS_TOOLCHAIN_TYPE]
    if tc == None:
        fail("{}: no `headers` given and no CPython headers toolchain ({}) is registered for the target platform".format(ctx.label, CPYTHON_HEADERS_TOOLCHAIN_TYPE))
    return tc.headers

def _cpython_bindgen_impl(ctx):
    bg = ctx.toolchains[BINDGEN_TOOLCHAIN_TYPE].bindgen
    tc = ctx.toolchains[RUST_TOOLCHAIN_TYPE].rust
    py = _headers(ctx)
    out = ctx.actions.declare_file(ctx.attr.out or ctx.label.name + ".rs")
    if ctx.file.header:
        header = ctx.file.header.path
        extra = [ctx.file.header]
    else:
        header = py.include_dir + "/Python.h"
        extra = []
    args = ctx.actions.args()
    args.add("bindgen")
    args.add("--bindgen", bg.bindgen)
    args.add("--libclang", bg.libclang)
    args.add("--header", header)
    args.add("--out", out)
    if tc.rustfmt:
        # Formatted bindings are readable and diffable; rustfmt comes from
        # the pinned Rust toolchain, so the output stays reproducible.
        args.add("--rustfmt", tc.rustfmt)
        extra = extra + [tc.rustfmt]
        tool_files = [tc.files]
    else:
        args.add("--arg=--no-rustfmt-bindings")
        tool_files = []
    for kind, vals in [
        ("allowlist-function", ctx.attr.allowlist_functions),
        ("allowlist-type", ctx.attr.allowlist_types),
        ("allowlist-var", ctx.attr.allowlist_vars),
        ("blocklist-type", ctx.attr.blocklist_types),
        ("blocklist-item", ctx.attr.blocklist_items),
    ]:
        for v in vals:
            args.add("--arg=--{}={}".format(kind, v))
    if not ctx.attr.layout_tests:
        args.add("--arg=--no-layout-tests")
    for f in ctx.attr.bindgen_flags:
        args.add("--arg=" + f)
    args.add("--")
    args.add("--target=" + tc.target_triple)
    args.add("-nostdinc")
    args.add("-isystem", bg.clang_include_dir)
    for d in py.system_include_dirs:
        args.add("-isystem", d)
    args.add("-I", py.include_dir)
    for d in py.defines + ctx.attr.defines:
        args.add("-D" + d)
    args.add_all(ctx.attr.clang_args)
    ctx.actions.run(
        executable = ctx.executable._builder,
        arguments = [args],
        inputs = depset([bg.bindgen, bg.libclang] + extra + ctx.files.hdrs, transitive = [bg.clang_headers, py.hdrs, py.system_hdrs] + tool_files),
        outputs = [out],
        env = _ENV,
        mnemonic = "CPythonBindgen",
        progress_message = "Generating CPython bindings {} (bindgen {}, libclang {})".format(ctx.label, bg.version, bg.clang_version),
    )
    return [DefaultInfo(files = depset([out]))]

cpython_bindgen = rule(
    implementation = _cpython_bindgen_impl,
    doc = "Rust bindings to the CPython C API of a headers target, made by the pinned bindgen + libclang and normalised by the builder so they are byte-identical across machines.",
    attrs = {
        "headers": attr.label(providers = [CPythonHeadersInfo], doc = "The CPython build whose headers (and pyconfig.h) to bind; default: the CPython headers toolchain."),
        "header": attr.label(allow_single_file = [".h"], doc = "A wrapper header to bind instead of Python.h (e.g. one that also includes internal headers)."),
        "hdrs": attr.label_list(allow_files = [".h"], doc = "Other headers the wrapper header includes."),
        "allowlist_functions": attr.string_list(doc = "bindgen --allowlist-function regexes, e.g. Py.*"),
        "allowlist_types": attr.string_list(doc = "bindgen --allowlist-type regexes."),
        "allowlist_vars": attr.string_list(doc = "bindgen --allowlist-var regexes, e.g. METH_.*"),
        "blocklist_types": attr.string_list(doc = "bindgen --blocklist-type regexes."),
        "blocklist_items": attr.string_list(doc = "bindgen --blocklist-item regexes."),
        "defines": attr.string_list(doc = "Extra preprocessor defines (Py_BUILD_CORE, Py_DEBUG, ...)."),
        "clang_args": attr.string_list(doc = "Extra clang arguments."),
        "bindgen_flags": attr.string_list(doc = "Extra bindgen flags, e.g. --no-doc-comments."),
        "layout_tests": attr.bool(default = False, doc = "Whether bindgen emits layout tests."),
        "out": attr.string(doc = "Output file name; default <name>.rs."),
        "_builder": attr.label(default = "//rules/builder", executable = True, cfg = "exec"),
    },
    toolchains = [BINDGEN_TOOLCHAIN_TYPE, RUST_TOOLCHAIN_TYPE, _HEADERS_TOOLCHAIN],
)

def _cpython_module_impl(ctx):
    py = _headers(ctx)
    if RustCrateInfo in ctx.attr.library:
        lib = ctx.attr.library[RustCrateInfo].output
        if ctx.attr.library[RustCrateInfo].crate_type != "cdylib":
            fail("{}: library {} is a {}, not a cdylib (use rust_shared_library)".format(ctx.label, ctx.attr.library.label, ctx.attr.library[RustCrateInfo].crate_type))
    else:
        libs = [f for f in ctx.files.library if f.extension == "so"]
        if len(libs) != 1:
            fail("{}: library {} must produce exactly one .so, got {}".format(ctx.label, ctx.attr.library.label, libs))
        lib = libs[0]
    out = ctx.actions.declare_file(ctx.attr.module_name + py.ext_suffix)
    ctx.actions.symlink(output = out, target_file = lib)
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

cpython_module = rule(
    implementation = _cpython_module_impl,
    doc = "Names a shared library as an importable extension module: <module_name><EXT_SUFFIX>.",
    attrs = {
        "library": attr.label(mandatory = True, allow_files = True, doc = "A rust_shared_library or a cc_binary(linkshared = True)."),
        "module_name": attr.string(mandatory = True, doc = "The module name; the library must export PyInit_<module_name>."),
        "headers": attr.label(providers = [CPythonHeadersInfo], doc = "The CPython build the module is for (gives EXT_SUFFIX); default: the CPython headers toolchain."),
    },
    toolchains = [_HEADERS_TOOLCHAIN],
)
