"""Run generated reward code in a separate, locked-down process.

Generated code never runs in the training process. ``Sandbox`` starts a worker interpreter
(``python -I -S rlvlmf/codegen/_worker.py``) in an empty temp dir with a minimal environment
(no API keys), loads the code there once, and sends it observation batches over pipes. The
worker stays alive across calls; when a call overruns its time limit the worker is killed
and the next call starts a fresh one. How the worker locks itself down is documented in
``rlvlmf/codegen/_worker.py``.

Example:
    >>> with Sandbox(code, ["goal"], SandboxLimits(timeout_s=1.0)) as box:
    ...     fired = box.call("goal", obs)  # (N,) float64
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from rlvlmf.codegen._worker import check_source
from rlvlmf.errors import ConfigError

WORKER = Path(__file__).with_name("_worker.py")
_MAX_HEADER = 1 << 20  # bytes; real headers are < 1 kB

_DEATH_REASONS = {
    signal.SIGXCPU: "CPU time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGKILL: "killed (out of memory?)",
    signal.SIGSEGV: "crashed (SIGSEGV)",
    signal.SIGABRT: "crashed (SIGABRT)",
}


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of the worker process that runs generated code.

    Attributes:
        timeout_s: Wall-clock limit of one call (and of loading the code); the worker is
            killed when it is exceeded. CPU time per call is capped at ``ceil(timeout_s) + 1``.
        memory_mb: Address-space limit of the worker (RLIMIT_AS), numpy included (~150 MB).
        file_size_mb: Largest file the worker may write (inside its temp dir only).
        startup_timeout_s: Time to start the interpreter and import numpy.
        drop_privileges: When run as root, switch the worker to ``nobody`` after set-up so
            the OS too refuses writes outside its temp dir.
        source_check: Refuse code whose source breaks the policy before running it. Turn
            off only to test that the inner layers (builtins, audit hook, limits) hold alone.
    """

    timeout_s: float = 1.0
    memory_mb: int = 1024
    file_size_mb: int = 16
    startup_timeout_s: float = 30.0
    drop_privileges: bool = True
    source_check: bool = True

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"sandbox timeout_s must be > 0, got {self.timeout_s}")
        if self.memory_mb < 256:
            raise ConfigError(f"sandbox memory_mb must be >= 256 (numpy alone needs ~150 MB), got {self.memory_mb}")
        if self.file_size_mb < 0:
            raise ConfigError(f"sandbox file_size_mb must be >= 0, got {self.file_size_mb}")
        if not self.startup_timeout_s > 0:
            raise ConfigError(f"sandbox startup_timeout_s must be > 0, got {self.startup_timeout_s}")


class SandboxRejected(Exception):
    """Generated code broke a rule or a limit, or raised.

    Attributes:
        reason: Short, storable explanation, e.g. ``"timeout after 1 s"``,
            ``"forbidden import os"``, ``"raised ZeroDivisionError: division by zero"``.
        function: The function being called, or ``None`` when loading failed.
    """

    def __init__(self, reason: str, function: str | None = None) -> None:
        super().__init__(f"{function}: {reason}" if function else reason)
        self.reason = reason
        self.function = function


class _WorkerGone(Exception):
    """The worker died or overran its deadline; carries the reason."""


