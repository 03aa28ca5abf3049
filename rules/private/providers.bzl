"""Providers of Ferrule's rules, and the toolchain types that carry them."""

# Toolchain types, resolved per target (and exec) platform.
RUST_TOOLCHAIN_TYPE = Label("//toolchains/rust:toolchain_type")
BINDGEN_TOOLCHAIN_TYPE = Label("//toolchains/bindgen:toolchain_type")
CPYTHON_HEADERS_TOOLCHAIN_TYPE = Label("//toolchains/python:headers_toolchain_type")

RustToolchainInfo = provider(
    doc = "A Rust compiler and the standard libraries of its host and target.",
    fields = {
        "rustc": "File: the rustc executable (run directly, with --sysroot).",
        "rustfmt": "File or None: rustfmt of the same toolchain (formats generated bindings).",
        "sysroot": "string: exec-root-relative path of the sysroot directory holding bin/ and lib/.",
        "files": "depset of File: everything a rustc action needs (compiler, its libraries, both standard libraries).",
        "version": "string: rustc's release, e.g. 1.95.0.",
        "host_triple": "string: the triple rustc runs on (build scripts and proc macros are built for it).",
        "target_triple": "string: the triple crates are built for.",
    },
)

BindgenToolchainInfo = provider(
    doc = "bindgen pinned with the libclang it loads.",
    fields = {
        "bindgen": "File: the bindgen executable.",
        "libclang": "File: the libclang shared library bindgen loads (via LIBCLANG_PATH).",
        "clang_headers": "depset of File: clang's builtin headers.",
        "clang_include_dir": "string: exec-root-relative directory of those headers.",
        "version": "string: bindgen's version.",
        "clang_version": "string: libclang's version.",
    },
)

CPythonHeadersInfo = provider(
    doc = "The C API headers of one CPython build for one target.",
    fields = {
        "hdrs": "depset of File: Python.h, pyconfig.h and the headers they include.",
        "include_dir": "string: exec-root-relative directory to put on the include path (holds Python.h).",
        "system_hdrs": "depset of File: C library headers that Python.h includes (for -nostdinc tools such as bindgen).",
        "system_include_dirs": "list of string: exec-root-relative include directories of those headers, in search order.",
        "ext_suffix": "string: the extension module file suffix, e.g. .cpython-311-x86_64-linux-gnu.so.",
        "defines": "list of string: preprocessor defines this build needs (e.g. Py_GIL_DISABLED).",
    },
)

RustCrateInfo = provider(
    doc = "A compiled Rust crate.",
    fields = {
        "crate_name": "string: the name other crates use in `extern crate` / paths.",
        "crate_type": "string: rlib, proc-macro, cdylib, staticlib or bin.",
        "output": "File: the compiled crate (.rlib, proc-macro .so, ...).",
        "edition": "string: the Rust edition.",
        "transitive_crates": "depset of File: this crate's output and every crate it depends on, for -L dependency= and inputs.",
        "native_link_args": "depset of string: linker arguments (linkopts) to use when linking a final artifact.",
        "link_search": "depset of File: build-script outputs (flags files and OUT_DIRs) of this crate and its dependencies, whose cargo:rustc-link-search paths a final link needs.",
    },
)

BuildScriptInfo = provider(
    doc = "What a crate's build.rs produced, to feed into that crate's compile.",
    fields = {
        "flags": "File: the normalised cargo: directives (cfg, env, link flags) the build script printed.",
        "out_dir": "File (a directory): OUT_DIR as the build script left it.",
        "links": "The package's `links` key, or \"\": its metadata (cargo:KEY=VALUE) reaches dependents' build scripts as DEP_<LINKS>_<KEY>.",
    },
)
