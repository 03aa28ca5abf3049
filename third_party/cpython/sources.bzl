"""What the @cpython overlay compiles, per CPython version: CPYTHON_VERSIONS.

One entry per supported X.Y; the overlay (BUILD.cpython.bazel) takes every
list from the entry of the tree's version, so adding a version is one entry
here plus platforms/X.Y/<platform>/pyconfig.h. Paths are relative to the
CPython source tree. The groups follow the interpreter's layout (parser,
core runtime, objects, built-in modules) and Makefile.pre.in's object lists
of that release (PARSER_OBJS, OBJECT_OBJS, PYTHON_OBJS, MODULE_OBJS); the
built-in module set is the one Modules/Setup.bootstrap names (plus
xxsubtype, which the test suite expects), and the shared modules are a lean
set of stdlib extension modules.
"""

_PARSER_SRCS_311 = [
    "Parser/token.c",
    "Parser/pegen.c",
    "Parser/pegen_errors.c",
    "Parser/action_helpers.c",
    "Parser/parser.c",
    "Parser/string_parser.c",
    "Parser/peg_api.c",
    "Parser/myreadline.c",
    "Parser/tokenizer.c",
]

_PYTHON_SRCS_311 = [
    "Python/_warnings.c",
    "Python/Python-ast.c",
    "Python/Python-tokenize.c",
    "Python/asdl.c",
    "Python/ast.c",
    "Python/ast_opt.c",
    "Python/ast_unparse.c",
    "Python/bltinmodule.c",
    "Python/ceval.c",
    "Python/codecs.c",
    "Python/compile.c",
    "Python/context.c",
    "Python/dynamic_annotations.c",
    "Python/errors.c",
    "Python/frame.c",
    "Python/frozenmain.c",
    "Python/future.c",
    "Python/getargs.c",
    "Python/getcompiler.c",
    "Python/getcopyright.c",
    "Python/getversion.c",
    "Python/hamt.c",
    "Python/hashtable.c",
    "Python/import.c",
    "Python/importdl.c",
    "Python/initconfig.c",
    "Python/marshal.c",
    "Python/modsupport.c",
    "Python/mysnprintf.c",
    "Python/mystrtoul.c",
    "Python/pathconfig.c",
    "Python/preconfig.c",
    "Python/pyarena.c",
    "Python/pyctype.c",
    "Python/pyfpe.c",
    "Python/pyhash.c",
    "Python/pylifecycle.c",
    "Python/pymath.c",
    "Python/pystate.c",
    "Python/pythonrun.c",
    "Python/pytime.c",
    "Python/bootstrap_hash.c",
    "Python/specialize.c",
    "Python/structmember.c",
    "Python/symtable.c",
    "Python/thread.c",
    "Python/traceback.c",
    "Python/getopt.c",
    "Python/pystrcmp.c",
    "Python/pystrtod.c",
    "Python/pystrhex.c",
    "Python/dtoa.c",
    "Python/formatter_unicode.c",
    "Python/fileutils.c",
    "Python/suggestions.c",
]

_OBJECTS_SRCS_311 = [
    "Objects/abstract.c",
    "Objects/accu.c",
    "Objects/boolobject.c",
    "Objects/bytes_methods.c",
    "Objects/bytearrayobject.c",
    "Objects/bytesobject.c",
    "Objects/call.c",
    "Objects/capsule.c",
    "Objects/cellobject.c",
    "Objects/classobject.c",
    "Objects/codeobject.c",
    "Objects/complexobject.c",
    "Objects/descrobject.c",
    "Objects/enumobject.c",
    "Objects/exceptions.c",
    "Objects/genericaliasobject.c",
    "Objects/genobject.c",
    "Objects/fileobject.c",
    "Objects/floatobject.c",
    "Objects/frameobject.c",
    "Objects/funcobject.c",
    "Objects/interpreteridobject.c",
    "Objects/iterobject.c",
    "Objects/listobject.c",
    "Objects/longobject.c",
    "Objects/dictobject.c",
    "Objects/odictobject.c",
    "Objects/memoryobject.c",
    "Objects/methodobject.c",
    "Objects/moduleobject.c",
    "Objects/namespaceobject.c",
    "Objects/object.c",
    "Objects/obmalloc.c",
    "Objects/picklebufobject.c",
    "Objects/rangeobject.c",
    "Objects/setobject.c",
    "Objects/sliceobject.c",
    "Objects/structseq.c",
    "Objects/tupleobject.c",
    "Objects/typeobject.c",
    "Objects/unicodeobject.c",
    "Objects/unicodectype.c",
    "Objects/unionobject.c",
    "Objects/weakrefobject.c",
]

