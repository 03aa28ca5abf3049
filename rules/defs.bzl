"""Ferrule's public rules: Rust crates, build scripts, CPython bindings and extension modules.

    load("@ferrule//rules:defs.bzl", "rust_library", "cpython_extension", ...)

Every rule runs its work through Ferrule's builder (//rules/builder) with an
explicit environment and exec-root-relative paths only, so two machines get
the same action keys and byte-identical outputs.
"""

load("//rules/private:build_script.bzl", _cargo_build_script_run = "cargo_build_script_run")
load(
    "//rules/private:providers.bzl",
    _BindgenToolchainInfo = "BindgenToolchainInfo",
    _BuildScriptInfo = "BuildScriptInfo",
    _CPythonHeadersInfo = "CPythonHeadersInfo",
    _RustCrateInfo = "RustCrateInfo",
    _RustToolchainInfo = "RustToolchainInfo",
)
load("//rules/private:python.bzl", _cpython_bindgen = "cpython_bindgen", _cpython_module = "cpython_module")
load(
    "//rules/private:rust.bzl",
    _rust_binary = "rust_binary",
    _rust_build_script_binary = "rust_build_script_binary",
    _rust_library = "rust_library",
    _rust_proc_macro = "rust_proc_macro",
    _rust_shared_library = "rust_shared_library",
    _rust_static_library = "rust_static_library",
    _rust_test = "rust_test",
)
load("//rules/private:toolchain.bzl", _cpython_headers = "cpython_headers")

RustCrateInfo = _RustCrateInfo
RustToolchainInfo = _RustToolchainInfo
BindgenToolchainInfo = _BindgenToolchainInfo
BuildScriptInfo = _BuildScriptInfo
CPythonHeadersInfo = _CPythonHeadersInfo

# Rules. Common attributes of the rust_* rules: srcs, crate_root, crate_name,
# package_name, version, edition, crate_features, cfgs, deps,
# proc_macro_deps, aliases, build_script, rustc_flags, rustc_env,
# compile_data, linkopts, opt_level, data (see rules/private/rust.bzl for
# each attribute's documentation).
rust_library = _rust_library
rust_proc_macro = _rust_proc_macro
rust_binary = _rust_binary
rust_test = _rust_test
rust_shared_library = _rust_shared_library
rust_static_library = _rust_static_library
cpython_bindgen = _cpython_bindgen
cpython_headers = _cpython_headers

def cargo_build_script(
        name,
        srcs,
        package_name,
        crate_root = None,
        version = "0.0.0",
        edition = "2021",
        crate_features = [],
        deps = [],
        proc_macro_deps = [],
        data = [],
        manifest_dir = "",
        links = "",
        links_deps = [],
        build_script_env = {},
        rustc_flags = [],
        **kwargs):
    """A crate's build.rs: compiled for the execution platform, then run as its own action.

    Pass the result to the crate's `build_script` attribute: its
    `cargo:rustc-cfg`, `cargo:rustc-env` and `cargo:rustc-link-*` output and
    its OUT_DIR feed the crate's compile.

    Args:
      name: target name (a BuildScriptInfo provider).
      srcs: the build script's .rs files.
      package_name: the cargo package the script belongs to (CARGO_PKG_NAME, messages).
      crate_root: the script's main file; default: build.rs among srcs.
      version: the package version (CARGO_PKG_VERSION*).
      edition: the Rust edition of the script.
      crate_features: the package's enabled features (CARGO_FEATURE_*).
      deps: the package's build-dependencies.
      proc_macro_deps: proc-macro build-dependencies.
      data: files the script reads at run time (usually the whole crate).
      manifest_dir: package-relative directory of Cargo.toml (the script's working directory).
      links: the package's `links` key.
      links_deps: build scripts of dependencies with a `links` key (cargo's DEP_<LINKS>_<KEY> metadata).
      build_script_env: extra environment for the script.
      rustc_flags: extra rustc flags for compiling the script.
      **kwargs: common attributes (visibility, tags, ...).
    """
    crate = package_name.replace("-", "_")
    _rust_build_script_binary(
        name = name + "_bin",
        srcs = srcs,
        crate_root = crate_root,
        crate_name = "build_script_" + crate,
        package_name = package_name,
        version = version,
        edition = edition,
        crate_features = crate_features,
        deps = deps,
        proc_macro_deps = proc_macro_deps,
        rustc_flags = rustc_flags,
        visibility = ["//visibility:private"],
        tags = kwargs.get("tags", []),
    )
    _cargo_build_script_run(
        name = name,
        script = ":" + name + "_bin",
        package_name = package_name,
        version = version,
        crate_features = crate_features,
        manifest_dir = manifest_dir,
        links = links,
        links_deps = links_deps,
        data = data,
        build_script_env = build_script_env,
        **kwargs
    )

def cpython_extension(
        name,
        module_name = None,
        srcs = [],
        deps = [],
        copts = [],
        crate = None,
        headers = Label("//toolchains/python:current_headers"),
        **kwargs):
    """An importable CPython extension module, `<module_name><EXT_SUFFIX>`.

    Either from C sources (compiled and linked as a shared library through
    Bazel's cc toolchain against the headers target) or from a Rust crate: a
    rust_shared_library (cdylib) exporting `PyInit_<module_name>`.

    Args:
      name: target name; its output is e.g. `_base64.cpython-311-x86_64-linux-gnu.so`.
      module_name: the Python module name; default: name.
      srcs: C sources and private headers (C extensions).
      deps: cc_library dependencies (C extensions).
      copts: extra C compiler options.
      crate: a rust_shared_library label (Rust extensions); exclusive with srcs.
      headers: a cpython_headers target: the CPython build the module is for;
        default: the CPython headers toolchain of the target platform.
      **kwargs: common attributes (visibility, tags, testonly, ...).
    """
    module_name = module_name or name
    if crate and srcs:
        fail("cpython_extension {}: give either srcs (C) or crate (Rust), not both".format(name))
    if crate:
        library = crate
    elif srcs:
        library = name + "_shared"
        native.cc_binary(
            name = library + ".so",
            srcs = srcs,
            deps = deps + [headers],
            copts = copts + ["-fvisibility=hidden"],
            linkshared = True,
            visibility = ["//visibility:private"],
            tags = kwargs.get("tags", []),
            testonly = kwargs.get("testonly", False),
        )
        library = ":" + library + ".so"
    else:
        fail("cpython_extension {}: needs srcs (C) or crate (Rust)".format(name))
    _cpython_module(
        name = name,
        library = library,
        module_name = module_name,
        headers = headers,
        **kwargs
    )
