"""A repository pinning bindgen together with the libclang it loads.

bindgen output depends on both versions (and on libclang's builtin headers),
so they are linked here as one unit: the bindgen binary, the libclang shared
library (found by bindgen through LIBCLANG_PATH at run time) and clang's
resource include directory (passed with -isystem after -nostdinc). The
versions are recorded in the BUILD file and become part of every bindgen
action key through the files themselves.
"""

load("//toolchains:cpu.bzl", "cpu_constraint")

def _bindgen_repository_impl(rctx):
    bindgen = rctx.attr.bindgen or rctx.os.environ.get("FERRULE_BINDGEN", "") or "/usr/bin/bindgen"
    bindgen = rctx.path(bindgen)
    if not bindgen.exists:
        fail("ferrule_bindgen_repository: {} not found: install Debian's bindgen (./tools/setup.sh) or set FERRULE_BINDGEN".format(bindgen))
    res = rctx.execute([bindgen, "--version"])
    if res.return_code != 0:
        fail("ferrule_bindgen_repository: `{} --version` failed: {}".format(bindgen, res.stderr))
    version = res.stdout.strip().split(" ")[-1]
    llvm = rctx.path(rctx.attr.llvm_dir)
    libdir = llvm.get_child("lib")
    lib = None
    for cand in ["libclang-{}.so.1".format(rctx.attr.clang_major), "libclang.so.1", "libclang.so"]:
        if libdir.get_child(cand).exists:
            lib = libdir.get_child(cand)
            break
    if lib == None:
        fail("ferrule_bindgen_repository: no libclang in {}: install libclang-dev (clang {})".format(libdir, rctx.attr.clang_major))
    resource = None
    clangdir = libdir.get_child("clang")
    if clangdir.exists:
        for d in sorted([c.basename for c in clangdir.readdir()]):
            if d.startswith(rctx.attr.clang_major + ".") or d == rctx.attr.clang_major:
                resource = clangdir.get_child(d)
    if resource == None or not resource.get_child("include").exists:
        fail("ferrule_bindgen_repository: clang {} resource headers not found under {}".format(rctx.attr.clang_major, clangdir))
    rctx.symlink(bindgen, "bin/bindgen")
    rctx.symlink(lib, "lib/libclang.so")
    rctx.symlink(resource.get_child("include"), "clang/include")
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD.bazel", """\
load("@ferrule//rules/private:toolchain.bzl", "bindgen_toolchain")

package(default_visibility = ["//visibility:public"])

# bindgen {version} with libclang {clang} ({lib}).
bindgen_toolchain(
    name = "toolchain",
    bindgen = "bin/bindgen",
    libclang = "lib/libclang.so",
    clang_headers = glob(["clang/include/**"]),
    clang_include_dir = "clang/include",
    version = "{version}",
    clang_version = "{clang}",
)

# Runs on this machine's kind of platform; binds for any target.
toolchain(
    name = "bindgen",
    exec_compatible_with = ["@platforms//os:linux", "@platforms//cpu:{cpu}"],
    toolchain = ":toolchain",
    toolchain_type = "@ferrule//toolchains/bindgen:toolchain_type",
)
""".format(cpu = cpu_constraint(rctx.os.arch), version = version, clang = resource.basename, lib = lib.basename))

ferrule_bindgen_repository = repository_rule(
    implementation = _bindgen_repository_impl,
    attrs = {
        "bindgen": attr.string(doc = "Absolute path of bindgen; default FERRULE_BINDGEN or /usr/bin/bindgen."),
        "llvm_dir": attr.string(default = "/usr/lib/llvm-21", doc = "The LLVM installation whose libclang bindgen loads."),
        "clang_major": attr.string(default = "21", doc = "Major version of that clang (pinned with bindgen)."),
    },
    environ = ["FERRULE_BINDGEN"],
    local = True,
    doc = "Links bindgen and the libclang it is pinned to into a repository with a :toolchain target.",
)