# Core files compiled with extra defines of their own (see the overlay).
_CORE_SPECIAL_SRCS_311 = [
    "Python/sysmodule.c",  # ABIFLAGS, MULTIARCH
    "Python/getplatform.c",  # PLATFORM
    "Python/dynload_shlib.c",  # SOABI
]

# The rest of libpython's Modules/ part (config.c is generated).
_CORE_MODULES_SRCS_311 = [
    "Modules/main.c",
    "Modules/gcmodule.c",
    "Modules/getbuildinfo.c",
]

# Built-in (static) extension modules: module name -> sources.
_BUILTIN_MODULES_311 = {
    "atexit": ["Modules/atexitmodule.c"],
    "faulthandler": ["Modules/faulthandler.c"],
    "posix": ["Modules/posixmodule.c"],
    "_signal": ["Modules/signalmodule.c"],
    "_tracemalloc": ["Modules/_tracemalloc.c"],
    "_codecs": ["Modules/_codecsmodule.c"],
    "_collections": ["Modules/_collectionsmodule.c"],
    "errno": ["Modules/errnomodule.c"],
    "_io": [
        "Modules/_io/_iomodule.c",
        "Modules/_io/iobase.c",
        "Modules/_io/fileio.c",
        "Modules/_io/bytesio.c",
        "Modules/_io/bufferedio.c",
        "Modules/_io/textio.c",
        "Modules/_io/stringio.c",
    ],
    "itertools": ["Modules/itertoolsmodule.c"],
    "_sre": ["Modules/_sre/sre.c"],
    "_thread": ["Modules/_threadmodule.c"],
    "time": ["Modules/timemodule.c"],
    "_weakref": ["Modules/_weakref.c"],
    "_abc": ["Modules/_abc.c"],
    "_functools": ["Modules/_functoolsmodule.c"],
    "_locale": ["Modules/_localemodule.c"],
    "_operator": ["Modules/_operator.c"],
    "_stat": ["Modules/_stat.c"],
    "_symtable": ["Modules/symtablemodule.c"],
    "pwd": ["Modules/pwdmodule.c"],
    "xxsubtype": ["Modules/xxsubtype.c"],
}

# Shared extension modules (lib-dynload): name -> struct(srcs, copts, linkopts).
def _ext(srcs, copts = [], linkopts = []):
    return struct(srcs = srcs, copts = copts, linkopts = linkopts)

_SHARED_MODULES_311 = {
    # The set the issue asks for.
    "_json": _ext(["Modules/_json.c"]),
    "_struct": _ext(["Modules/_struct.c"]),
    "math": _ext(["Modules/mathmodule.c"], linkopts = ["-lm"]),
    "binascii": _ext(["Modules/binascii.c"], copts = ["-DUSE_ZLIB_CRC32"], linkopts = ["-lz"]),
    "_random": _ext(["Modules/_randommodule.c"]),
    "select": _ext(["Modules/selectmodule.c"]),
    "_socket": _ext(["Modules/socketmodule.c"]),
    "array": _ext(["Modules/arraymodule.c"]),
    "zlib": _ext(["Modules/zlibmodule.c"], linkopts = ["-lz"]),
    # What the test runner (regrtest) and the tested modules import.
    "_opcode": _ext(["Modules/_opcode.c"]),
    "_contextvars": _ext(["Modules/_contextvarsmodule.c"]),
    "_posixsubprocess": _ext(["Modules/_posixsubprocess.c"]),
    "fcntl": _ext(["Modules/fcntlmodule.c"]),
    "_sha512": _ext(["Modules/sha512module.c"]),
    "_bisect": _ext(["Modules/_bisectmodule.c"]),
    "_heapq": _ext(["Modules/_heapqmodule.c"]),
    "unicodedata": _ext(["Modules/unicodedata.c"]),
}

