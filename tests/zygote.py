"""Test processes forked from a warm interpreter instead of started cold.

A test that runs ``python script.py``, ``python -m openckpt.hub`` or ``python -m openckpt.cli.app`` pays 2 to 4 CPU-s
of imports (torch, FastAPI, SQLAlchemy) before the process does anything; the suite starts hundreds. ``popen`` and
``run`` start them instead as children of a *zygote*: one interpreter per pytest worker that has imported those once
and forks on request. Each child is a real process all the same: its own pid, its own arguments, environment, working
directory and standard streams, killed by a real SIGKILL, its exit status reported as ``subprocess`` reports it.

What a child shares with its siblings is what a fork shares: modules imported before the first request (none of
them has run a tensor op, so none has started a thread pool), and Python's hash seed. Modules that read the
environment when imported are not preloaded: ``huggingface_hub`` and ``transformers`` read ``HF_*`` settings then, and
a child's environment is its own.

``python -c CODE`` and any command not named here starts cold: a test that checks what a fresh interpreter imports
must see a fresh interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import types
import warnings
from pathlib import Path
from typing import Any

PRELOAD = (
    "numpy",
    "torch",
    "torch._dynamo",  # these three, tokenizers and regex: what importing transformers costs besides itself
    "torch.distributed.tensor",
    "torch.utils.data",
    "tokenizers",
    "regex",
    "safetensors.torch",
    "openckpt",
    "openckpt.checkpoint",
    "openckpt.hub.app",
    "openckpt.hub.server",
    "openckpt.cli.app",
)
"""Imported by the zygote before it forks; none reads the environment when imported."""

WARM_PACKAGES = ("openckpt.hub",)
"""Packages imported whole before the zygote forks: a hub imports its routes and services lazily, on its first
``create_app``, and each hub child would otherwise import them (and compile its page templates) anew."""

ENVIRONMENT_READERS = ("huggingface_hub", "transformers")
"""Modules that must not be in the zygote: they read ``HF_*`` settings when imported."""

ROOT = Path(__file__).resolve().parent.parent
_STATUS = struct.Struct("!i")


# ---------------------------------------------------------------------------------------------------- the zygote


def _serve(path: str, parent: int) -> None:
    """Fork a child per request on the Unix socket ``path``; report each child's exit status on its request's
    connection. Stops when ``parent`` (the pytest worker) is gone."""
    _warm()
    gc.collect()
    gc.freeze()  # a child's collections skip what the zygote made: its pages stay shared
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while os.getppid() == parent:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is listener:
                connection, _ = listener.accept()
                pid = _fork(connection, listener, selector)
                pidfd = os.pidfd_open(pid)
                selector.register(pidfd, selectors.EVENT_READ, (pid, connection))
            else:
                pid, connection = key.data
                selector.unregister(key.fileobj)
                os.close(key.fd)
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                with contextlib.suppress(OSError):
                    connection.sendall(_STATUS.pack(code))
                connection.close()


def _warm() -> None:
    """Import ``PRELOAD``, every module of ``WARM_PACKAGES`` and the server, and compile the hub's page templates."""
    import importlib
    import pkgutil

    for name in PRELOAD:
        importlib.import_module(name)
    for package in WARM_PACKAGES:
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            if not module.name.endswith(".__main__") and ".migrations." not in module.name:
                importlib.import_module(module.name)
    for name in ("uvicorn", "uvicorn.protocols.http.httptools_impl", "uvicorn.loops.uvloop", "uvicorn.lifespan.on"):
        importlib.import_module(name)
    from openckpt.hub.routes.ui.common import ENV

    for template in ENV.list_templates():
        ENV.get_template(template)
    imported = [name for name in ENVIRONMENT_READERS if name in sys.modules]
    assert not imported, f"the zygote imported {imported}, which read the environment when imported"
    assert threading.active_count() == 1, "an import started a thread: a fork would copy it half-way"


