"""A local ``tritonserver`` for a repository: loopback addresses, free ports, stopped by its PID.

The server binary and its Python backend come from the ``nvidia-pytriton`` wheel, installed in a
Python environment of its own (the Makefile's ``.venv-triton``: PyTriton needs NumPy < 2, and the
Python backend runs the repository's models with that environment's Python, which also needs
``overfeat[ort]``). ``triton_env`` (or ``$OVERFEAT_TRITON_ENV``) names that environment; the
running interpreter's own is used when it has PyTriton.

Three things make the bundled server work here: ``--backend-directory`` with a ``python`` backend
whose stub matches the environment's Python version; ``LD_LIBRARY_PATH`` with that Python's
``LIBDIR`` (else the stub loads another ``libpython`` and every model fails); and the
environment's ``bin`` first on ``PATH`` (the stub's Python, and so its NumPy, is the one found
there). The server listens on 127.0.0.1 with ``--allow-metrics=false``; it runs in a session of
its own, so that :meth:`Server.stop` ends it and its backend stubs, and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from overfeat.errors import BackendError, InputError

ENV = "OVERFEAT_TRITON_ENV"
READY_SECONDS = 120.0  # the longest wait for the server and its models
STOP_SECONDS = 30.0


@dataclass(frozen=True)
class TritonInstall:
    """Where the bundled server is: its binary, its backends, and the Python environment."""

    binary: Path
    backends: Path
    stubs: Path
    env_bin: Path  # the environment's bin folder (its python3 runs the Python backend's models)


def find_triton(triton_env: str | os.PathLike[str] | None = None) -> TritonInstall:
    """The tritonserver of PyTriton in ``triton_env`` (a virtual environment's folder), in
    ``$OVERFEAT_TRITON_ENV``, or in the running interpreter's environment."""
    env = triton_env or os.environ.get(ENV)
    prefix = Path(env) if env else Path(sys.prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    root = prefix / "lib" / version / "site-packages" / "pytriton" / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        where = f"{'`triton_env` ' + str(env) if env else 'this Python environment'}"
        raise InputError(
            f"no tritonserver in {where} ({binary} is missing): make a server environment with "
            f"'make triton' (.venv-triton: nvidia-pytriton and overfeat) and pass it as `triton_env` or ${ENV}"
        )
    return TritonInstall(binary, root / "backends", root / "python_backend_stubs", prefix / "bin")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Server:
    """``tritonserver`` serving ``repository`` on ``host`` (loopback by default) until stopped.

    Use as a context manager; ``http_url`` and ``grpc_url`` are ``HOST:PORT``. ``log`` is the
    server's output file (default: ``server.log`` beside the scratch backend folder)."""

    def __init__(
        self,
        repository: str | os.PathLike[str],
        work: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        triton_env: str | os.PathLike[str] | None = None,
    ) -> None:
        self.repository, self.work, self.host = Path(repository), Path(work), host
        for name, port in (("http_port", http_port), ("grpc_port", grpc_port)):
            if port is not None and not 1024 <= port <= 65535:
                raise InputError(f"`{name}` {port}: expected 1024 to 65535")
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        if grpc_port is not None and grpc_port == http_port:
            raise InputError(f"`http_port` and `grpc_port` are both {http_port}: give two ports")
        while self.grpc_port == self.http_port:  # two free ports asked for apart can be the same
            if grpc_port is None:
                self.grpc_port = free_port(host)
            else:
                self.http_port = free_port(host)
        self.install = find_triton(triton_env)
        self.log = self.work / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def _backends(self) -> Path:
        """A backend folder with the bundled Python backend and the stub of this Python version."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.install.stubs / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise BackendError(f"the bundled Python backend has no stub for Python {version} ({stub} is missing)")
        folder = self.work / "backends" / "python"
        folder.mkdir(parents=True, exist_ok=True)
        for source in (*sorted((self.install.backends / "python").iterdir()), stub):
            link = folder / source.name
            if not link.exists():
                link.symlink_to(source)
        return folder.parent

    def start(self) -> Server:
        backends = self._backends()
        env = dict(os.environ)
        env["PATH"] = f"{self.install.env_bin}{os.pathsep}{env.get('PATH', '')}"
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        command = [
            str(self.install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:  # not ready, or interrupted while waiting: nothing may stay behind
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        url = f"http://{self.http_url}/v2/health/ready"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through $http_proxy
        while time.monotonic() < deadline:
            if not self.alive():
                raise BackendError(f"tritonserver ended before it was ready:\n{self.tail()}")
            try:
                with opener.open(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise BackendError(f"tritonserver was not ready within {READY_SECONDS:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [line for line in text if line.startswith("E") or "error" in line.lower()]
        return "\n".join((errors or text)[-lines:])

    def alive(self) -> bool:
        """Whether the server runs; an ended server is not reaped here, so that its process ID,
        and with it its session's, stays ours until :meth:`stop`."""
        if self.process is None or self.process.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def stop(self) -> None:
        """SIGINT to the server's session (the server and its stubs); whatever is left after
        STOP_SECONDS, or when this wait is itself interrupted, is killed. The server is reaped
        last, so the session ID cannot have passed to another process when it is signalled."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGINT)
                deadline = time.monotonic() + STOP_SECONDS
                while (
                    time.monotonic() < deadline and os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
                ):
                    time.sleep(0.1)
        except (ProcessLookupError, ChildProcessError):
            pass
        finally:
            if process.returncode is None:  # not reaped yet: its session is still ours to end
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
