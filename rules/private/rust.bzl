"""Implementations of the Rust rules: one rustc action per crate, run through the builder."""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")
load(":providers.bzl", "BuildScriptInfo", "RUST_TOOLCHAIN_TYPE", "RustCrateInfo")

_RUSTC_ENV = {
    # The only environment rustc actions get: a fixed PATH for the system
    # linker driver, and fixed locale/epoch so nothing varies per machine.
    "PATH": "/usr/bin:/bin",
    "LC_ALL": "C",
    "SOURCE_DATE_EPOCH": "0",
}

def _crate_name(ctx):
    return ctx.attr.crate_name or ctx.label.name.replace("-", "_")

def _crate_root(ctx):
    if ctx.file.crate_root:
        return ctx.file.crate_root
    names = {
        "bin": ["main.rs"],
        "test": ["lib.rs", "main.rs"],
    }.get(ctx.attr._crate_type, ["lib.rs"])
    for name in names + [ctx.label.name + ".rs"]:
        for f in ctx.files.srcs:
            if f.basename == name:
                return f
    if len(ctx.files.srcs) == 1:
        return ctx.files.srcs[0]
    fail("{}: cannot tell the crate root among srcs; set crate_root".format(ctx.label))

def _metadata_hash(ctx):
    # Stable across machines: derived from the label and crate type only.
    h = hash(str(ctx.label) + "|" + ctx.attr._crate_type)
    if h < 0:
        h = -h
    return str(h)

def _output_name(ctx, crate_name, crate_type):
    if crate_type == "rlib":
        return "lib{}-{}.rlib".format(crate_name, _metadata_hash(ctx))
    if crate_type == "proc-macro":
        return "lib{}-{}.so".format(crate_name, _metadata_hash(ctx))
    # A directory per target: two targets of one package may build the same
    # crate (e.g. for two interpreter configurations).
    if crate_type == "cdylib":
        return "{}/lib{}.so".format(ctx.label.name, crate_name)
    if crate_type == "staticlib":
        return "{}/lib{}.a".format(ctx.label.name, crate_name)
    return ctx.label.name

def _version_env(version, name, crate_name, manifest_dir):
    env = {
        "CARGO_PKG_NAME": name,
        "CARGO_CRATE_NAME": crate_name,
        "CARGO_PKG_VERSION": version,
        "CARGO_MANIFEST_DIR": "${pwd}/" + manifest_dir,
    }
    core, _, pre = version.partition("-")
    parts = (core.split(".") + ["0", "0", "0"])[:3]
    env["CARGO_PKG_VERSION_MAJOR"] = parts[0]
    env["CARGO_PKG_VERSION_MINOR"] = parts[1]
    env["CARGO_PKG_VERSION_PATCH"] = parts[2]
    env["CARGO_PKG_VERSION_PRE"] = pre
    for k in ["CARGO_PKG_AUTHORS", "CARGO_PKG_DESCRIPTION", "CARGO_PKG_HOMEPAGE", "CARGO_PKG_REPOSITORY", "CARGO_PKG_LICENSE"]:
        env[k] = ""
    return env

def _manifest_dir(ctx, root):
    # The directory holding Cargo.toml: the package directory, or the crate
    # root's parent's parent when the root lives in src/.
    d = root.dirname
    if d.endswith("/src"):
        d = d[:-len("/src")]
    return d

