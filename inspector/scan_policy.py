"""Which pickle globals `ckpt scan` calls safe, dangerous or unknown: tables, then `classify`.

Safe is exactly what torch.save (and `torch.load(weights_only=True)`), numpy and
torch.distributed.checkpoint write. Dangerous is a deny-list of modules and callables that run
code, touch the system or load more pickles (a superset of picklescan's). Everything else is
unknown: not known to be harmful, not known to be safe.
"""

from __future__ import annotations

import _compat_pickle
import re
from collections.abc import Iterator

from . import dtypes

SAFE, UNKNOWN, DANGEROUS = "safe", "unknown", "dangerous"


def _each(reason: str, names: str, prefix: str = "") -> dict[str, str]:
    return {f"{prefix}{n}": reason for n in names.split()}


# Qualified-name prefixes: a prefix matches itself and anything under it.
DENY: dict[str, str] = {
    **_each("operating-system calls", "os posix nt pty fcntl resource signal"),
    **_each("runs processes", "subprocess commands popen2 platform multiprocessing asyncio "
            "_posixsubprocess concurrent"),
    **_each("runs Python code", "runpy code codeop pdb bdb trace timeit profile cProfile doctest "
            "pydoc idlelib lib2to3 _pyrepl test IPython"),
    **_each("imports modules", "importlib imp pkgutil zipimport site sysconfig ensurepip pip venv "
            "distutils setuptools _osx_support _aix_support"),
    **_each("network access", "socket ssl http httplib urllib urllib2 urllib3 requests aiohttp "
            "ftplib smtplib telnetlib poplib imaplib nntplib xmlrpc webbrowser"),
    **_each("file system access", "shutil io _io pathlib tempfile glob tarfile zipfile dbm uuid"),
    **_each("loads nested pickles or code", "pickle _pickle cPickle dill cloudpickle joblib "
            "marshal shelve copyreg.add_extension copy_reg.add_extension"),
    **_each("native code", "ctypes _ctypes cffi _thread threading gc"),
    **_each("interpreter internals", "sys inspect"),
    "types": "builds functions and code objects",
    "logging.FileHandler": "writes files",
    "logging.config": "runs configuration code",
    **_each("builds call chains", "partial reduce", "functools."),
    **_each("builds attribute-access call chains", "attrgetter methodcaller itemgetter call",
            "operator."),
    **_each("builds attribute-access call chains", "attrgetter methodcaller itemgetter call",
            "_operator."),
    **_each("runs code or reaches any attribute", "eval exec compile getattr setattr delattr "
            "__import__ open input breakpoint globals locals vars apply execfile file reload type "
            "help exit quit __build_class__ super classmethod staticmethod property memoryview",
            "builtins."),
    **_each("loads a nested checkpoint (runs its pickle)", "torch.load torch.serialization.load"),
    "torch.hub": "downloads and runs code",
    "torch.jit": "loads and runs TorchScript",
    "torch.package": "loads packaged code",
    **_each("native or compiler entry points that run code", "torch._C torch.ops torch.classes "
            "torch._dynamo torch._inductor torch.fx torch.utils.cpp_extension"),
    **_each("runs processes or loaders", "torch.utils.collect_env torch.utils.bottleneck "
            "torch.utils._config_module torch.utils.data.datapipes.utils.decoder"),
    **_each("loads nested pickles or runs code", "numpy.load numpy.f2py numpy.testing "
            "numpy.distutils numpy.ctypeslib"),
}

_STORAGES = [d.storage for d in dtypes.DTYPES.values() if d.storage] + ["QUInt4x2Storage",
                                                                         "QUInt2x4Storage"]
_TENSOR_TYPES = [s.replace("Storage", "Tensor") for s in _STORAGES]  # torch < 0.4 tar records
_REBUILD = ("_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
            "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor "
            "_rebuild_nested_tensor _rebuild_device_tensor_from_numpy "
            "_rebuild_device_tensor_from_cpu_tensor _rebuild_meta_tensor_no_storage "
            "_rebuild_wrapper_subclass")
_DCP = ("Metadata TensorStorageMetadata BytesStorageMetadata ChunkStorageMetadata TensorProperties "
        "MetadataIndex StorageMeta _MEM_FORMAT_ENCODING")
_PATHS = "Path PosixPath WindowsPath PurePath PurePosixPath PureWindowsPath"