# Frozen modules (3.11 and 3.13), in the order Python/frozen.c lists them: name -> source.
# getpath is frozen too, for Modules/getpath.c only.
_FROZEN_MODULES_311 = [
    ("importlib._bootstrap", "Lib/importlib/_bootstrap.py"),
    ("importlib._bootstrap_external", "Lib/importlib/_bootstrap_external.py"),
    ("zipimport", "Lib/zipimport.py"),
    ("abc", "Lib/abc.py"),
    ("codecs", "Lib/codecs.py"),
    ("io", "Lib/io.py"),
    ("_collections_abc", "Lib/_collections_abc.py"),
    ("_sitebuiltins", "Lib/_sitebuiltins.py"),
    ("genericpath", "Lib/genericpath.py"),
    ("ntpath", "Lib/ntpath.py"),
    ("posixpath", "Lib/posixpath.py"),
    ("os", "Lib/os.py"),
    ("site", "Lib/site.py"),
    ("stat", "Lib/stat.py"),
    ("importlib.util", "Lib/importlib/util.py"),
    ("importlib.machinery", "Lib/importlib/machinery.py"),
    ("runpy", "Lib/runpy.py"),
    ("__hello__", "Lib/__hello__.py"),
    ("__phello__", "Lib/__phello__/__init__.py"),
    ("__phello__.ham", "Lib/__phello__/ham/__init__.py"),
    ("__phello__.ham.eggs", "Lib/__phello__/ham/eggs.py"),
    ("__phello__.spam", "Lib/__phello__/spam.py"),
    ("frozen_only", "Tools/freeze/flag.py"),
]

# --- CPython 3.13 (Makefile.pre.in of 3.13.15) ---

_PARSER_SRCS_313 = [
    "Parser/token.c",
    "Parser/pegen.c",
    "Parser/pegen_errors.c",
    "Parser/action_helpers.c",
    "Parser/parser.c",
    "Parser/string_parser.c",
    "Parser/peg_api.c",
    "Parser/lexer/buffer.c",
    "Parser/lexer/lexer.c",
    "Parser/lexer/state.c",
    "Parser/tokenizer/file_tokenizer.c",
    "Parser/tokenizer/readline_tokenizer.c",
    "Parser/tokenizer/string_tokenizer.c",
    "Parser/tokenizer/utf8_tokenizer.c",
    "Parser/tokenizer/helpers.c",
    "Parser/myreadline.c",
]