def rust_compile(ctx, crate_type, crate_name = None, out = None, extra_inputs = []):
    """Registers the rustc action of this target; returns (output File, RustCrateInfo)."""
    tc = ctx.toolchains[RUST_TOOLCHAIN_TYPE].rust
    crate_name = crate_name or _crate_name(ctx)
    root = _crate_root(ctx)
    out = out or ctx.actions.declare_file(_output_name(ctx, crate_name, crate_type))
    is_exec = ctx.attr._is_exec if hasattr(ctx.attr, "_is_exec") else False
    target = tc.host_triple if (crate_type == "proc-macro" or is_exec) else tc.target_triple

    deps = [d[RustCrateInfo] for d in ctx.attr.deps + ctx.attr.proc_macro_deps]
    transitive = depset(transitive = [d.transitive_crates for d in deps])
    link_args = depset(ctx.attr.linkopts, transitive = [d.native_link_args for d in deps])
    dep_link_search = depset(transitive = [d.link_search for d in deps])

    builder = ctx.actions.args()
    builder.add("rustc")
    builder.add("--rustc", tc.rustc)
    env = dict(_RUSTC_ENV)
    inputs = [root] + ctx.files.srcs + ctx.files.compile_data + extra_inputs
    bs = ctx.attr.build_script[BuildScriptInfo] if getattr(ctx.attr, "build_script", None) else None
    if bs:
        builder.add("--build-script-flags", bs.flags)
        builder.add("--out-dir", bs.out_dir.path)
        inputs += [bs.flags, bs.out_dir]
    own_link_search = [bs.flags, bs.out_dir] if bs else []
    env.update(_version_env(ctx.attr.version, ctx.attr.package_name or crate_name.replace("_", "-"), crate_name, _manifest_dir(ctx, root)))
    for k, v in ctx.attr.rustc_env.items():
        env[k] = ctx.expand_location(v, ctx.attr.compile_data)
    for k in sorted(env.keys()):
        if k not in _RUSTC_ENV:
            builder.add("--env", "{}={}".format(k, env[k]))

    args = ctx.actions.args()

    # Long command lines (many dependencies) go through a parameter file that
    # the builder expands.
    args.use_param_file("@%s", use_always = False)
    args.set_param_file_format("multiline")
    args.add(root)
    args.add("--crate-name", crate_name)
    if crate_type == "test":
        args.add("--test")
    else:
        args.add("--crate-type", crate_type)
    args.add("--edition", ctx.attr.edition)
    args.add("--emit", "link=" + out.path)
    args.add("--sysroot", tc.sysroot)
    args.add("--target", target)
    args.add("-C", "metadata=" + _metadata_hash(ctx))
    opt = ctx.attr.opt_level or ("3" if ctx.var["COMPILATION_MODE"] == "opt" else "1")
    args.add("-C", "opt-level=" + opt)
    args.add("-C", "debuginfo=0")
    args.add("-C", "strip=debuginfo")
    args.add("--color", "never")
    args.add("--error-format", "human")
    if crate_type in ["cdylib", "bin", "test", "proc-macro"]:
        cc = find_cpp_toolchain(ctx)
        args.add("-C", "linker=" + cc.compiler_executable)
        inputs += cc.all_files.to_list()
        args.add_all(link_args, format_each = "-Clink-arg=%s")

        # cargo:rustc-link-search paths of dependencies' build scripts: a
        # final link needs them to find the native libraries rlibs name.
        builder.add_all(dep_link_search, map_each = _flags_file_path, before_each = "--link-search-from")
        inputs += dep_link_search.to_list()
    if crate_type == "proc-macro":
        args.add("--extern", "proc_macro")
    for f in ctx.attr.crate_features:
        args.add("--cfg", 'feature="{}"'.format(f))
    for c in ctx.attr.cfgs:
        args.add("--cfg", c)
    aliases = {}
    for dep_label, alias in ctx.attr.aliases.items():
        aliases[dep_label.label] = alias
    for d in ctx.attr.deps + ctx.attr.proc_macro_deps:
        info = d[RustCrateInfo]
        args.add("--extern", "{}={}".format(aliases.get(d.label, info.crate_name), info.output.path))
    args.add_all(transitive, map_each = _dep_dir, format_each = "-Ldependency=%s", uniquify = True)
    args.add_all(ctx.attr.rustc_flags)

    ctx.actions.run(
        executable = ctx.executable._builder,
        arguments = [builder, "--", args],
        inputs = depset(inputs, transitive = [transitive, tc.files]),
        outputs = [out],
        env = _RUSTC_ENV,
        mnemonic = "Rustc",
        progress_message = "Compiling Rust {} {} ({})".format(crate_type, crate_name, ctx.label),
    )
    info = RustCrateInfo(
        crate_name = crate_name,
        crate_type = crate_type,
        output = out,
        edition = ctx.attr.edition,
        transitive_crates = depset([out], transitive = [transitive]) if crate_type in ["rlib", "proc-macro"] else transitive,
        native_link_args = link_args,
        link_search = depset(own_link_search, transitive = [dep_link_search]),
    )
    return out, info

def _flags_file_path(f):
    return f.path if f.extension == "flags" else None

def _dep_dir(f):
    return f.dirname

