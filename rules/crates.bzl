"""A repository over the crates `cargo vendor` wrote, with the BUILD file `ferrule vendor` generated.

In WORKSPACE:

    load("@ferrule//rules:crates.bzl", "vendored_crates")
    vendored_crates(
        name = "ferrule_crates",
        vendor_dir = "third_party/vendor",
        build_file = "//third_party/crates:BUILD.crates.bazel",
    )

Nothing is downloaded: the vendor directory is linked in. Every crate the
BUILD file names must be there with the checksum Cargo.lock pinned, or the
fetch fails with a message naming the crate.
"""

def _vendored_crates_impl(rctx):
    build_file = rctx.path(rctx.attr.build_file)
    # A relative vendor_dir names a directory of the workspace being built
    # (the user's), not of Ferrule's repository.
    vendor = rctx.path(rctx.attr.vendor_dir if rctx.attr.vendor_dir.startswith("/") else "{}/{}".format(rctx.workspace_root, rctx.attr.vendor_dir))
    if not vendor.exists:
        fail("vendored_crates: {} does not exist: run tools/setup.d/20-crates.sh (cargo vendor, then ferrule vendor)".format(vendor))
    content = rctx.read(build_file)
    problems = []
    for line in content.splitlines():
        # Lines "# NAME VERSION (sha256 CHECKSUM)" head each crate.
        if not line.startswith("# ") or "(sha256 " not in line:
            continue
        words = line[2:].split(" ")
        name, version, checksum = words[0], words[1], words[3].rstrip(")")
        d = vendor.get_child(name + "-" + version)
        if not d.exists:
            problems.append("crate {} {} is missing from {}".format(name, version, vendor))
            continue
        sums = d.get_child(".cargo-checksum.json")
        if not sums.exists:
            problems.append("crate {} {}: {} has no .cargo-checksum.json".format(name, version, d))
            continue
        got = json.decode(rctx.read(sums)).get("package", "")
        if checksum and got != checksum:
            problems.append("crate {} {}: the vendored copy has checksum {}, Cargo.lock pins {}".format(name, version, got, checksum))
    if problems:
        fail("vendored_crates: the vendor directory disagrees with {}:\n  {}\nRe-run tools/setup.d/20-crates.sh (cargo vendor, then ferrule vendor).".format(rctx.attr.build_file, "\n  ".join(problems)))
    for child in vendor.readdir():
        rctx.symlink(child, child.basename)
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD.bazel", content)

vendored_crates = repository_rule(
    implementation = _vendored_crates_impl,
    attrs = {
        "vendor_dir": attr.string(mandatory = True, doc = "The `cargo vendor --versioned-dirs` directory, relative to the main workspace or absolute."),
        "build_file": attr.label(mandatory = True, allow_single_file = True, doc = "The BUILD file `ferrule vendor` generated for it."),
    },
    local = True,
    doc = "Links vendored crates into a repository whose BUILD file ferrule vendor generated; checks checksums against it.",
)