_PYTHON_SRCS_313 = [
    "Python/_warnings.c",
    "Python/Python-ast.c",
    "Python/Python-tokenize.c",
    "Python/asdl.c",
    "Python/assemble.c",
    "Python/ast.c",
    "Python/ast_opt.c",
    "Python/ast_unparse.c",
    "Python/bltinmodule.c",
    "Python/brc.c",
    "Python/ceval.c",
    "Python/codecs.c",
    "Python/compile.c",
    "Python/context.c",
    "Python/critical_section.c",
    "Python/crossinterp.c",
    "Python/dynamic_annotations.c",
    "Python/errors.c",
    "Python/flowgraph.c",
    "Python/frame.c",
    "Python/frozenmain.c",
    "Python/future.c",
    "Python/gc.c",
    "Python/gc_free_threading.c",
    "Python/gc_gil.c",
    "Python/getargs.c",
    "Python/getcompiler.c",
    "Python/getcopyright.c",
    "Python/getversion.c",
    "Python/ceval_gil.c",
    "Python/hamt.c",
    "Python/hashtable.c",
    "Python/import.c",
    "Python/importdl.c",
    "Python/initconfig.c",
    "Python/interpconfig.c",
    "Python/instrumentation.c",
    "Python/instruction_sequence.c",
    "Python/intrinsics.c",
    "Python/jit.c",
    "Python/legacy_tracing.c",
    "Python/lock.c",
    "Python/marshal.c",
    "Python/modsupport.c",
    "Python/mysnprintf.c",
    "Python/mystrtoul.c",
    "Python/object_stack.c",
    "Python/optimizer.c",
    "Python/optimizer_analysis.c",
    "Python/optimizer_symbols.c",
    "Python/parking_lot.c",
    "Python/pathconfig.c",
    "Python/preconfig.c",
    "Python/pyarena.c",
    "Python/pyctype.c",
    "Python/pyfpe.c",
    "Python/pyhash.c",
    "Python/pylifecycle.c",
    "Python/pymath.c",
    "Python/pystate.c",
    "Python/pythonrun.c",
    "Python/pytime.c",
    "Python/qsbr.c",
    "Python/bootstrap_hash.c",
    "Python/specialize.c",
    "Python/structmember.c",
    "Python/symtable.c",
    "Python/thread.c",
    "Python/traceback.c",
    "Python/tracemalloc.c",
    "Python/getopt.c",
    "Python/pystrcmp.c",
    "Python/pystrtod.c",
    "Python/pystrhex.c",
    "Python/dtoa.c",
    "Python/formatter_unicode.c",
    "Python/fileutils.c",
    "Python/suggestions.c",
    "Python/perf_trampoline.c",
    "Python/perf_jit_trampoline.c",
]

# asm_trampoline.S: the perf trampoline (PY_HAVE_PERF_TRAMPOLINE).
_OBJECTS_SRCS_313 = [
    "Objects/abstract.c",
    "Objects/boolobject.c",
    "Objects/bytes_methods.c",
    "Objects/bytearrayobject.c",
    "Objects/bytesobject.c",
    "Objects/call.c",
    "Objects/capsule.c",
    "Objects/cellobject.c",
    "Objects/classobject.c",
    "Objects/codeobject.c",
    "Objects/complexobject.c",
    "Objects/descrobject.c",
    "Objects/enumobject.c",
    "Objects/exceptions.c",
    "Objects/genericaliasobject.c",
    "Objects/genobject.c",
    "Objects/fileobject.c",
    "Objects/floatobject.c",
    "Objects/frameobject.c",
    "Objects/funcobject.c",
    "Objects/iterobject.c",
    "Objects/listobject.c",
    "Objects/longobject.c",
    "Objects/dictobject.c",
    "Objects/odictobject.c",
    "Objects/memoryobject.c",
    "Objects/methodobject.c",
    "Objects/moduleobject.c",
    "Objects/namespaceobject.c",
    "Objects/object.c",
    "Objects/obmalloc.c",
    "Objects/picklebufobject.c",
    "Objects/rangeobject.c",
    "Objects/setobject.c",
    "Objects/sliceobject.c",
    "Objects/structseq.c",
    "Objects/tupleobject.c",
    "Objects/typeobject.c",
    "Objects/typevarobject.c",
    "Objects/unicodeobject.c",
    "Objects/unicodectype.c",
    "Objects/unionobject.c",
    "Objects/weakrefobject.c",
    "Python/asm_trampoline.S",
]

_CORE_MODULES_SRCS_313 = [
    "Modules/main.c",
    "Modules/gcmodule.c",
    "Modules/getbuildinfo.c",
]

