"""Rules for the generated parts of a CPython build, used by the @cpython overlay.

Each generated file is its own action with declared inputs:
  * cpython_config_c      Modules/config.c from Modules/config.c.in (a template expansion)
  * cpython_frozen        one Programs/_freeze_module run per frozen module
  * cpython_deepfreeze    Python/deepfreeze/deepfreeze.c, by Tools/scripts/deepfreeze.py
                          run with the tree's own bootstrap interpreter
  * cpython_install_tree  the interpreter's lib/python3.X directory (stdlib,
                          lib-dynload, _sysconfigdata) as one tree artifact
  * cpython_python_headers the C API headers with pyconfig.h, for Ferrule's
                          cpython_bindgen / cpython_extension rules
"""

load("@ferrule//rules:defs.bzl", "CPythonHeadersInfo")

FrozenModulesInfo = provider(
    doc = "Frozen module headers made by _freeze_module.",
    fields = {"modules": "list of (module name, header File), in order"},
)

def repo_root(ctx):
    """The exec-root-relative directory of the CPython tree (e.g. external/cpython)."""
    return ctx.label.workspace_root or "."

def rust_builtins(modules, when_builtin, when_shared):
    """when_builtin if the Rust modules are built in (the default), else when_shared, as a select.

    Plain when_shared for a version without Rust built-in modules.
    """
    if not modules:
        return when_shared
    return select({
        "@ferrule//third_party/cpython:rust_builtins_on": when_builtin,
        "//conditions:default": when_shared,
    })

def _bool_setting_impl(_ctx):
    return []

bool_setting = rule(
    implementation = _bool_setting_impl,
    build_setting = config.bool(flag = True),
    doc = "A command-line boolean (--<label>=true|false), read by config_settings.",
)

def _config_c_impl(ctx):
    out = ctx.actions.declare_file(ctx.attr.out)
    externs = "\n".join(["extern PyObject* PyInit_{}(void);".format(m) for m in ctx.attr.modules])
    entries = "\n".join(['    {{"{0}", PyInit_{0}}},'.format(m) for m in ctx.attr.modules])
    ctx.actions.expand_template(
        template = ctx.file.template,
        output = out,
        substitutions = {
            "/* -- ADDMODULE MARKER 1 -- */": externs,
            "/* -- ADDMODULE MARKER 2 -- */": entries,
        },
    )
    return [DefaultInfo(files = depset([out]))]

cpython_config_c = rule(
    implementation = _config_c_impl,
    doc = "Modules/config.c (the built-in module table) for the given built-in modules.",
    attrs = {
        "template": attr.label(allow_single_file = True, mandatory = True, doc = "Modules/config.c.in"),
        "out": attr.string(default = "Modules/config.c", doc = "The output's path in the package."),
        "modules": attr.string_list(mandatory = True, doc = "Names of the built-in extension modules."),
    },
)

def _frozen_impl(ctx):
    if len(ctx.attr.names) != len(ctx.files.srcs):
        fail("names and srcs must be parallel lists")
    modules = []
    for name, src in zip(ctx.attr.names, ctx.files.srcs):
        out = ctx.actions.declare_file("{}/{}.h".format(ctx.attr.out_dir, name))
        ctx.actions.run(
            executable = ctx.executable.freeze_module,
            arguments = [name, src.path, out.path],
            inputs = [src],
            outputs = [out],
            mnemonic = "CPythonFreeze",
            progress_message = "Freezing %s" % name,
            env = {"LC_ALL": "C"},
        )
        modules.append((name, out))
    return [
        DefaultInfo(files = depset([f for _, f in modules])),
        FrozenModulesInfo(modules = modules),
    ]

cpython_frozen = rule(
    implementation = _frozen_impl,
    doc = "Python/frozen_modules/<name>.h for each module, one _freeze_module action each.",
    attrs = {
        "names": attr.string_list(mandatory = True, doc = "Module names, parallel to srcs."),
        "out_dir": attr.string(default = "Python/frozen_modules", doc = "Where the headers go, in the package."),
        "srcs": attr.label_list(allow_files = [".py"], mandatory = True, doc = "Module sources."),
        "freeze_module": attr.label(
            executable = True,
            # The tool runs where it is built: building it for the exec
            # configuration would compile libpython twice.
            cfg = "target",
            mandatory = True,
            doc = "Programs/_freeze_module",
        ),
    },
)

_DEEPFREEZE_SCRIPT = """\
set -eu
python="$1"; lib="$2"; out="$3"; shift 3
# The bootstrap interpreter finds its stdlib from its own location, like an
# installed python: give it a private prefix whose lib/python3.X is the tree's Lib.
prefix="$out.prefix"
rm -rf "$prefix"
mkdir -p "$prefix/bin" "$prefix/lib"
cp "$python" "$prefix/bin/python3"
ln -s "$PWD/$lib" "$prefix/lib/python{version}"
"$prefix/bin/python3" -S -B "$@" -o "$out"
rm -rf "$prefix"
"""

