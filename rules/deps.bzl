"""Repositories Ferrule's rules need, all local: no network at load or build time.

A user's WORKSPACE gets them with:

    load("@ferrule//rules:deps.bzl", "ferrule_dependencies")
    ferrule_dependencies()
"""

load("//toolchains/bindgen:repository.bzl", "ferrule_bindgen_repository")
load("//toolchains/go:sdk.bzl", "ferrule_go_sdk")
load("//toolchains/python:repository.bzl", "ferrule_python_headers")
load("//toolchains/rust:repository.bzl", "ferrule_rust_repository")

def _rules_cc_impl(rctx):
    # Debian's rules_cc 0.0.4 does not load on Bazel 4.2.3, and Bazel's default
    # WORKSPACE would download one. This minimal repository forwards the
    # public rules to Bazel's native ones, which is what rules_cc does for
    # these versions of Bazel anyway.
    rctx.file("WORKSPACE", 'workspace(name = "rules_cc")\n')
    rctx.file("BUILD.bazel", "")
    rctx.file("cc/BUILD.bazel", 'exports_files(["defs.bzl"])\n')
    rules = ["cc_binary", "cc_import", "cc_library", "cc_proto_library", "cc_shared_library", "cc_test", "cc_toolchain", "cc_toolchain_suite", "fdo_prefetch_hints", "fdo_profile", "objc_import", "objc_library"]
    lines = ['"""Minimal rules_cc provided by Ferrule: forwards to the native rules."""', ""]
    for r in rules:
        lines.append("def {r}(**attrs):\n    native.{r}(**attrs)\n".format(r = r))
    rctx.file("cc/defs.bzl", "\n".join(lines))
    rctx.file("cc/find_cc_toolchain.bzl", "\n".join([
        '"""find_cc_toolchain for Bazel versions without the rules_cc helper."""',
        "",
        'CC_TOOLCHAIN_TYPE = "@bazel_tools//tools/cpp:toolchain_type"',
        "",
        "def find_cc_toolchain(ctx):",
        '    return ctx.attr._cc_toolchain[cc_common.CcToolchainInfo] if hasattr(ctx.attr, "_cc_toolchain") else ctx.toolchains[CC_TOOLCHAIN_TYPE]',
        "",
        "def find_cpp_toolchain(ctx):",
        "    return find_cc_toolchain(ctx)",
        "",
        "def use_cc_toolchain():",
        "    return [CC_TOOLCHAIN_TYPE]",
        "",
        "def use_cpp_toolchain():",
        "    return [CC_TOOLCHAIN_TYPE]",
        "",
    ]))

_rules_cc = repository_rule(implementation = _rules_cc_impl)

def _coverage_tools_impl(rctx):
    # `bazel test` always resolves @remote_coverage_tools, which Bazel would
    # download. Coverage is not part of Ferrule's offline builds, so these
    # targets only fail loudly if someone runs `bazel coverage`.
    rctx.file("WORKSPACE", 'workspace(name = "remote_coverage_tools")\n')
    rctx.file("unavailable.sh", "#!/bin/sh\necho 'coverage tools are not available in this offline workspace' >&2\nexit 1\n", executable = True)
    rctx.file("BUILD.bazel", "\n".join([
        'package(default_visibility = ["//visibility:public"])',
        'sh_binary(name = "coverage_report_generator", srcs = ["unavailable.sh"])',
        'sh_binary(name = "lcov_merger", srcs = ["unavailable.sh"])',
        'filegroup(name = "coverage_output_generator", srcs = ["unavailable.sh"])',
        "",
    ]))

_coverage_tools = repository_rule(implementation = _coverage_tools_impl)

def _debian_repo_impl(rctx):
    # A Bazel support repository from Debian's packages (bazel-platforms,
    # bazel-skylib, ...), linked in so nothing is downloaded.
    src = rctx.path(rctx.attr.path)
    if not src.exists:
        fail("{}: {} does not exist; run ./tools/setup.sh (it installs Debian's {})".format(rctx.name, rctx.attr.path, rctx.attr.package))
    for child in src.readdir():
        rctx.symlink(child, child.basename)

_debian_repo = repository_rule(
    implementation = _debian_repo_impl,
    attrs = {
        "path": attr.string(mandatory = True),
        "package": attr.string(mandatory = True),
    },
    local = True,
)

def _maybe(rule, name, **kwargs):
    if name not in native.existing_rules():
        rule(name = name, **kwargs)

def ferrule_dependencies():
    """Declares every external repository Ferrule needs; all are local."""
    _maybe(_rules_cc, "rules_cc")
    _maybe(_coverage_tools, "remote_coverage_tools")
    _maybe(_debian_repo, "platforms", path = "/usr/share/bazel/tools/platforms", package = "bazel-platforms")
    _maybe(_debian_repo, "bazel_skylib", path = "/usr/share/bazel/tools/skylib", package = "bazel-skylib")
    _maybe(_debian_repo, "rules_java", path = "/usr/share/bazel/rules/java", package = "bazel-rules-java")
    _maybe(ferrule_go_sdk, "ferrule_go_sdk")
    _maybe(ferrule_rust_repository, "ferrule_rust")
    _maybe(ferrule_bindgen_repository, "ferrule_bindgen")
    _maybe(ferrule_python_headers, "ferrule_python")
    native.register_toolchains("@ferrule_rust//:all", "@ferrule_bindgen//:all", "@ferrule_python//:all")
