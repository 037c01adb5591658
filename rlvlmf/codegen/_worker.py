"""Sandbox worker: runs generated reward code in its own locked-down interpreter.

``rlvlmf.codegen.sandbox`` starts this file as ``python -I -S _worker.py NUMPY_ROOT LIMITS_JSON``
in an empty temp directory with a minimal environment. It must only use the standard library
and numpy, so it never imports rlvlmf; ``rlvlmf.codegen.sandbox`` imports ``check_source``
from here so the parent and the child apply one policy.

Layers, outermost first (each alone should stop an escape; together they are the sandbox):
1. A separate process: a crash, a hang or a leak never touches the training process, and the
   parent kills it when a call overruns its wall-clock limit.
2. Resource limits: address space (memory), CPU seconds per call, file size, no core dumps;
   root drops to ``nobody`` so the OS refuses writes outside the temp dir.
3. The source is checked before it runs: imports of anything but numpy and math, names and
   attributes that lead to introspection (``__class__``, ``__subclasses__``, ``f_globals``,
   ``getattr``...) and numpy's file I/O are refused.
4. The code runs with a reduced ``__builtins__`` (no open, exec, eval, compile, getattr,
   input, breakpoint...) and an ``__import__`` that only hands out numpy and math.
5. An audit hook (PEP 578) refuses sockets, subprocesses, exec/fork/kill, ctypes, mmap,
   pickle globals, file writes outside the temp dir, reads outside numpy and the temp dir,
   and loading any new module other than numpy's own. A violation rejects the function even
   if the code catches the PermissionError.

Wire format on the inherited pipes: a 4-byte big-endian length, a JSON header, then
``header["nbytes"]`` raw bytes (a C-contiguous array of ``header["dtype"]`` and
``header["shape"]``).
"""

from __future__ import annotations

import ast
import json
import math
import os
import resource
import string
import struct
import sys
from collections.abc import Callable
from typing import Any

ALLOWED_MODULES = frozenset({"numpy", "math"})
"""Top-level modules generated code may import."""

FORBIDDEN_NUMPY_PARTS = frozenset({"lib", "ctypeslib", "f2py", "testing", "distutils", "core", "ctypes"})
"""numpy submodules/attributes that reach files, C pointers or subprocesses."""

FORBIDDEN_NAMES = frozenset(
    {
        "getattr", "setattr", "delattr", "globals", "locals", "vars", "eval", "exec", "compile",
        "open", "input", "breakpoint", "help", "memoryview", "object", "type", "super", "dir",
        "exit", "quit", "classmethod", "staticmethod", "property",
    }
)  # fmt: skip
"""Builtins that read or change attributes by string, run code, or touch files."""

FORBIDDEN_ATTRIBUTES = frozenset(
    {
        # frames, generators, coroutines, tracebacks and code objects lead to real globals
        "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_trace",
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await",
        "ag_frame", "ag_code", "ag_await", "tb_frame", "tb_next",
        "co_code", "co_consts", "co_names", "func_globals", "mro", "format_map",
        # modules numpy and math keep as attributes
        "os", "sys", "subprocess", "builtins", "pickle", "ctypes", "socket", "importlib",
        "shutil", "posix", "io", "pathlib", "threading", "signal", "resource", "mmap", "gc",
        "inspect", "types", "weakref", "marshal", "warnings", "functools", "operator",
        # numpy file I/O
        "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt",
        "genfromtxt", "fromfile", "tofile", "memmap", "fromregex", "DataSource", "dump", "dumps",
        # non-numpy modules reachable through numpy's public attributes (numpy 2.x), e.g.
        # np.random.bit_generator.re.enum.bltns is the builtins module
        "bltns", "re", "enum", "copyreg", "abc", "collections", "itertools", "numbers",
        "textwrap", "bit_generator", "overrides",
    }
) | FORBIDDEN_NUMPY_PARTS | FORBIDDEN_NAMES  # fmt: skip
"""Attribute names refused anywhere in the code (besides every name starting with ``_``).

A denylist can miss a path a new numpy version adds: tests/test_sandbox.py walks numpy's
public attributes to catch that, and the audit hook and limits stand behind it anyway."""

FORBIDDEN_NODES: dict[type, str] = {
    ast.ClassDef: "class definitions",
    ast.AsyncFunctionDef: "async functions",
    ast.Await: "await",
    ast.Yield: "generators (yield)",
    ast.YieldFrom: "generators (yield from)",
    ast.Global: "global statements",
    ast.Nonlocal: "nonlocal statements",
    ast.Match: "match statements",
    ast.AsyncFor: "async for",
    ast.AsyncWith: "async with",
}

SAFE_BUILTINS = (
    "abs", "all", "any", "bin", "bool", "callable", "chr", "complex", "dict", "divmod",
    "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "int", "isinstance",
    "issubclass", "iter", "len", "list", "map", "max", "min", "next", "oct", "ord", "pow",
    "print", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum",
    "tuple", "zip", "ArithmeticError", "AssertionError", "Exception", "FloatingPointError",
    "IndexError", "KeyError", "LookupError", "NotImplementedError", "OverflowError",
    "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
)  # fmt: skip

