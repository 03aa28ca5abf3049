"""The target platforms @cpython knows: one entry per platform.

Adding a platform (e.g. linux-aarch64 with Debian's gcc-aarch64-linux-gnu) is
one more entry here plus platforms/<X.Y>/<name>/pyconfig.h for each version
of sources.bzl's CPYTHON_VERSIONS (derived with tools/pyconfig_defines.py
from a scratch configure run for that target).
"""

CPYTHON_PLATFORMS = {
    "linux-x86_64": struct(
        constraints = ["@platforms//os:linux", "@platforms//cpu:x86_64"],
        machdep = "linux",  # sys.platform
        multiarch = "x86_64-linux-gnu",  # sys.implementation._multiarch
        host_gnu_type = "x86_64-pc-linux-gnu",
    ),
    # "linux-aarch64": struct(
    #     constraints = ["@platforms//os:linux", "@platforms//cpu:aarch64"],
    #     machdep = "linux",
    #     multiarch = "aarch64-linux-gnu",
    #     host_gnu_type = "aarch64-unknown-linux-gnu",
    # ),
}

def cpython_platform_select(field):
    """A select() over CPYTHON_PLATFORMS of one field of the entries."""
    return select({
        "@ferrule//third_party/cpython/platforms:" + name: getattr(p, field)
        for name, p in CPYTHON_PLATFORMS.items()
    }, no_match_error = "@cpython: no pyconfig.h for this target platform; supported: " + ", ".join(CPYTHON_PLATFORMS.keys()))

def cpython_soabi(version, abiflags = ""):
    """SOABI of the given X.Y and ABI flags for each platform (a select), e.g. cpython-313t-x86_64-linux-gnu."""
    return select({
        "@ferrule//third_party/cpython/platforms:" + name: "cpython-{}{}-{}".format(version.replace(".", ""), abiflags, p.multiarch)
        for name, p in CPYTHON_PLATFORMS.items()
    })

def cpython_sysconfig_vars(version, copts, linkopts, abiflags = ""):
    """sysconfig's build-time variables for each platform (a select of dicts)."""
    return select({
        "@ferrule//third_party/cpython/platforms:" + name: {
            "ABIFLAGS": abiflags,
            "CC": "gcc",
            "CCSHARED": "-fPIC",
            "CFLAGS": " ".join([c for c in copts if "$(" not in c and "prefix-map" not in c]),
            "EXT_SUFFIX": ".cpython-{}{}-{}.so".format(version.replace(".", ""), abiflags, p.multiarch),
            "HOST_GNU_TYPE": p.host_gnu_type,
            "LDSHARED": "gcc -shared",
            "LIBS": " ".join(linkopts),
            "MACHDEP": p.machdep,
            "MULTIARCH": p.multiarch,
            "Py_DEBUG": "0",
            "Py_ENABLE_SHARED": "0",
            "SHLIB_SUFFIX": ".so",
            "SOABI": "cpython-{}{}-{}".format(version.replace(".", ""), abiflags, p.multiarch),
            "Py_GIL_DISABLED": "1" if abiflags == "t" else "0",
            "VERSION": version,
            "WITH_DOC_STRINGS": "1",
            "WITH_PYMALLOC": "1",
            "prefix": "/usr/local",
            "exec_prefix": "/usr/local",
        }
        for name, p in CPYTHON_PLATFORMS.items()
    })