_BUILTIN_MODULES_313 = {
    "atexit": ["Modules/atexitmodule.c", ],
    "faulthandler": ["Modules/faulthandler.c", ],
    "posix": ["Modules/posixmodule.c", ],
    "_signal": ["Modules/signalmodule.c", ],
    "_tracemalloc": ["Modules/_tracemalloc.c", ],
    "_suggestions": ["Modules/_suggestions.c", ],
    "_codecs": ["Modules/_codecsmodule.c", ],
    "_collections": ["Modules/_collectionsmodule.c", ],
    "errno": ["Modules/errnomodule.c", ],
    "_io": ["Modules/_io/_iomodule.c", "Modules/_io/iobase.c", "Modules/_io/fileio.c", "Modules/_io/bytesio.c", "Modules/_io/bufferedio.c", "Modules/_io/textio.c", "Modules/_io/stringio.c", ],
    "itertools": ["Modules/itertoolsmodule.c", ],
    "_sre": ["Modules/_sre/sre.c", ],
    "_sysconfig": ["Modules/_sysconfig.c", ],
    "_thread": ["Modules/_threadmodule.c", ],
    "time": ["Modules/timemodule.c", ],
    "_typing": ["Modules/_typingmodule.c", ],
    "_weakref": ["Modules/_weakref.c", ],
    "_abc": ["Modules/_abc.c", ],
    "_functools": ["Modules/_functoolsmodule.c", ],
    "_locale": ["Modules/_localemodule.c", ],
    "_operator": ["Modules/_operator.c", ],
    "_stat": ["Modules/_stat.c", ],
    "_symtable": ["Modules/symtablemodule.c", ],
    "pwd": ["Modules/pwdmodule.c", ],
    "xxsubtype": ["Modules/xxsubtype.c"],
}

_SHARED_MODULES_313 = {
    "_json": _ext(["Modules/_json.c"]),
    "_struct": _ext(["Modules/_struct.c"]),
    "math": _ext(["Modules/mathmodule.c"], linkopts = ["-lm"]),
    "binascii": _ext(["Modules/binascii.c"], copts = ["-DUSE_ZLIB_CRC32"], linkopts = ["-lz"]),
    "_random": _ext(["Modules/_randommodule.c"]),
    "select": _ext(["Modules/selectmodule.c"]),
    "_socket": _ext(["Modules/socketmodule.c"]),
    "array": _ext(["Modules/arraymodule.c"]),
    "zlib": _ext(["Modules/zlibmodule.c"], linkopts = ["-lz"]),
    "_opcode": _ext(["Modules/_opcode.c"]),
    "_contextvars": _ext(["Modules/_contextvarsmodule.c"]),
    "_posixsubprocess": _ext(["Modules/_posixsubprocess.c"]),
    "fcntl": _ext(["Modules/fcntlmodule.c"]),
    # random imports _sha2's sha512 (HACL* code, as Setup.stdlib builds it).
    "_sha2": _ext(
        ["Modules/sha2module.c", "Modules/_hacl/Hacl_Hash_SHA2.c"],
        copts = ["-I{repo}/Modules/_hacl/include", "-D_BSD_SOURCE", "-D_DEFAULT_SOURCE"],
    ),
    "_bisect": _ext(["Modules/_bisectmodule.c"]),
    "_heapq": _ext(["Modules/_heapqmodule.c"]),
    "unicodedata": _ext(["Modules/unicodedata.c"]),
}

# --- the table ---

# The flags configure chooses on Linux with gcc (OPT, BASECFLAGS,
# CONFIGURE_CFLAGS_NODIST), without -g.
_COPTS_311 = [
    "-std=c11",
    "-O3",
    "-fwrapv",
    "-DNDEBUG",
    "-Wall",
    "-Wsign-compare",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-Werror=implicit-function-declaration",
    "-fvisibility=hidden",
]

_COPTS_313 = [
    "-std=c11",
    "-O3",
    "-fno-strict-overflow",
    "-DNDEBUG",
    "-Wall",
    "-Wsign-compare",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-Wstrict-prototypes",
    "-Werror=implicit-function-declaration",
    "-fvisibility=hidden",
]

