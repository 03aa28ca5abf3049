"""Module extensions: the bzlmod form of ferrule_dependencies() and vendored_crates().

In a MODULE.bazel:

    toolchains = use_extension("@ferrule//rules:extensions.bzl", "toolchains")
    use_repo(toolchains, "ferrule_bindgen", "ferrule_go_sdk", "ferrule_python", "ferrule_rust")

    crates = use_extension("@ferrule//rules:extensions.bzl", "crates")
    crates.vendored(name = "my_crates", vendor_dir = "third_party/vendor", build_file = "//third_party:BUILD.crates.bazel")
    use_repo(crates, "my_crates")
"""

load("//rules:crates.bzl", "vendored_crates")
load("//toolchains/bindgen:repository.bzl", "ferrule_bindgen_repository")
load("//toolchains/go:sdk.bzl", "ferrule_go_sdk")
load("//toolchains/python:repository.bzl", "ferrule_python_headers")
load("//toolchains/rust:repository.bzl", "ferrule_rust_repository")

def _toolchains_impl(mctx):
    ferrule_go_sdk(name = "ferrule_go_sdk")
    ferrule_rust_repository(name = "ferrule_rust")
    ferrule_bindgen_repository(name = "ferrule_bindgen")
    ferrule_python_headers(name = "ferrule_python")
    ferrule_python_headers(name = "ferrule_python_aarch64", multiarch = "aarch64-linux-gnu", gcc = "aarch64-linux-gnu-gcc")

toolchains = module_extension(
    implementation = _toolchains_impl,
    doc = "The toolchain repositories Ferrule's rules use, all local (nothing downloaded).",
)

def _crates_impl(mctx):
    for mod in mctx.modules:
        for tag in mod.tags.vendored:
            vendored_crates(name = tag.name, vendor_dir = tag.vendor_dir, build_file = tag.build_file)

_vendored = tag_class(
    attrs = {
        "name": attr.string(mandatory = True, doc = "The repository's name."),
        "vendor_dir": attr.string(mandatory = True, doc = "The `cargo vendor --versioned-dirs` directory, relative to the main workspace or absolute."),
        "build_file": attr.label(mandatory = True, doc = "The BUILD file `ferrule vendor` generated for it."),
    },
    doc = "A repository over a vendor directory with the BUILD file `ferrule vendor` wrote.",
)

crates = module_extension(
    implementation = _crates_impl,
    tag_classes = {"vendored": _vendored},
    doc = "Vendored crate repositories (see rules/crates.bzl).",
)