BLOCKED_EVENT_PREFIXES = (
    "socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.kill",
    "os.system", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
    "os.link", "os.symlink", "os.truncate", "os.utime", "os.chdir", "os.chflags", "os.putenv",
    "os.unsetenv", "os.setxattr", "os.removexattr", "os.listdir", "os.scandir", "os.walk",
    "os.startfile", "ctypes.", "mmap.", "shutil.", "resource.", "sys._getframe",
    "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "sys.setrecursionlimit", "code.__new__", "function.__new__", "marshal.", "pickle.",
    "builtins.input", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "imaplib.",
    "poplib.", "telnetlib.", "glob.", "fcntl.", "signal.", "sqlite3.", "cpython.",
    "object.__getattr__", "object.__setattr__", "object.__delattr__", "gc.", "pty.",
)  # fmt: skip
"""Audit events refused once generated code may run."""


def check_source(code: str) -> str | None:
    """First policy violation in ``code``, or ``None`` when it may be run.

    Returns reasons such as ``"forbidden import os"``, ``"forbidden attribute __class__"``,
    ``"forbidden name getattr"`` or ``"syntax error: ..."``.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    for node in ast.walk(tree):
        reason = _check_node(node)
        if reason:
            return reason
    return None


def _check_node(node: ast.AST) -> str | None:
    """The policy violation of one syntax node, or ``None``."""
    for kind, what in FORBIDDEN_NODES.items():
        if isinstance(node, kind):
            return f"{what} are not allowed (line {getattr(node, 'lineno', '?')})"
    if isinstance(node, ast.Import):
        for alias in node.names:
            reason = _check_module(alias.name)
            if reason:
                return reason
    elif isinstance(node, ast.ImportFrom):
        return _check_import_from(node)
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_") or node.attr in FORBIDDEN_ATTRIBUTES:
            return f"forbidden attribute {node.attr} (line {node.lineno})"
        if node.attr in ("format", "format_map"):
            return _check_format(node)
    elif isinstance(node, ast.Name):
        if node.id.startswith("__") or node.id in FORBIDDEN_NAMES:
            return f"forbidden name {node.id} (line {node.lineno})"
    return None


def _check_import_from(node: ast.ImportFrom) -> str | None:
    if node.level or not node.module:
        return "forbidden relative import"
    reason = _check_module(node.module)
    if reason:
        return reason
    for alias in node.names:
        if alias.name == "*":
            return f"forbidden star import from {node.module}"
        if alias.name.startswith("_") or alias.name in FORBIDDEN_ATTRIBUTES:
            return f"forbidden import {node.module}.{alias.name}"
    return None


def _check_format(node: ast.Attribute) -> str | None:
    """``str.format`` walks attributes and indexes of its arguments by name, unseen by the
    attribute check: ``'{0._core.records.os.environ}'.format(np)`` reads the environment.
    Only a literal template is allowed, and only with plain fields (``{0}``, ``{x:.2f}``)."""
    if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
        return f"{node.attr} only on a literal template string (line {node.lineno})"
    return _check_template(node.value.value, node.lineno)


def _check_template(template: str, lineno: int) -> str | None:
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"malformed format string (line {lineno}): {exc}"
    for _, name, spec, _ in fields:
        if name and ("." in name or "[" in name):
            return f"format field {{{name}}} reaches into an argument (line {lineno}); format the value itself"
        if spec and "{" in spec:  # a nested field, as in '{0:{1}}'
            reason = _check_template(spec, lineno)
            if reason:
                return reason
    return None


def _check_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] not in ALLOWED_MODULES:
        return f"forbidden import {name}"
    if any(p.startswith("_") or p in FORBIDDEN_NUMPY_PARTS for p in parts[1:]):
        return f"forbidden import {name}"
    return None


# ----------------------------------------------------------------------------- wire format


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("parent closed the pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(fd: int) -> tuple[dict, bytes]:
    (size,) = struct.unpack(">I", _read_exact(fd, 4))
    header = json.loads(_read_exact(fd, size))
    return header, _read_exact(fd, header.get("nbytes", 0))


def _send(fd: int, header: dict, payload: bytes = b"") -> None:
    header = dict(header, nbytes=len(payload))
    raw = json.dumps(header).encode()
    data = struct.pack(">I", len(raw)) + raw + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ----------------------------------------------------------------------------- the child


def _limit_reason(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(numpy_root: str, limits: dict) -> None:  # noqa: C901 - one linear set-up sequence
    """Lock the process down, then serve load/call requests until the pipe closes."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    memory = int(limits["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    fsize = int(limits["file_size_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    # Soft CPU limit is re-armed before every call; the hard one stays open so we can.
    resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    # Private copies of the pipes; fds 0 and 1 point to /dev/null so stray prints are harmless.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    sys.stdin = None

    sys.path.append(numpy_root)
    import numpy as np  # noqa: PLC0415 - only after the limits are set
    import numpy.fft  # noqa: F401, PLC0415 - pre-load: no module loads once the hook is on
    import numpy.linalg  # noqa: F401, PLC0415
    import numpy.polynomial  # noqa: F401, PLC0415
    import numpy.random  # noqa: F401, PLC0415

    workdir = os.path.realpath(os.getcwd())
    numpy_dir = os.path.realpath(os.path.dirname(np.__file__))
    cpu_per_call = int(math.ceil(float(limits["timeout_s"]))) + 1

    if limits.get("drop_privileges") and os.geteuid() == 0:
        nobody = 65534
        os.setgroups([])
        os.setgid(nobody)
        os.setuid(nobody)

    violations: list[str] = []
    # True only while the worker itself (not generated code) acts, e.g. re-arming the CPU limit.
    trusted = [False]

    def inside(path: object, root: str) -> bool:
        if not isinstance(path, (str, bytes)):
            return False
        path = os.fsdecode(path)
        full = os.path.realpath(os.path.join(workdir, path))
        return full == root or full.startswith(root + os.sep)

    def hook(event: str, args: tuple) -> None:
        if trusted[0]:
            return
        if event.startswith(BLOCKED_EVENT_PREFIXES):
            violations.append(event)
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
            )
            allowed = inside(path, workdir) or (not writes and inside(path, numpy_dir))
            if not allowed:
                what = "write" if writes else "read"
                violations.append(f"open for {what} {path!r}")
                raise PermissionError(f"sandbox: {what} of {path!r} is not allowed")
        elif event == "import":
            name = str(args[0])
            parts = name.split(".")
            if parts[0] != "numpy" or any(p in FORBIDDEN_NUMPY_PARTS for p in parts[1:]):
                violations.append(f"import {name}")
                raise PermissionError(f"sandbox: importing {name} is not allowed")

    real_import = __import__

    # numpy's C code imports its private helpers through the *calling* frame's __import__,
    # so this layer admits all of numpy; the source check keeps the code's own imports public.
    def restricted_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level or name.split(".")[0] not in ALLOWED_MODULES:
            raise ImportError(f"sandbox: import of {name} is not allowed")
        return real_import(name, globals, locals, fromlist, level)

    import builtins  # noqa: PLC0415

    safe = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    safe["__import__"] = restricted_import
    namespace: dict = {"__builtins__": safe, "__name__": "reward_code"}
    functions: dict = {}

    def load_code(source: str) -> None:
        exec(compile(source, "<reward_code>", "exec"), namespace)  # noqa: S102

    def call_function(name: str, obs: np.ndarray) -> np.ndarray:
        return np.asarray(functions[name](obs))

    def run_foreign(call: Callable[..., Any], *args: Any, during: str = "") -> tuple[Any, str | None]:
        """Run generated code: its result, or why it is rejected (its failure, or a forbidden operation it tried)."""
        result, reason = None, None
        try:
            result = call(*args)
        except MemoryError as exc:
            reason = f"memory limit ({type(exc).__name__}: {exc})"
        except BaseException as exc:  # noqa: BLE001 - any failure of foreign code is a rejection
            reason = f"raised {type(exc).__name__}{during}: {exc}"
        if violations:
            reason = f"forbidden operation {violations[0]}"
        return result, reason

    sys.addaudithook(hook)
    _send(proto_out, {"ok": True, "ready": True})

    while True:
        try:
            header, payload = _recv(proto_in)
        except EOFError:
            return
        violations.clear()
        if header["op"] == "load":
            reason = check_source(header["code"]) if limits.get("source_check", True) else None
            if reason is None:
                _, reason = run_foreign(load_code, header["code"], during=" while loading")
            if reason is None:
                for name in header["names"]:
                    fn = namespace.get(name)
                    if type(fn).__name__ != "function":
                        reason = f"function {name} is not defined"
                        break
                    functions[name] = fn
            _send(proto_out, {"ok": reason is None, "reason": _limit_reason(reason or "")})
            continue

        # op == "call"
        obs = np.frombuffer(bytearray(payload), dtype=header["dtype"]).reshape(header["shape"])
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(math.ceil(used.ru_utime + used.ru_stime)) + cpu_per_call
        trusted[0] = True
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        trusted[0] = False
        result, reason = run_foreign(call_function, header["name"], obs)
        if reason is None:
            assert result is not None  # the call returned: every failure above sets a reason
            n = obs.shape[0]
            if result.dtype.kind not in "biuf":
                reason = f"returned dtype {result.dtype}, expected bool or float"
            elif result.shape != (n,):
                reason = f"returned shape {result.shape}, expected ({n},)"
            elif not np.all(np.isfinite(result)):
                reason = "returned NaN or infinity"
        if reason is not None:
            _send(proto_out, {"ok": False, "reason": _limit_reason(reason)})
        else:
            out = np.ascontiguousarray(result, dtype=np.float64)
            _send(proto_out, {"ok": True, "shape": list(out.shape), "dtype": "float64"}, out.tobytes())


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
