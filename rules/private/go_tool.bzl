"""Compiles a standard-library-only Go program with the Go SDK as action inputs.

This bootstraps Ferrule's builder: rules_go cannot load on every Bazel that
Ferrule supports, and the builder needs nothing but the standard library.
"""

def _go_tool_binary_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name)
    go = ctx.file._go
    goroot = go.dirname.rsplit("/", 1)[0]
    srcs = [f.path for f in ctx.files.srcs]

    # GOCACHE must be absolute, so it is made under the action's own working
    # directory at run time; the command line itself holds no host path.
    cmd = " ".join([
        "set -e;",
        'export GOROOT="$PWD/{goroot}" GOCACHE="$PWD/{out}.gocache" GOPATH="$PWD/{out}.gopath"',
        'HOME="$PWD/{out}.home" GO111MODULE=off GOWORK=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0 GOOS=linux GOARCH={arch};',
        '"$GOROOT/bin/go" build -trimpath -buildvcs=false -ldflags=-buildid= -o {out} {srcs};',
        'rm -rf "{out}.gocache" "{out}.gopath" "{out}.home"',
    ]).format(goroot = goroot, out = out.path, srcs = " ".join(srcs), arch = ctx.attr.goarch)
    ctx.actions.run_shell(
        outputs = [out],
        inputs = ctx.files.srcs + ctx.files._sdk,
        command = cmd,
        mnemonic = "FerruleGoTool",
        progress_message = "Compiling Go tool %s" % ctx.label,
        env = {"PATH": "/usr/bin:/bin"},
    )
    return [DefaultInfo(files = depset([out]), executable = out)]

go_tool_binary = rule(
    implementation = _go_tool_binary_impl,
    doc = "A Go program that imports only the standard library, built with the configured Go SDK.",
    executable = True,
    attrs = {
        "srcs": attr.label_list(allow_files = [".go"], mandatory = True, doc = "The program's .go files (package main, no _test.go)."),
        "goarch": attr.string(default = "amd64", doc = "GOARCH of the execution platform the tool runs on."),
        "_go": attr.label(default = "@ferrule_go_sdk//:bin/go", allow_single_file = True),
        "_sdk": attr.label(default = "@ferrule_go_sdk//:sdk"),
    },
)
