"""Deciding on an imported global: alias canonicalisation, the per-loader allowlist, and gadget severities.

Anything not on the loader's allowlist needs code: loading imports it from its package. The denylist here raises
that to malicious for callables known to run code, spawn processes, touch files or the network, or import modules.
"""

from __future__ import annotations

from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

from openckpt.scan.pickle.allowlist import ALLOWED, WEIGHTS_ONLY
from openckpt.scan.verdict import Severity

__all__ = ["LOADER_GADGETS", "canonical", "classify", "weights_only"]

ALIASES = {
    "__builtin__": "builtins",
    "__builtins__": "builtins",
    "exceptions": "builtins",
    "posix": "os",
    "nt": "os",
    "_operator": "operator",
    "_pickle": "pickle",
    "cPickle": "pickle",
    "_io": "io",
    "_collections": "collections",
    "_functools": "functools",
    "copy_reg": "copyreg",
    "_socket": "socket",
    "_ssl": "ssl",
    "_posixsubprocess": "subprocess",
    "_thread": "threading",
    "thread": "threading",
    "_imp": "importlib",
    "imp": "importlib",
    "_marshal": "marshal",
    "posixpath": "os.path",
    "ntpath": "os.path",
    "commands": "subprocess",
    "popen2": "subprocess",
    "numpy.core": "numpy._core",
    "_ctypes": "ctypes",
    "_winapi": "subprocess",
    "_signal": "signal",
    "_sqlite3": "sqlite3",
    "_lzma": "lzma",
    "_bz2": "bz2",
    "_pyio": "io",
}

# Modules whose every callable is a code-execution, process, file, network or import gadget.
DANGEROUS_MODULES = frozenset(
    """os subprocess sys shutil socket ssl http urllib urllib2 httplib requests aiohttp httpx urllib3 ftplib
    smtplib telnetlib imaplib poplib nntplib xmlrpc socketserver asyncio multiprocessing concurrent threading
    signal pty tty ctypes cffi importlib pkgutil runpy zipimport code codeop pdb bdb cProfile profile trace timeit
    doctest idlelib lib2to3 pydoc webbrowser venv ensurepip pip setuptools distutils _aix_support _osx_support
    _pyrepl test io logging shelve dbm sqlite3 marshal pickle dill cloudpickle types operator functools inspect gc
    platform glob fileinput mailcap tarfile zipfile tempfile antigravity this getpass resource select mmap fcntl
    readline rlcompleter site sysconfig builtins sre_compile paramiko fabric pexpect sh plumbum psutil joblib
    jinja2 mako yaml ruamel numexpr uuid""".split()  # noqa: SIM905
)
# Sub-trees of otherwise allowed packages that hold gadgets.
DANGEROUS_SUBTREES = (
    "torch.hub",
    "torch.jit",
    "torch._dynamo",
    "torch._inductor",
    "torch.fx",
    "torch.package",
    "torch.utils.collect_env",
    "torch.utils.bottleneck",
    "torch.utils.data.datapipes",
    "torch.utils._config_module",
    "torch.utils.cpp_extension",
    "torch.utils.benchmark",
    "torch.distributed",
    "torch.multiprocessing",
    "torch.ops",
    "torch._ops",
    "torch._C",
    "torch.testing",
    "torch.compiler",
    "torch.export",
    "torch.onnx",
    "torch.backends",
    "numpy.f2py",
    "numpy.testing",
    "numpy.distutils",
    "numpy.ctypeslib",
    "numpy.lib.npyio",
    "numpy.lib.format",
    "numpy.lib._npyio_impl",
    "numpy.lib.utils",
    "keras.src.utils",
    "tensorflow.python.ops",
)
DANGEROUS_NAMES = frozenset(
    """system popen popen2 popen3 spawn spawnl spawnv spawnve spawnlp execv execve execl execlp execvp fork
    forkpty eval exec execfile compile __import__ import_module reload getattr setattr delattr globals locals vars
    breakpoint input apply run runctx runcode runsource call check_call check_output getoutput getstatusoutput
    Popen loads load load_module urlopen urlretrieve open remove unlink rmtree rmdir removedirs rename chmod chown
    kill write_text write_bytes write_file mkdir makedirs symlink link startfile create_connection connect
    _load_from_bytes fromfile memmap loadtxt genfromtxt runpath run_path run_module resolve_name locate
    methodcaller attrgetter itemgetter partial reduce CodeType FunctionType LambdaType MethodType
    _get_command_stdout _read_output _read_cmd_output pipe_pager pipepager tempfilepager""".split()  # noqa: SIM905
)
# Path components that reach a dangerous module through attributes: ("pathlib", "os.system").
DANGEROUS_COMPONENTS = frozenset(
    """os posix nt subprocess sys builtins __builtin__ __builtins__ importlib runpy pty socket ctypes shutil pickle
    _pickle marshal code operator _operator io _io""".split()  # noqa: SIM905
)

