"""The bzlmod form of cpython_dependencies(): CPython source trees with Ferrule's overlay.

    cpython = use_extension("@ferrule//third_party/cpython:extensions.bzl", "cpython")
    cpython.source(name = "cpython", path = "/src/cpython")   # path optional
    cpython.source(name = "cpython313", version = "3.13")
    use_repo(cpython, "cpython", "cpython313")
"""

load(":repo.bzl", "cpython_source")

def _cpython_impl(mctx):
    for mod in mctx.modules:
        for tag in mod.tags.source:
            kwargs = {"name": tag.name, "version": tag.version, "extra_extensions": tag.extra_extensions}
            if tag.path:
                kwargs["path"] = tag.path
            cpython_source(**kwargs)

_source = tag_class(
    attrs = {
        "name": attr.string(default = "cpython", doc = "The repository's name."),
        "version": attr.string(default = "3.11", doc = "The tree's CPython X.Y (an entry of sources.bzl's CPYTHON_VERSIONS)."),
        "path": attr.string(doc = "The CPython checkout (absolute, or relative to the main workspace); default: $FERRULE_CPYTHON_SRC or .ferrule/cpython-src."),
        "extra_extensions": attr.string_dict(doc = "Module name -> label of a cpython_extension for lib-dynload."),
    },
)

cpython = module_extension(
    implementation = _cpython_impl,
    tag_classes = {"source": _source},
    doc = "CPython source repositories (see repo.bzl).",
)
