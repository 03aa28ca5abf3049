"""Rules that describe toolchains and headers (instantiated by the toolchain repositories)."""

load(":providers.bzl", "BindgenToolchainInfo", "CPYTHON_HEADERS_TOOLCHAIN_TYPE", "CPythonHeadersInfo", "RustToolchainInfo")

def _rust_toolchain_impl(ctx):
    rustc = ctx.file.rustc
    info = RustToolchainInfo(
        rustc = rustc,
        rustfmt = ctx.file.rustfmt,
        sysroot = rustc.dirname.rsplit("/", 1)[0],
        files = depset([rustc] + ctx.files.rustc_lib + ctx.files.host_files + ctx.files.target_files),
        version = ctx.attr.version,
        host_triple = ctx.attr.host_triple,
        target_triple = ctx.attr.target_triple,
    )
    return [info, platform_common.ToolchainInfo(rust = info)]

rust_toolchain = rule(
    implementation = _rust_toolchain_impl,
    doc = "A Rust toolchain laid out as a sysroot (bin/rustc, lib/, lib/rustlib/<triple>/).",
    attrs = {
        "rustc": attr.label(allow_single_file = True, mandatory = True, doc = "bin/rustc of the sysroot."),
        "rustfmt": attr.label(allow_single_file = True, doc = "bin/rustfmt of the sysroot, if installed."),
        "rustc_lib": attr.label_list(allow_files = True, doc = "The shared libraries rustc loads (lib/*.so)."),
        "host_files": attr.label_list(allow_files = True, doc = "lib/rustlib/<host>/: the host standard library and linker helpers."),
        "target_files": attr.label_list(allow_files = True, doc = "lib/rustlib/<target>/: the target standard library."),
        "version": attr.string(mandatory = True, doc = "rustc's release."),
        "host_triple": attr.string(mandatory = True, doc = "The triple rustc runs on."),
        "target_triple": attr.string(mandatory = True, doc = "The triple crates are built for."),
    },
)

def _bindgen_toolchain_impl(ctx):
    info = BindgenToolchainInfo(
        bindgen = ctx.file.bindgen,
        libclang = ctx.file.libclang,
        clang_headers = depset(ctx.files.clang_headers),
        clang_include_dir = ctx.label.workspace_root + "/" + ctx.attr.clang_include_dir if ctx.label.workspace_root else ctx.attr.clang_include_dir,
        version = ctx.attr.version,
        clang_version = ctx.attr.clang_version,
    )
    return [info, platform_common.ToolchainInfo(bindgen = info)]

bindgen_toolchain = rule(
    implementation = _bindgen_toolchain_impl,
    doc = "bindgen and the libclang it is pinned to.",
    attrs = {
        "bindgen": attr.label(allow_single_file = True, mandatory = True, doc = "The bindgen executable."),
        "libclang": attr.label(allow_single_file = True, mandatory = True, doc = "libclang.so that bindgen loads."),
        "clang_headers": attr.label_list(allow_files = True, doc = "clang's builtin headers (stddef.h, ...)."),
        "clang_include_dir": attr.string(mandatory = True, doc = "Package-relative directory of those headers."),
        "version": attr.string(doc = "bindgen's version."),
        "clang_version": attr.string(doc = "libclang's version."),
    },
)

def _pkg_path(ctx, rel):
    parts = [p for p in [ctx.label.workspace_root, ctx.label.package, rel] if p]
    return "/".join(parts)

def _cpython_headers_impl(ctx):
    info = CPythonHeadersInfo(
            hdrs = depset(ctx.files.hdrs),
            include_dir = _pkg_path(ctx, ctx.attr.include_dir),
            system_hdrs = depset(ctx.files.system_hdrs),
            system_include_dirs = [_pkg_path(ctx, d) for d in ctx.attr.system_include_dirs],
            ext_suffix = ctx.attr.ext_suffix,
        defines = ctx.attr.defines,
    )
    return [info, ctx.attr.cc[CcInfo], platform_common.ToolchainInfo(headers = info, cc = ctx.attr.cc[CcInfo])]

cpython_headers = rule(
    implementation = _cpython_headers_impl,
    doc = "The C API headers and extension suffix of one CPython build; also usable as a cc dependency.",
    attrs = {
        "hdrs": attr.label_list(allow_files = True, mandatory = True, doc = "Python.h, pyconfig.h and the headers they include."),
        "include_dir": attr.string(mandatory = True, doc = "Package-relative directory holding Python.h."),
        "system_hdrs": attr.label_list(allow_files = True, doc = "The C library headers Python.h includes, for tools run with -nostdinc."),
        "system_include_dirs": attr.string_list(doc = "Package-relative include directories of system_hdrs, in search order."),
        "ext_suffix": attr.string(mandatory = True, doc = "Extension module suffix (sysconfig EXT_SUFFIX), e.g. .cpython-311-x86_64-linux-gnu.so."),
        "defines": attr.string_list(doc = "Defines this build needs everywhere (Py_GIL_DISABLED, Py_DEBUG, ...)."),
        "cc": attr.label(mandatory = True, providers = [CcInfo], doc = "A cc_library exporting the same headers for C compiles."),
    },
)

def _current_cpython_headers_impl(ctx):
    tc = ctx.toolchains[CPYTHON_HEADERS_TOOLCHAIN_TYPE]
    return [tc.headers, tc.cc]

current_cpython_headers = rule(
    implementation = _current_cpython_headers_impl,
    doc = "The CPython headers toolchain resolved for the target platform, as a headers target (CPythonHeadersInfo and CcInfo).",
    toolchains = [CPYTHON_HEADERS_TOOLCHAIN_TYPE],
)