def _deepfreeze_impl(ctx):
    out = ctx.actions.declare_file("Python/deepfreeze/deepfreeze.c")
    frozen = ctx.attr.frozen[FrozenModulesInfo].modules
    args = ctx.actions.args()
    args.add(ctx.executable.python)
    args.add(repo_root(ctx) + "/Lib")
    args.add(out)
    args.add(ctx.file.script)
    for name, header in frozen:
        args.add("{}:{}".format(header.path, name))
    ctx.actions.run_shell(
        command = _DEEPFREEZE_SCRIPT.format(version = ctx.attr.version),
        arguments = [args],
        inputs = depset(
            [ctx.file.script] + [h for _, h in frozen],
            transitive = [depset(ctx.files.tool_srcs), depset(ctx.files.lib_srcs), depset(ctx.files.scan_srcs)],
        ),
        tools = [ctx.executable.python],
        outputs = [out],
        mnemonic = "CPythonDeepfreeze",
        progress_message = "Deep-freezing %d modules" % len(frozen),
        env = {"LC_ALL": "C", "PATH": "/bin:/usr/bin"},
    )
    return [DefaultInfo(files = depset([out]))]

cpython_deepfreeze = rule(
    implementation = _deepfreeze_impl,
    doc = "Python/deepfreeze/deepfreeze.c from the frozen modules, by Tools/scripts/deepfreeze.py.",
    attrs = {
        "python": attr.label(executable = True, cfg = "target", mandatory = True, doc = "The bootstrap interpreter (Programs/_bootstrap_python)."),
        "script": attr.label(allow_single_file = True, mandatory = True, doc = "Tools/scripts/deepfreeze.py"),
        "tool_srcs": attr.label_list(allow_files = True, doc = "Modules the script imports from Tools/scripts."),
        "lib_srcs": attr.label_list(allow_files = True, doc = "The stdlib modules the script needs (Lib/)."),
        "scan_srcs": attr.label_list(allow_files = True, doc = "C sources the script scans for global strings and identifiers."),
        "frozen": attr.label(providers = [FrozenModulesInfo], mandatory = True),
        "version": attr.string(mandatory = True, doc = "X.Y"),
    },
)

_INSTALL_SCRIPT = """\
set -eu
out="$PWD/$1"; lib="$2"; list="$PWD/$3"; exts="$4"; sysconfig="$5"
mkdir -p "$out"
(cd "$lib" && xargs -a "$list" cp -L --parents -t "$out")
while read -r src name; do
  [ -n "$src" ] || continue
  mkdir -p "$out/lib-dynload"
  cp -L "$src" "$out/lib-dynload/$name"
done < "$exts"
if [ "$sysconfig" != - ]; then cp -L "$sysconfig" "$out/"; fi
chmod -R u+w,go-w "$out"
"""

def _sysconfigdata(vars):
    lines = ["# Made by Ferrule's @cpython overlay: build-time variables of this interpreter.", "build_time_vars = {"]
    for k in sorted(vars.keys()):
        v = vars[k]
        if v.isdigit():
            lines.append("    {}: {},".format(repr(k), v))
        else:
            lines.append("    {}: {},".format(repr(k), repr(v)))
    lines.append("}")
    return "\n".join(lines) + "\n"