# Headers and textually included files next to the sources.
_PRIVATE_HDRS_311 = [
    "Objects/**/*.h",
    "Python/**/*.h",
    "Parser/**/*.h",
    "Modules/*.h",
    "Modules/clinic/*.h",
    "Modules/_io/**/*.h",
    "Modules/_sre/*.h",
    "Modules/_sre/clinic/*.h",
    "Modules/getaddrinfo.c",
    "Modules/getnameinfo.c",
    "Objects/typeslots.inc",
]

_PRIVATE_HDRS_313 = _PRIVATE_HDRS_311 + [
    "Objects/mimalloc/**/*.c",  # obmalloc.c includes mimalloc/static.c
    "Modules/_hacl/**/*.h",
]

# Built-in modules written in Rust: their PyInit_ functions come from one
# Rust staticlib per interpreter configuration ("" default, "t/"
# free-threaded), linked into libpython and listed in config.c's inittab.
# With --@ferrule//third_party/cpython:rust_builtins=false they are shared
# extension modules in lib-dynload instead (shared: configuration -> module
# -> its cpython_extension).
_NO_RUST_BUILTINS = struct(modules = [], staticlibs = {}, shared = {})

_RUST_BUILTINS_313 = struct(
    modules = ["_base64"],
    staticlibs = {
        "": "@ferrule//third_party/cpython/rust:cpython313_builtins",
        "t/": "@ferrule//third_party/cpython/rust:cpython313t_builtins",
    },
    shared = {
        "": {"_base64": "@ferrule//third_party/cpython/rust:cpython313_base64"},
        "t/": {"_base64": "@ferrule//third_party/cpython/rust:cpython313t_base64"},
    },
)

CPYTHON_VERSIONS = {
    "3.11": struct(
        parser_srcs = _PARSER_SRCS_311,
        python_srcs = _PYTHON_SRCS_311,
        objects_srcs = _OBJECTS_SRCS_311,
        core_modules_srcs = _CORE_MODULES_SRCS_311,
        builtin_modules = _BUILTIN_MODULES_311,
        shared_modules = _SHARED_MODULES_311,
        frozen_modules = _FROZEN_MODULES_311,
        # No Rust in 3.11's core: its Rust _base64 is a shared extension.
        rust_builtins = _NO_RUST_BUILTINS,
        # Python/deepfreeze/deepfreeze.c from the frozen modules (3.11 and 3.12).
        deepfreeze = True,
        # No free-threaded build before 3.13.
        free_threading = False,
        copts = _COPTS_311,
        # Include directories below the tree (-I in Makefile's CFLAGS).
        includes = ["Include", "Include/internal"],
        private_hdrs = _PRIVATE_HDRS_311,
        # The setup step's destination and the variable that overrides it.
        setup_dir = ".ferrule/cpython-src",
        setup_script = "tools/setup.d/30-cpython-source.sh",
        src_env = "FERRULE_CPYTHON_SRC",
    ),
    "3.13": struct(
        parser_srcs = _PARSER_SRCS_313,
        python_srcs = _PYTHON_SRCS_313,
        objects_srcs = _OBJECTS_SRCS_313,
        core_modules_srcs = _CORE_MODULES_SRCS_313,
        builtin_modules = _BUILTIN_MODULES_313,
        shared_modules = _SHARED_MODULES_313,
        frozen_modules = _FROZEN_MODULES_311,  # the same list (FROZEN_FILES_IN)
        rust_builtins = _RUST_BUILTINS_313,
        # 3.13 dropped deepfreeze: Python/frozen.c includes the marshalled modules.
        deepfreeze = False,
        # A second interpreter, free-threaded (--disable-gil: Py_GIL_DISABLED,
        # ABI flag t), with its own pyconfig.h (platforms/3.13t/).
        free_threading = True,
        copts = _COPTS_313,
        includes = ["Include", "Include/internal", "Include/internal/mimalloc"],
        private_hdrs = _PRIVATE_HDRS_313,
        setup_dir = ".ferrule/cpython313-src",
        setup_script = "tools/setup.d/31-cpython313-source.sh",
        src_env = "FERRULE_CPYTHON313_SRC",
    ),
}
