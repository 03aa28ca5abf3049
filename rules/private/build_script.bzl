"""Runs a compiled build.rs as its own action (cargo_build_script's second half)."""

load("@bazel_tools//tools/build_defs/cc:action_names.bzl", "ACTION_NAMES")
load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")
load(":providers.bzl", "BuildScriptInfo", "RUST_TOOLCHAIN_TYPE")

_ENV = {
    "PATH": "/usr/bin:/bin",
    "LC_ALL": "C",
    "SOURCE_DATE_EPOCH": "0",
}

def _pkg_path(ctx, rel):
    parts = [p for p in [ctx.label.workspace_root, ctx.label.package, rel] if p]
    return "/".join(parts) if parts else "."

def _exec_path(p):
    # The script runs in its manifest directory: relative tool paths are
    # made absolute by the builder (${pwd} is the exec root).
    return p if p.startswith("/") else "${pwd}/" + p

def _cc_env(ctx):
    """CC, CXX, AR, CFLAGS, CXXFLAGS from the target's C toolchain, as the cc crate reads them."""
    cc = find_cpp_toolchain(ctx)
    features = cc_common.configure_features(
        ctx = ctx,
        cc_toolchain = cc,
        requested_features = ctx.features,
        unsupported_features = ctx.disabled_features,
    )
    env = {}
    for action, tool_var, flags_var, user in [
        (ACTION_NAMES.c_compile, "CC", "CFLAGS", ctx.fragments.cpp.copts + ctx.fragments.cpp.conlyopts),
        (ACTION_NAMES.cpp_compile, "CXX", "CXXFLAGS", ctx.fragments.cpp.copts + ctx.fragments.cpp.cxxopts),
    ]:
        variables = cc_common.create_compile_variables(
            feature_configuration = features,
            cc_toolchain = cc,
            user_compile_flags = user,
        )
        env[tool_var] = _exec_path(cc_common.get_tool_for_action(feature_configuration = features, action_name = action))
        env[flags_var] = " ".join(cc_common.get_memory_inefficient_command_line(
            feature_configuration = features,
            action_name = action,
            variables = variables,
        ))
    env["AR"] = _exec_path(cc_common.get_tool_for_action(feature_configuration = features, action_name = ACTION_NAMES.cpp_link_static_library))
    return env, cc.all_files

def _build_script_run_impl(ctx):
    tc = ctx.toolchains[RUST_TOOLCHAIN_TYPE].rust
    flags = ctx.actions.declare_file(ctx.label.name + ".flags")
    out_dir = ctx.actions.declare_directory(ctx.label.name + ".out_dir")
    script = ctx.executable.script
    args = ctx.actions.args()
    args.add("build-script")
    args.add("--script", script)
    args.add("--crate", ctx.attr.package_name)
    args.add("--rustc", tc.rustc)
    args.add("--sysroot", tc.sysroot)
    args.add("--target", tc.target_triple)
    args.add("--host", tc.host_triple)
    args.add("--manifest-dir", _pkg_path(ctx, ctx.attr.manifest_dir))
    args.add("--out-dir", out_dir.path)
    args.add("--flags-out", flags)
    args.add("--opt-level", "3" if ctx.var["COMPILATION_MODE"] == "opt" else "1")
    args.add_all(ctx.attr.crate_features, before_each = "--feature")
    dep_inputs = []
    for d in ctx.attr.links_deps:
        info = d[BuildScriptInfo]
        if info.links:
            args.add("--links-dep", "{}={}".format(info.links, info.flags.path))
            dep_inputs += [info.flags, info.out_dir]
    version = ctx.attr.version
    core, _, pre = version.partition("-")
    parts = (core.split(".") + ["0", "0", "0"])[:3]
    env = {
        "CARGO_PKG_NAME": ctx.attr.package_name,
        "CARGO_PKG_VERSION": version,
        "CARGO_PKG_VERSION_MAJOR": parts[0],
        "CARGO_PKG_VERSION_MINOR": parts[1],
        "CARGO_PKG_VERSION_PATCH": parts[2],
        "CARGO_PKG_VERSION_PRE": pre,
    }
    if ctx.attr.links:
        env["CARGO_MANIFEST_LINKS"] = ctx.attr.links
    cc_env, cc_files = _cc_env(ctx)
    env.update(cc_env)
    env.update(ctx.attr.build_script_env)
    for k in sorted(env.keys()):
        args.add("--env", "{}={}".format(k, env[k]))
    ctx.actions.run(
        executable = ctx.executable._builder,
        arguments = [args],
        inputs = depset([script] + ctx.files.data + dep_inputs, transitive = [tc.files, cc_files]),
        tools = [ctx.attr.script[DefaultInfo].files_to_run],
        outputs = [flags, out_dir],
        env = _ENV,
        mnemonic = "CargoBuildScript",
        progress_message = "Running build script of {} ({})".format(ctx.attr.package_name, ctx.label),
    )
    return [
        BuildScriptInfo(flags = flags, out_dir = out_dir, links = ctx.attr.links),
        DefaultInfo(files = depset([flags, out_dir])),
    ]

cargo_build_script_run = rule(
    implementation = _build_script_run_impl,
    doc = "Runs a build script binary and records its cargo: directives and OUT_DIR.",
    attrs = {
        "script": attr.label(executable = True, cfg = "exec", mandatory = True, doc = "The compiled build script."),
        "package_name": attr.string(mandatory = True, doc = "The cargo package (CARGO_PKG_NAME)."),
        "version": attr.string(default = "0.0.0", doc = "The package version."),
        "crate_features": attr.string_list(doc = "Enabled features (CARGO_FEATURE_*)."),
        "manifest_dir": attr.string(doc = "Package-relative directory holding Cargo.toml (the script's working directory)."),
        "links": attr.string(doc = "The package's `links` key (CARGO_MANIFEST_LINKS)."),
        "data": attr.label_list(allow_files = True, doc = "Files the script reads (usually the whole crate)."),
        "links_deps": attr.label_list(providers = [BuildScriptInfo], doc = "Build scripts of the package's dependencies with a `links` key: their metadata is DEP_<LINKS>_<KEY> here."),
        "build_script_env": attr.string_dict(doc = "Extra environment for the script."),
        "_builder": attr.label(default = "//rules/builder", executable = True, cfg = "exec"),
        "_cc_toolchain": attr.label(default = "@bazel_tools//tools/cpp:current_cc_toolchain"),
    },
    fragments = ["cpp"],
    toolchains = [RUST_TOOLCHAIN_TYPE, "@bazel_tools//tools/cpp:toolchain_type"],
)