def _install_tree_impl(ctx):
    out = ctx.actions.declare_directory(ctx.attr.out)
    prefix = repo_root(ctx) + "/" + ctx.attr.strip_prefix
    rel = []
    for f in ctx.files.srcs:
        if not f.path.startswith(prefix + "/"):
            fail("{} is not under {}".format(f.path, prefix))
        rel.append(f.path[len(prefix) + 1:])
    listing = ctx.actions.declare_file(ctx.label.name + ".files")
    ctx.actions.write(listing, "\n".join(rel) + "\n")

    ext_lines = []
    ext_files = []
    suffix = ctx.attr.ext_suffix
    for target, module in ctx.attr.extensions.items():
        files = target[DefaultInfo].files.to_list()
        if len(files) != 1:
            fail("extension {} must be one file, got {}".format(module, files))
        ext_files.append(files[0])
        ext_lines.append("{} {}{}".format(files[0].path, module, suffix))
    exts = ctx.actions.declare_file(ctx.label.name + ".extensions")
    ctx.actions.write(exts, "\n".join(sorted(ext_lines)) + "\n")

    sysconfig = None
    if ctx.attr.sysconfigdata_name:
        vars = dict(ctx.attr.sysconfig_vars)
        vars["EXT_SUFFIX"] = suffix
        sysconfig = ctx.actions.declare_file("{}/{}.py".format(ctx.label.name, ctx.attr.sysconfigdata_name))
        ctx.actions.write(sysconfig, _sysconfigdata(vars))

    ctx.actions.run_shell(
        command = _INSTALL_SCRIPT,
        arguments = [out.path, prefix, listing.path, exts.path, sysconfig.path if sysconfig else "-"],
        inputs = ctx.files.srcs + ext_files + [listing, exts] + ([sysconfig] if sysconfig else []),
        outputs = [out],
        mnemonic = "CPythonInstallTree",
        progress_message = "Assembling %s" % ctx.attr.out,
        env = {"LC_ALL": "C", "PATH": "/bin:/usr/bin"},
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

cpython_install_tree = rule(
    implementation = _install_tree_impl,
    doc = "A directory of the installed interpreter (e.g. lib/python3.11): pure-Python sources, extension modules in lib-dynload, _sysconfigdata.",
    attrs = {
        "out": attr.string(mandatory = True, doc = "The directory's path in the package, e.g. install/lib/python3.11."),
        "srcs": attr.label_list(allow_files = True, doc = "Files to copy, below strip_prefix."),
        "strip_prefix": attr.string(default = "Lib", doc = "Directory of srcs (in the source tree) that maps to the output directory."),
        "extensions": attr.label_keyed_string_dict(doc = "Extension module targets -> module names, copied to lib-dynload/<name><ext_suffix>."),
        "ext_suffix": attr.string(default = ".so"),
        "sysconfigdata_name": attr.string(doc = "Module name of the _sysconfigdata file to write (none when empty)."),
        "sysconfig_vars": attr.string_dict(doc = "sysconfig's build-time variables."),
    },
)

def _platform_vars_impl(ctx):
    return [platform_common.TemplateVariableInfo({
        "MACHDEP": ctx.attr.machdep,
        "MULTIARCH": ctx.attr.multiarch,
        "SOABI": ctx.attr.soabi,
    })]

cpython_platform_vars = rule(
    implementation = _platform_vars_impl,
    doc = "The target platform's facts (platforms.bzl) as Make variables for copts.",
    attrs = {
        "machdep": attr.string(mandatory = True),
        "multiarch": attr.string(mandatory = True),
        "soabi": attr.string(mandatory = True),
    },
)

def _python_headers_impl(ctx):
    # Python.h and pyconfig.h must sit in one directory for tools that take
    # a single include directory (bindgen): link them into include/pythonX.Y.
    # A configuration's target (t/python_headers) links them under its own
    # directory (t/include/...), apart from the default build's.
    config_dir = ctx.label.name.rpartition("/")[0]
    inc = (config_dir + "/" if config_dir else "") + "include/python" + ctx.attr.version
    prefix = repo_root(ctx) + "/" + ctx.attr.strip_prefix + "/"
    hdrs = []
    for f in ctx.files.hdrs:
        if not f.path.startswith(prefix):
            fail("{} is not under {}".format(f.path, prefix))
        out = ctx.actions.declare_file(inc + "/" + f.path[len(prefix):])
        ctx.actions.symlink(output = out, target_file = f)
        hdrs.append(out)
    pyconfig = ctx.actions.declare_file(inc + "/pyconfig.h")
    ctx.actions.symlink(output = pyconfig, target_file = ctx.file.pyconfig)
    hdrs.append(pyconfig)
    include_dir = pyconfig.dirname
    system = ctx.attr.system_headers_from[CPythonHeadersInfo]
    return [
        CPythonHeadersInfo(
            hdrs = depset(hdrs),
            include_dir = include_dir,
            system_hdrs = system.system_hdrs,
            system_include_dirs = system.system_include_dirs,
            ext_suffix = ctx.attr.ext_suffix,
            defines = [],
        ),
        ctx.attr.cc[CcInfo],
        DefaultInfo(files = depset(hdrs)),
    ]

cpython_python_headers = rule(
    implementation = _python_headers_impl,
    doc = "This build's C API headers (Include/ plus the platform's pyconfig.h) as a Ferrule CPythonHeadersInfo, " +
          "for cpython_bindgen and cpython_extension: extension modules built for this interpreter.",
    attrs = {
        "hdrs": attr.label_list(allow_files = [".h"], mandatory = True, doc = "Include/**/*.h"),
        "strip_prefix": attr.string(default = "Include"),
        "pyconfig": attr.label(allow_single_file = [".h"], mandatory = True, doc = "The target platform's pyconfig.h."),
        "version": attr.string(mandatory = True, doc = "X.Y"),
        "ext_suffix": attr.string(mandatory = True),
        "cc": attr.label(mandatory = True, providers = [CcInfo], doc = "The same headers as a cc_library, for C compiles."),
        "system_headers_from": attr.label(
            default = "@ferrule_python//:headers",
            providers = [CPythonHeadersInfo],
            doc = "Where the C library headers that Python.h includes come from (for -nostdinc tools such as bindgen).",
        ),
    },
)