class Sandbox:
    """Generated functions behind a process boundary.

    Args:
        code: Python source defining the functions; checked before it is run.
        function_names: Functions the code must define; only these can be called.
        limits: Time, memory and file limits of the worker.

    Raises:
        SandboxRejected: From ``start``/``__enter__`` when the code breaks the policy or
            fails to load; from ``call`` when a call breaks a limit or raises.
    """

    def __init__(self, code: str, function_names: Sequence[str], limits: SandboxLimits | None = None) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        if not function_names:
            raise ConfigError("a Sandbox needs at least one function name")
        self.code = code
        self.function_names = tuple(function_names)
        self.limits = limits or SandboxLimits()
        self.starts = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Check the code, start a worker and load the code into it (no-op when running)."""
        if self._proc is not None:
            return
        reason = check_source(self.code) if self.limits.source_check else None
        if reason is not None:
            raise SandboxRejected(reason)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="rlvlmf-sandbox-"))
            if self.limits.drop_privileges and os.geteuid() == 0:
                os.chown(self.workdir, 65534, 65534)
        self.starts += 1
        numpy_root = str(Path(np.__file__).resolve().parent.parent)
        with open(self.workdir / "worker.log", "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(WORKER), numpy_root, json.dumps(asdict(self.limits))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.workdir,
                env=_worker_env(self.workdir),
                start_new_session=True,
                bufsize=0,
            )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.set_blocking(self._proc.stdin.fileno(), False)
        try:
            self._receive(self.limits.startup_timeout_s, "start-up")
            header, _ = self._request({"op": "load", "code": self.code, "names": list(self.function_names)})
        except _WorkerGone as exc:
            self._kill()
            raise SandboxRejected(f"{exc} while loading") from None
        if not header["ok"]:
            self._kill()
            raise SandboxRejected(header["reason"])

    def close(self) -> None:
        """Stop the worker and delete its temp dir. Safe to call twice."""
        self._kill()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown; nothing left to report to
            pass

    # ------------------------------------------------------------------ calls

    def call(self, name: str, obs: np.ndarray) -> np.ndarray:
        """Evaluate one generated function on a batch of observations.

        Args:
            name: One of ``function_names``.
            obs: ``(N, obs_dim)`` observations (sent as float64).

        Returns:
            ``(N,)`` float64 values (booleans become 0.0 / 1.0).

        Raises:
            SandboxRejected: The call timed out, ran out of memory or CPU, did something
                forbidden, raised, or returned the wrong shape, dtype or a non-finite value.
        """
        if name not in self.function_names:
            raise ConfigError(f"unknown sandbox function {name!r}; loaded: {', '.join(self.function_names)}")
        obs = np.ascontiguousarray(obs, dtype=np.float64)
        if obs.ndim != 2:
            raise ValueError(f"obs must have shape (N, obs_dim), got {obs.shape}")
        self.start()
        request = {"op": "call", "name": name, "shape": list(obs.shape), "dtype": "float64"}
        n = obs.shape[0]
        try:
            header, payload = self._request(request, obs.tobytes(), max_reply=8 * n)
            if header["ok"] and (header.get("shape") != [n] or len(payload) != 8 * n):
                raise _WorkerGone("worker broke the protocol (bad reply shape)")
        except _WorkerGone as exc:
            self._kill()
            raise SandboxRejected(str(exc), name) from None
        if not header["ok"]:
            raise SandboxRejected(header["reason"], name)
        return np.frombuffer(payload, dtype=np.float64).copy()

    def call_all(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Every loaded function on the same batch: ``{name: (N,) values}``, in load order."""
        return {name: self.call(name, obs) for name in self.function_names}

    # ------------------------------------------------------------------ pipes

    def _request(self, header: dict, payload: bytes = b"", max_reply: int = 0) -> tuple[dict, bytes]:
        deadline = time.monotonic() + self.limits.timeout_s
        raw = json.dumps(dict(header, nbytes=len(payload))).encode()
        self._send(struct.pack(">I", len(raw)) + raw + payload, deadline)
        return self._receive_until(deadline, max_reply)

    def _receive(self, timeout_s: float, what: str) -> tuple[dict, bytes]:
        try:
            return self._receive_until(time.monotonic() + timeout_s)
        except _WorkerGone as exc:
            raise _WorkerGone(f"{exc} during {what}") from None

    def _receive_until(self, deadline: float, max_payload: int = 0) -> tuple[dict, bytes]:
        # The worker runs foreign code: a reply that breaks the wire format ends it, it is
        # never trusted with a big allocation or a crash here.
        (size,) = struct.unpack(">I", self._read(4, deadline))
        if size > _MAX_HEADER:
            raise _WorkerGone("worker broke the protocol (header too large)")
        try:
            header = json.loads(self._read(size, deadline))
            nbytes = int(header.get("nbytes", 0))
            ok = isinstance(header["ok"], bool) and (header["ok"] or isinstance(header["reason"], str))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _WorkerGone("worker broke the protocol (bad header)") from None
        if not ok or not 0 <= nbytes <= max_payload:
            raise _WorkerGone("worker broke the protocol (bad header)")
        return header, self._read(nbytes, deadline)

    def _send(self, data: bytes, deadline: float) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise _WorkerGone(self._timeout_reason())
            try:
                view = view[os.write(fd, view) :]
            except BrokenPipeError:
                raise _WorkerGone(self._death_reason()) from None

    def _read(self, n: int, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        chunks: list[bytes] = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise _WorkerGone(self._timeout_reason())
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise _WorkerGone(self._death_reason())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _timeout_reason(self) -> str:
        return f"timeout after {self.limits.timeout_s:g} s"

    def _death_reason(self) -> str:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "worker closed its pipe"
        if code < 0:
            sig = signal.Signals(-code)
            return f"worker {_DEATH_REASONS.get(sig, f'killed by {sig.name}')}"
        return f"worker exited with status {code}{self._log_tail()}"

    def _log_tail(self) -> str:
        if self.workdir is None:
            return ""
        try:
            lines = (self.workdir / "worker.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1][:300]}" if lines else ""

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _worker_env(workdir: Path) -> dict[str, str]:
    """A minimal environment: no API keys, single-threaded BLAS, home in the temp dir."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
