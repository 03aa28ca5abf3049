"""Repositories Ferrule's rules need, all local: no network at load or build time.

A user's WORKSPACE gets them with:

    load("@ferrule//rules:deps.bzl", "ferrule_dependencies")
    ferrule_dependencies()
"""

load("//toolchains/bindgen:repository.bzl", "ferrule_bindgen_repository")
load("//toolchains/go:sdk.bzl", "ferrule_go_sdk")
load("//toolchains/python:repository.bzl", "ferrule_python_headers")
load("//toolchains/rust:repository.bzl", "ferrule_rust_repository")

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

# Bazel's support repositories from Debian's packages (in the toolchain root):
# defined before Bazel's WORKSPACE suffix would download them.
_DEBIAN_REPOS = [
    ("platforms", "/usr/share/bazel/tools/platforms", "bazel-platforms"),
    ("bazel_skylib", "/usr/share/bazel/tools/skylib", "bazel-skylib"),
    ("rules_cc", "/usr/share/bazel/rules/cc", "bazel-rules-cc"),
    ("rules_java", "/usr/share/bazel/rules/java", "bazel-rules-java"),
    ("rules_python", "/usr/share/bazel/rules/python", "bazel-rules-python"),
    ("rules_license", "/usr/share/bazel/rules/license", "bazel-rules-license"),
    ("rules_proto", "/usr/share/bazel/rules/proto", "bazel-rules-proto"),
]

def _maybe(rule, name, **kwargs):
    if name not in native.existing_rules():
        rule(name = name, **kwargs)

def ferrule_dependencies():
    """Declares every external repository Ferrule needs; all are local."""
    _maybe(_coverage_tools, "remote_coverage_tools")
    for name, path, package in _DEBIAN_REPOS:
        _maybe(_debian_repo, name, path = path, package = package)
    _maybe(ferrule_go_sdk, "ferrule_go_sdk")
    _maybe(ferrule_rust_repository, "ferrule_rust")
    _maybe(ferrule_bindgen_repository, "ferrule_bindgen")
    _maybe(ferrule_python_headers, "ferrule_python")
    _maybe(ferrule_python_headers, "ferrule_python_aarch64", multiarch = "aarch64-linux-gnu", gcc = "aarch64-linux-gnu-gcc")
    native.register_toolchains(
        "@ferrule_rust//:all",
        "@ferrule_bindgen//:all",
        "@ferrule_python//:all",
        "@ferrule_python_aarch64//:all",
        "@ferrule//toolchains/cc:all",
    )