def _fork(connection: socket.socket, listener: socket.socket, selector: selectors.BaseSelector) -> int:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    request = json.loads(message)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        connection.sendall(_STATUS.pack(pid))
        return pid
    # the child: it never returns into the zygote's loop
    selector.close()
    listener.close()
    connection.close()
    code = _run_child(request, fds)
    raise SystemExit(code)


def _run_child(request: dict[str, Any], fds: list[int]) -> int | str | None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if request["new_session"]:
        os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    if request["cwd"]:
        os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if os.environ.get("PYTHONUNBUFFERED"):
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]
    tempfile.tempdir = None  # the child's TMPDIR, not the zygote's
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    kind, target, args = request["kind"], request["target"], request["args"]
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    try:
        sys.argv = [target, *args]
        if kind == "module":  # as `python -m`: runpy's own entry for it, in a fresh __main__
            sys.path[0:1] = [os.getcwd(), *extra]
            warnings.filterwarnings("ignore", "'.*' found in sys.modules after import of package", RuntimeWarning)
            runpy._run_module_as_main(target)  # type: ignore[attr-defined]
        else:  # as `python script.py`: argv[0] as given, __file__ absolute, the script's folder first on sys.path
            path = os.path.abspath(target)
            sys.path[0:1] = [os.path.dirname(os.path.realpath(path)), *extra]
            main.__dict__.update(__file__=path, __builtins__=__builtins__, __spec__=None, __loader__=None)
            exec(compile(Path(path).read_bytes(), path, "exec"), main.__dict__)
    except SystemExit as stop:
        return stop.code
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


# ---------------------------------------------------------------------------------------------------- the client

_zygote: subprocess.Popen[bytes] | None = None
_socket_path = ""
_lock = threading.Lock()


def _ensure_zygote() -> str:
    global _zygote, _socket_path
    with _lock:
        if _zygote is not None and _zygote.poll() is None:
            return _socket_path
        _socket_path = os.path.join(tempfile.mkdtemp(prefix="openckpt-zygote-"), "socket")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "tests.zygote", _socket_path, str(os.getpid())]
        _zygote = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=ROOT)
        assert _zygote.stdout is not None
        if _zygote.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the zygote did not start (exit {_zygote.wait()})")
        atexit.register(_stop, _zygote)
        return _socket_path


def _stop(zygote: subprocess.Popen[bytes]) -> None:
    zygote.kill()
    zygote.wait()  # so that the CPU time of the zygote's children counts in this process's


def _route(args: Any) -> tuple[str, str, list[str]] | None:
    """``("script", path, argv)`` or ``("module", name, argv)`` for a command a child of the zygote can run: this
    interpreter with a script or ``-m openckpt…`` / ``-m tests…``, or the ``openckpt`` console script (a Python
    file)."""
    if os.environ.get("OPENCKPT_TEST_ZYGOTE") == "0":  # every command starts cold (to compare, or to rule us out)
        return None
    if not isinstance(args, (list, tuple)) or not args:
        return None
    program, rest = str(args[0]), [str(a) for a in args[1:]]
    if program == str(Path(sys.executable).with_name("openckpt")):
        return "script", program, rest
    if program != sys.executable or not rest:
        return None
    if rest[0] == "-m" and len(rest) > 1 and rest[1].startswith(("openckpt", "tests.")):
        return "module", rest[1], rest[2:]
    if rest[0].endswith(".py"):
        return "script", rest[0], rest[1:]
    return None


def _shadows(env: Any) -> bool:
    """Whether ``env``'s ``PYTHONPATH`` puts a folder before site-packages that the zygote does not have: its code
    (another openckpt, say) could differ from what the zygote imported, so such a command starts cold."""
    if env is None:
        return False
    known = {os.path.abspath(p) for p in (*sys.path, str(ROOT))}
    paths = os.fsdecode(env.get("PYTHONPATH") or env.get(b"PYTHONPATH") or "").split(os.pathsep)
    return any(p and os.path.abspath(p) not in known for p in paths)