def _rust_impl(ctx):
    crate_type = ctx.attr._crate_type
    out, info = rust_compile(ctx, crate_type)
    if crate_type in ["bin", "test"]:
        return [info, DefaultInfo(files = depset([out]), executable = out, runfiles = ctx.runfiles(files = ctx.files.data))]
    return [info, DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = ctx.files.data))]

_COMMON_ATTRS = {
    "srcs": attr.label_list(allow_files = [".rs"], doc = "The crate's .rs files (all of them: modules are inputs too)."),
    "crate_root": attr.label(allow_single_file = [".rs"], doc = "The crate's root module; default: lib.rs (main.rs for binaries), <name>.rs, or the only source."),
    "crate_name": attr.string(doc = "The crate's name as Rust code sees it; default: the target name with - replaced by _."),
    "package_name": attr.string(doc = "The cargo package name (CARGO_PKG_NAME); default: crate_name with _ replaced by -."),
    "version": attr.string(default = "0.0.0", doc = "The crate's version (CARGO_PKG_VERSION and friends)."),
    "edition": attr.string(default = "2021", values = ["2015", "2018", "2021", "2024"], doc = "The Rust edition."),
    "crate_features": attr.string_list(doc = "Cargo features enabled for this crate (passed as --cfg feature=\"...\")."),
    "cfgs": attr.string_list(doc = "Extra --cfg values."),
    "deps": attr.label_list(providers = [RustCrateInfo], doc = "Crates (rust_library, rust_static_library) this crate uses."),
    "proc_macro_deps": attr.label_list(providers = [RustCrateInfo], cfg = "exec", doc = "rust_proc_macro crates this crate uses; built for the execution platform."),
    "aliases": attr.label_keyed_string_dict(doc = "Renames: dependency label -> the name this crate uses for it (Cargo's `package =`)."),
    "build_script": attr.label(providers = [BuildScriptInfo], doc = "A cargo_build_script whose cargo: output (cfgs, env, link flags) and OUT_DIR feed this compile."),
    "rustc_flags": attr.string_list(doc = "Extra rustc flags (e.g. --cap-lints=allow for vendored crates)."),
    "rustc_env": attr.string_dict(doc = "Extra environment for rustc (env! values). $(execpath ...) of compile_data is expanded; ${pwd} stands for the action's working directory."),
    "compile_data": attr.label_list(allow_files = True, doc = "Files the sources read at compile time (include_str!, include_bytes!)."),
    "linkopts": attr.string_list(doc = "Linker arguments passed to every final link that uses this crate."),
    "opt_level": attr.string(doc = "rustc -C opt-level; default 1, or 3 with -c opt."),
    "data": attr.label_list(allow_files = True, doc = "Runtime files."),
    "_builder": attr.label(default = "//rules/builder", executable = True, cfg = "exec"),
    "_cc_toolchain": attr.label(default = "@bazel_tools//tools/cpp:current_cc_toolchain"),
}

def rust_rule(crate_type, doc, executable = False, test = False, extra_attrs = {}):
    attrs = dict(_COMMON_ATTRS)
    attrs["_crate_type"] = attr.string(default = crate_type)
    attrs.update(extra_attrs)
    return rule(
        implementation = _rust_impl,
        doc = doc,
        attrs = attrs,
        executable = executable,
        test = test,
        fragments = ["cpp"],
        toolchains = [RUST_TOOLCHAIN_TYPE, "@bazel_tools//tools/cpp:toolchain_type"],
    )

rust_library = rust_rule("rlib", "A Rust library crate (rlib).")
rust_proc_macro = rust_rule("proc-macro", "A procedural macro crate, built for the execution platform and loaded by rustc.")
rust_shared_library = rust_rule("cdylib", "A C-ABI shared library (cdylib), e.g. a CPython extension module's code.")
rust_static_library = rust_rule("staticlib", "A C-ABI static library (staticlib) for linking into C programs.")
rust_binary = rust_rule("bin", "A Rust executable.", executable = True)
rust_test = rust_rule("test", "A crate compiled with --test and run by `bazel test`.", executable = True, test = True)

# The build-script binary is always a host tool.
rust_build_script_binary = rust_rule(
    "bin",
    "A build.rs compiled as an executable for the execution platform (used by cargo_build_script).",
    executable = True,
    extra_attrs = {"_is_exec": attr.bool(default = True)},
)
