"""The @platforms//cpu constraint of an architecture name, for the toolchain repositories."""

# Architecture as a triple, Debian multiarch name or JVM os.arch starts -> @platforms//cpu value.
_CPUS = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "i686": "x86_32",
    "armv7": "armv7",
    "riscv64gc": "riscv64",
    "s390x": "s390x",
    "powerpc64le": "ppc64le",
}

def cpu_constraint(name):
    """The @platforms//cpu value of `name` (a triple such as aarch64-unknown-linux-gnu, or an arch), or ""."""
    return _CPUS.get(name.split("-")[0], "")
