"""What the @cpython overlay compiles: Ferrule's own lists for CPython 3.11.

Paths are relative to the CPython source tree. The groups follow the
interpreter's layout (parser, core runtime, objects, built-in modules); the
built-in module set is the one Modules/Setup.bootstrap names (plus
xxsubtype, which the test suite expects), and the shared modules are a lean
set of stdlib extension modules.
"""

PARSER_SRCS = [
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

PYTHON_SRCS = [
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

OBJECTS_SRCS = [
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
CORE_SPECIAL_SRCS = [
    "Python/sysmodule.c",  # ABIFLAGS, MULTIARCH
    "Python/getplatform.c",  # PLATFORM
    "Python/dynload_shlib.c",  # SOABI
]

# The rest of libpython's Modules/ part (config.c is generated).
CORE_MODULES_SRCS = [
    "Modules/main.c",
    "Modules/gcmodule.c",
    "Modules/getbuildinfo.c",
]

# Built-in (static) extension modules: module name -> sources.
BUILTIN_MODULES = {
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

SHARED_MODULES = {
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

# Frozen modules, in the order Python/frozen.c lists them: name -> source.
# getpath is frozen too, for Modules/getpath.c only.
FROZEN_MODULES = [
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
