"""A repository holding a Rust toolchain: rustc, its libraries and the target's standard library.

The toolchain is found, in order: the `rustc` attribute, the FERRULE_RUSTC
environment variable, `rustc` on PATH, or ~/.cargo/bin/rustc. When that is a
rustup proxy, `rustc --print sysroot` names the real toolchain, whose files
are linked here, so actions run the compiler directly (with --sysroot) and
never need HOME or RUSTUP_HOME.
"""

load("//toolchains:cpu.bzl", "cpu_constraint")

def _find_rustc(rctx):
    if rctx.attr.rustc:
        return rctx.path(rctx.attr.rustc)
    env = rctx.os.environ.get("FERRULE_RUSTC", "")
    if env:
        return rctx.path(env)
    found = rctx.which("rustc")
    if found:
        return found
    home = rctx.os.environ.get("HOME", "")
    if home and rctx.path(home + "/.cargo/bin/rustc").exists:
        return rctx.path(home + "/.cargo/bin/rustc")
    fail("ferrule_rust_repository: no rustc found: install Rust (rustup), put rustc on PATH, or set FERRULE_RUSTC")

def _run(rctx, args):
    res = rctx.execute(args)
    if res.return_code != 0:
        fail("ferrule_rust_repository: `{}` failed: {}".format(" ".join([str(a) for a in args]), res.stderr))
    return res.stdout

def _rust_repository_impl(rctx):
    rustc = _find_rustc(rctx)
    sysroot = rctx.path(_run(rctx, [rustc, "--print", "sysroot"]).strip())
    info = {}
    for line in _run(rctx, [rustc, "-vV"]).splitlines():
        k, sep, v = line.partition(": ")
        if sep:
            info[k] = v.strip()
    host = info.get("host", "")
    release = info.get("release", "")
    if not host or not release:
        fail("ferrule_rust_repository: cannot parse `rustc -vV` of {}".format(rustc))
    target = rctx.attr.target or host
    real = sysroot.get_child("bin").get_child("rustc")
    if not real.exists:
        fail("ferrule_rust_repository: {} has no bin/rustc".format(sysroot))
    rctx.symlink(real, "bin/rustc")
    rustfmt = sysroot.get_child("bin").get_child("rustfmt")
    if rustfmt.exists:
        # Formats bindgen output (optional: without it bindings are unformatted).
        rctx.symlink(rustfmt, "bin/rustfmt")
    for child in sysroot.get_child("lib").readdir():
        if child.basename.endswith(".so") or ".so." in child.basename:
            rctx.symlink(child, "lib/" + child.basename)
    rustlib = sysroot.get_child("lib").get_child("rustlib")
    for triple in [host, target]:
        if not rustlib.get_child(triple).exists:
            fail("ferrule_rust_repository: the standard library for {} is not installed in {} (Debian: libstd-rust-dev for that architecture)".format(triple, sysroot))

    # Every installed standard library is a target this rustc can build for.
    triples = sorted([d.basename for d in rustlib.readdir() if d.get_child("lib").exists and cpu_constraint(d.basename)])
    for triple in triples:
        rctx.symlink(rustlib.get_child(triple), "lib/rustlib/" + triple)
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("version.bzl", 'RUSTC_VERSION = "{}"\nRUSTC_COMMIT = "{}"\nHOST = "{}"\nTARGET = "{}"\n'.format(
        release,
        info.get("commit-hash", "unknown"),
        host,
        target,
    ))
    build = [
        'load("@ferrule//rules/private:toolchain.bzl", "rust_toolchain")',
        "",
        'package(default_visibility = ["//visibility:public"])',
        "",
        "# rustc {} ({}) on {}: one toolchain per installed standard library.".format(release, info.get("commit-hash", "unknown"), host),
    ]
    for triple in triples:
        build.append("""
rust_toolchain(
    name = "rust_{triple}",
    rustc = "bin/rustc",
    rustfmt = {rustfmt},
    rustc_lib = glob(["lib/*.so", "lib/*.so.*"]),
    host_files = glob(["lib/rustlib/{host}/**"]),
    target_files = glob(["lib/rustlib/{triple}/**"]),
    version = "{release}",
    host_triple = "{host}",
    target_triple = "{triple}",
)

toolchain(
    name = "{triple}",
    exec_compatible_with = {exec_constraints},
    target_compatible_with = {target_constraints},
    toolchain = ":rust_{triple}",
    toolchain_type = "@ferrule//toolchains/rust:toolchain_type",
)
""".format(
            triple = triple,
            host = host,
            release = release,
            rustfmt = '"bin/rustfmt"' if rustfmt.exists else "None",
            exec_constraints = repr(_constraints(host)),
            target_constraints = repr(_constraints(triple)),
        ))
    build.append('alias(name = "toolchain", actual = ":rust_{}")'.format(target))
    rctx.file("BUILD.bazel", "\n".join(build) + "\n")

def _constraints(triple):
    c = ["@platforms//cpu:" + cpu_constraint(triple)]
    if "-linux-" in triple:
        c.append("@platforms//os:linux")
    return c

ferrule_rust_repository = repository_rule(
    implementation = _rust_repository_impl,
    attrs = {
        "rustc": attr.string(doc = "Absolute path of rustc (or a rustup proxy); default: FERRULE_RUSTC, PATH, ~/.cargo/bin."),
        "target": attr.string(doc = "Target triple to build for; default: rustc's host. Its standard library must be installed."),
    },
    environ = ["FERRULE_RUSTC", "PATH", "RUSTUP_TOOLCHAIN"],
    local = True,
    doc = "Links a local Rust toolchain (found via `rustc --print sysroot`) into a repository with a :toolchain target.",
)