LOADER_GADGETS = frozenset(
    {
        ("torch.storage", "_load_from_bytes"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("pickle", "loads"),
        ("pickle", "load"),
        ("dill", "loads"),
        ("dill._dill", "loads"),
        ("cloudpickle", "loads"),
        ("joblib", "load"),
        ("numpy", "loads"),
        ("numpy._core.numeric", "loads"),
    }
)
"""Callables that unpickle their (bytes) argument: their literal arguments are scanned as files."""


def canonical(module: str, name: str) -> tuple[str, str]:
    """The real ``(module, qualname)`` behind aliases, Python 2 names and C-module twins."""
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    module = IMPORT_MAPPING.get(module, module)
    head = module.split(".")[0]
    for prefix in (module, head):
        if prefix in ALIASES:
            module = ALIASES[prefix] + module[len(prefix) :]
            break
    if module.startswith("numpy.core.") or module == "numpy.core":
        module = "numpy._core" + module[len("numpy.core") :]
    return module, name


def weights_only(module: str, name: str) -> bool:
    """Whether ``torch.load(weights_only=True)`` accepts the global without ``add_safe_globals``."""
    return (module, name) in WEIGHTS_ONLY


def classify(module: str, name: str, loader: str) -> tuple[Severity, str] | None:
    """``None`` if the canonical global is allowed for ``loader``; else its severity and the reason."""
    if (module, name) in ALLOWED[loader]:
        return None
    if loader == "torchscript" and (module == "__torch__" or module.startswith("__torch__.")):
        return None  # a TorchScript type of the archive's own code/, resolved by torch.jit, never imported
    full = f"{module}.{name}"
    parts = full.split(".")
    top = parts[0]
    if any(p.startswith("__") and p.endswith("__") and p not in ("__main__",) for p in parts[1:]) and not (
        name.startswith("__pyx_unpickle") or name in ("__newobj__", "__newobj_ex__")
    ):
        return Severity.MALICIOUS, f"{full}: walks dunder attributes (sandbox escape)"
    if (module, name) in LOADER_GADGETS:
        return Severity.MALICIOUS, f"{full}: unpickles/loads its argument (nested payload loader)"
    if top in DANGEROUS_MODULES:
        return Severity.MALICIOUS, f"{full}: code-execution, process, file, network or import gadget ({top})"
    for subtree in DANGEROUS_SUBTREES:
        if full == subtree or full.startswith(subtree + "."):
            return Severity.MALICIOUS, f"{full}: known gadget ({subtree})"
    if any(p in DANGEROUS_COMPONENTS for p in parts[1:-1]) or (
        "." in name and name.split(".")[0] in DANGEROUS_COMPONENTS
    ):
        return Severity.MALICIOUS, f"{full}: reaches a dangerous module through attributes"
    if parts[-1] in DANGEROUS_NAMES:
        return Severity.MALICIOUS, f"{full}: name of a known gadget ({parts[-1]})"
    if (module, name) in ALLOWED["pickle"]:
        return Severity.NEEDS_CODE, f"{full}: not allowed for the {loader} loader (loading needs {top})"
    return Severity.NEEDS_CODE, f"{full}: not on the allowlist (loading needs {top})"
