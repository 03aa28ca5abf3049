"""A repository with the Go SDK that compiles Ferrule's in-action builder.

The SDK is found, in order: the `goroot` attribute, the FERRULE_GOROOT
environment variable, or `go env GOROOT` of the `go` on PATH. Its files
become action inputs, so the builder's bytes (and every key that depends on
them) change exactly when the Go version changes, and are the same on every
machine with the same Go version.
"""

def _find_goroot(rctx):
    if rctx.attr.goroot:
        return rctx.attr.goroot
    env = rctx.os.environ.get("FERRULE_GOROOT", "")
    if env:
        return env
    go = rctx.which("go")
    if go == None:
        for cand in ["/usr/local/go/bin/go", "/usr/lib/go/bin/go"]:
            if rctx.path(cand).exists:
                go = rctx.path(cand)
                break
    if go == None:
        fail("ferrule_go_sdk: no Go SDK found: install Go, put `go` on PATH, or set FERRULE_GOROOT")
    res = rctx.execute([go, "env", "GOROOT"])
    if res.return_code != 0:
        fail("ferrule_go_sdk: `{} env GOROOT` failed: {}".format(go, res.stderr))
    return res.stdout.strip()

def _ferrule_go_sdk_impl(rctx):
    goroot = rctx.path(_find_goroot(rctx))
    if not goroot.get_child("bin").get_child("go").exists:
        fail("ferrule_go_sdk: {} is not a Go SDK (no bin/go)".format(goroot))
    for child in goroot.readdir():
        if child.basename in ["bin", "src", "pkg", "VERSION", "go.env", "lib"]:
            rctx.symlink(child, child.basename)
    version_file = goroot.get_child("VERSION")
    version = rctx.read(version_file).splitlines()[0].strip() if version_file.exists else "unknown"
    rctx.file("version.bzl", 'GO_VERSION = "{}"\n'.format(version))
    rctx.file("BUILD.bazel", """\
package(default_visibility = ["//visibility:public"])

exports_files(["bin/go"])

filegroup(
    name = "sdk",
    srcs = glob(
        [
            "bin/go",
            "go.env",
            "VERSION",
            "src/**",
            "pkg/tool/**",
            "pkg/include/**",
            "lib/**",
        ],
        exclude = [
            "src/**/testdata/**",
            "src/**/*_test.go",
            "src/cmd/**",
            "pkg/tool/**/*.a",
        ],
        allow_empty = True,
    ),
)
""")

ferrule_go_sdk = repository_rule(
    implementation = _ferrule_go_sdk_impl,
    attrs = {
        "goroot": attr.string(doc = "Absolute path of a Go SDK; default: FERRULE_GOROOT or the `go` on PATH."),
    },
    environ = ["FERRULE_GOROOT", "PATH"],
    local = True,
    doc = "Links a Go SDK into a repository whose :sdk target lists its files as action inputs.",
)