# Exact qualified names (checked before DENY: a constructor allowed inside a denied module).
ALLOW: dict[str, str] = {
    **_each("tensor rebuild", _REBUILD, "torch._utils."),
    "torch._tensor._rebuild_from_type_v2": "tensor rebuild",
    **_each("storage type", " ".join(_STORAGES), "torch."),
    **_each("storage type", " ".join(_STORAGES), "torch.cuda."),
    **_each("storage type", "TypedStorage UntypedStorage", "torch.storage."),
    **_each("legacy tensor type", " ".join(_TENSOR_TYPES), "torch."),
    **_each("legacy tensor type", " ".join(_TENSOR_TYPES), "torch.cuda."),
    **_each("dtype", " ".join(dtypes.DTYPES), "torch."),
    **_each("quantization scheme", "per_tensor_affine per_tensor_symmetric per_channel_affine "
            "per_channel_symmetric per_channel_affine_float_qparams", "torch."),
    "torch.Size": "shape",
    "torch.Tensor": "tensor type",
    "torch.device": "device",
    "torch.nn.parameter.Parameter": "parameter type",
    "torch.serialization._get_layout": "layout",
    **_each("container", "OrderedDict Counter defaultdict", "collections."),
    **_each("plain type", "set frozenset bytearray complex slice object int float str bytes list "
            "dict tuple bool range", "builtins."),
    "_codecs.encode": "bytes in protocol-2 pickles",
    "copyreg._reconstructor": "protocol 0/1 object (its class is checked on its own)",
    "argparse.Namespace": "state-only options object (fairseq `args`): attributes set, no code run",
    **_each("numpy array or scalar", "_reconstruct scalar", "numpy.core.multiarray."),
    **_each("numpy array or scalar", "_reconstruct scalar", "numpy._core.multiarray."),
    "numpy.ndarray": "numpy array",
    "numpy.dtype": "numpy dtype",
    **_each("DCP metadata", _DCP, "torch.distributed.checkpoint.metadata."),
    "torch.distributed.checkpoint.filesystem._StorageInfo": "DCP metadata",
    # DCP stores its checkpoint_id as a path object: building one touches nothing.
    **_each("path value", _PATHS, "pathlib."),
    **_each("path value", _PATHS, "pathlib._local."),
}

# numpy 2 pickles dtypes as numpy.dtypes.Float32DType and the like.
ALLOW_PATTERNS = [(re.compile(r"^numpy\.dtypes\.\w+DType$"), "numpy dtype")]

_DUNDER = re.compile(r"(^|\.)__\w+__(\.|$)")  # reaching through dunders escapes any allow-list
_CLEAN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def classify(module: str, name: str) -> tuple[str, str]:
    """(verdict, reason) for a global `module.name` a pickle would import."""
    if not _CLEAN_NAME.match(module) or not _CLEAN_NAME.match(name):
        return DANGEROUS, "obfuscated name (whitespace or odd characters): loaders may differ"
    module, name = python3_names(module, name)
    qual = f"{module}.{name}"
    if qual in ALLOW:
        return SAFE, ALLOW[qual]
    for prefix in _prefixes(qual):
        if prefix in DENY:
            return DANGEROUS, DENY[prefix]
    walked = _walked_to_denied(name)
    if walked:
        return DANGEROUS, walked
    if _DUNDER.search(name):
        return DANGEROUS, "reaches through dunder attributes"
    for pattern, reason in ALLOW_PATTERNS:
        if pattern.match(qual):
            return SAFE, reason
    return UNKNOWN, "not on the allow-list of what torch writes: check where it comes from"


def python3_names(module: str, name: str) -> tuple[str, str]:
    """Python 2 names (`__builtin__`, `copy_reg`) as the unpickler maps them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _walked_to_denied(name: str) -> str | None:
    """A dotted `name` is walked attribute by attribute from the imported module (pickle's
    `_getattribute`), and a module's attributes include the modules it imported:
    `posixpath` + `os.system` is `os.system`. Any tail of the walk that starts a denied path is
    reached, whatever module the walk started from."""
    parts = name.split(".")
    for start in range(len(parts)):
        for prefix in _prefixes(".".join(parts[start:])):
            if prefix in DENY:
                return f"reaches {prefix} by attribute access: {DENY[prefix]}"
    return None


def _prefixes(qual: str) -> Iterator[str]:
    parts = qual.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])
