#!/usr/bin/env python3
"""Reduce a configure-made pyconfig.h to its define list, for platforms/<name>/pyconfig.h.

Run by hand on the pyconfig.h of a scratch configure run (never in the build):

    python3 third_party/cpython/tools/pyconfig_defines.py /tmp/scratch/pyconfig.h \
        --platform linux-x86_64 --note "configure (no options), CPython 3.11.2, Debian bookworm, gcc 12" \
        > third_party/cpython/platforms/3.11/linux-x86_64/pyconfig.h

Keeps each #define (as the generated file has it), each guarded feature macro
(#ifndef X / #define X / #endif), and each macro configure left undefined as
an `/* undef X */` marker, so the reviewed list is complete. Drops every
comment and the Apple/UnixWare special cases.
"""
import argparse
import re
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pyconfig")
    ap.add_argument("--platform", required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    text = open(args.pyconfig, encoding="utf-8").read()
    text = re.sub(r"/\*(?!\s*#\s*undef)(.|\n)*?\*/", "", text)  # comments, except undef markers
    lines = [l.rstrip() for l in text.splitlines()]

    defines, guarded, undefs = [], [], []
    skip_depth = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"#if defined(\s+AC_APPLE_UNIVERSAL_BUILD|\(__USLC__\))", line):
            skip_depth = 1
            i += 1
            while i < len(lines) and skip_depth:
                if lines[i].startswith("#if"):
                    skip_depth += 1
                elif lines[i].startswith("#endif"):
                    skip_depth -= 1
                i += 1
            continue
        m = re.match(r"#ifndef (\w+)$", line)
        if m and m.group(1) != "Py_PYCONFIG_H" and i + 2 < len(lines):
            d = re.match(r"#\s*define (\w+)(.*)$", lines[i + 1])
            if d and lines[i + 2].startswith("#endif"):
                guarded.append((d.group(1), d.group(2).strip()))
                i += 3
                continue
        d = re.match(r"#define (\w+)(.*)$", line)
        if d and d.group(1) != "Py_PYCONFIG_H":
            defines.append((d.group(1), d.group(2).strip()))
        u = re.match(r"/\*\s*#\s*undef (\w+)\s*\*/$", line)
        if u:
            undefs.append(u.group(1))
        i += 1

    out = sys.stdout
    out.write("/* Ferrule: pyconfig.h for {} (third_party/cpython/platforms).\n".format(args.platform))
    out.write(" * Derived once, by hand, from a scratch configure run and reviewed;\n")
    out.write(" * the build never runs configure. {}\n".format(args.note).rstrip() + "\n")
    out.write(" * Regenerate with third_party/cpython/tools/pyconfig_defines.py. */\n")
    out.write("#ifndef Py_PYCONFIG_H\n#define Py_PYCONFIG_H\n\n")
    for name, value in defines:
        out.write("#define {} {}\n".format(name, value).rstrip() + "\n")
    out.write("\n")
    for name, value in guarded:
        out.write("#ifndef {0}\n#define {0} {1}\n#endif\n".format(name, value))
    out.write("\n")
    for name in sorted(set(undefs)):
        out.write("/* undef {} */\n".format(name))
    out.write("\n#endif\n")


if __name__ == "__main__":
    main()
