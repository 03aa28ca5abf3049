"""Targets of an @cpython repository without sources: they load, and fail when built."""

def _cpython_missing_impl(ctx):
    fail(ctx.attr.message)

cpython_missing = rule(
    implementation = _cpython_missing_impl,
    doc = "Stands in for an @cpython target when the CPython source tree is missing; building it fails with `message`.",
    attrs = {"message": attr.string(doc = "Why the target cannot be built.")},
)