class Popen(subprocess.Popen):  # type: ignore[type-arg]
    """``subprocess.Popen`` whose ``[sys.executable, script.py | -m openckpt… | -m tests…, …]`` commands run as
    children of the zygote; any other command starts as ``subprocess.Popen`` starts it."""

    _status: socket.socket | None = None

    def _execute_child(  # type: ignore[override]
        self,
        args: Any,
        executable: Any,
        preexec_fn: Any,
        close_fds: bool,
        pass_fds: Any,
        cwd: Any,
        env: Any,
        startupinfo: Any,
        creationflags: int,
        shell: bool,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        restore_signals: bool,
        gid: Any,
        gids: Any,
        uid: Any,
        umask: int,
        start_new_session: bool,
        process_group: Any,
    ) -> None:
        route = None if (shell or executable or preexec_fn or pass_fds or _shadows(env)) else _route(args)
        if route is None:
            super()._execute_child(  # type: ignore[misc]
                args,
                executable,
                preexec_fn,
                close_fds,
                pass_fds,
                cwd,
                env,
                startupinfo,
                creationflags,
                shell,
                p2cread,
                p2cwrite,
                c2pread,
                c2pwrite,
                errread,
                errwrite,
                restore_signals,
                gid,
                gids,
                uid,
                umask,
                start_new_session,
                process_group,
            )
            return
        kind, target, argv = route
        request = {
            "kind": kind,
            "target": target,
            "args": argv,
            "cwd": os.fspath(cwd) if cwd else os.getcwd(),
            "env": {os.fsdecode(k): os.fsdecode(v) for k, v in (os.environ if env is None else env).items()},
            "new_session": bool(start_new_session),
        }
        fds = [p2cread if p2cread != -1 else 0, c2pwrite if c2pwrite != -1 else 1, errwrite if errwrite != -1 else 2]
        status = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        status.connect(_ensure_zygote())
        try:
            socket.send_fds(status, [json.dumps(request).encode()], fds)
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)  # type: ignore[attr-defined]
        self.pid = _STATUS.unpack(_recv_exact(status, _STATUS.size))[0]
        self._status = status
        self._child_created = True

    def _internal_poll(self, _deadstate: int | None = None, **_: Any) -> int | None:  # type: ignore[override]
        if self._status is None:
            return super()._internal_poll(_deadstate)  # type: ignore[misc,no-any-return]
        if self.returncode is None and _ready(self._status, 0):
            self._read_status()
        return self.returncode

    def _wait(self, timeout: float | None) -> int:  # type: ignore[override]
        if self._status is None:
            return super()._wait(timeout)  # type: ignore[misc,no-any-return]
        if self.returncode is None:
            if not _ready(self._status, timeout):
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._read_status()
        assert self.returncode is not None
        return self.returncode

    def _read_status(self) -> None:
        assert self._status is not None
        data = _recv_exact(self._status, _STATUS.size)
        self.returncode = _STATUS.unpack(data)[0] if data else -signal.SIGKILL  # the zygote itself was killed
        self._status.close()


def _ready(sock: socket.socket, timeout: float | None) -> bool:
    with selectors.DefaultSelector() as selector:  # retries on EINTR with the time left (PEP 475)
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = sock.recv(size - len(data))
        if not part:
            return b""
        data += part
    return data


def run(*popenargs: Any, timeout: float | None = None, check: bool = False, **kwargs: Any) -> Any:
    """``subprocess.run`` with :class:`Popen`."""
    input_ = kwargs.pop("input", None)
    if input_ is not None:
        kwargs["stdin"] = subprocess.PIPE
    if kwargs.pop("capture_output", False):
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input_, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        code = process.poll()
        assert code is not None
    if check and code:
        raise subprocess.CalledProcessError(code, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, code, stdout, stderr)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C at the terminal is for pytest; its exit stops us
    _serve(sys.argv[1], int(sys.argv[2]))
