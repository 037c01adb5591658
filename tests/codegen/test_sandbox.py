"""The sandbox runs good code, rejects bad code with a reason, and lets nothing escape.

Two groups of hostile code: the first is stopped by the source check before a worker even
starts; the second turns the source check off (``source_check=False``) to show that the inner
layers — restricted builtins and imports, the audit hook, resource limits, the minimal
environment — hold on their own. Every escape test checks its side effect did not happen.
"""

from __future__ import annotations

import _socket
import os
import socket
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.codegen._worker import check_source
from rlvlmf.codegen.sandbox import Sandbox, SandboxLimits, SandboxRejected
from rlvlmf.errors import ConfigError

LIMITS = SandboxLimits(timeout_s=5.0, memory_mb=512)
OPEN = SandboxLimits(timeout_s=5.0, memory_mb=512, source_check=False)

GOOD = """
import math
import numpy as np

def near(obs: np.ndarray) -> np.ndarray:
    return np.linalg.norm(obs[:, :3] - obs[:, 3:6], axis=1) < 1.0

def closeness(obs: np.ndarray) -> np.ndarray:
    return np.exp(-np.abs(obs[:, 0])) * math.cos(0.0)
"""


def in_process(code: str, name: str, obs: np.ndarray) -> np.ndarray:
    """Run trusted test code here, to compare against the sandbox's answer."""
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - trusted test code
    return np.asarray(namespace[name](obs), dtype=np.float64)


def test_good_code_gives_same_values_as_in_process(rng: np.random.Generator) -> None:
    obs = rng.normal(size=(200, 9))
    with Sandbox(GOOD, ["near", "closeness"], LIMITS) as box:
        near = box.call("near", obs)
        values = box.call_all(obs)
    assert near.dtype == np.float64 and near.shape == (200,)
    assert set(np.unique(near)) <= {0.0, 1.0} and 0 < near.sum() < 200
    np.testing.assert_array_equal(near, in_process(GOOD, "near", obs))
    np.testing.assert_allclose(values["closeness"], in_process(GOOD, "closeness", obs))


def test_worker_survives_calls_and_restarts_after_timeout(rng: np.random.Generator) -> None:
    code = GOOD + "\ndef spin(obs):\n    while True:\n        pass\n"
    obs = rng.normal(size=(10, 6))
    with Sandbox(code, ["near", "spin"], SandboxLimits(timeout_s=0.5)) as box:
        for _ in range(20):
            box.call("near", obs)
        assert box.starts == 1
        with pytest.raises(SandboxRejected, match=r"timeout after 0\.5 s") as info:
            box.call("spin", obs)
        assert info.value.function == "spin"
        np.testing.assert_array_equal(box.call("near", obs), in_process(code, "near", obs))
        assert box.starts == 2


def test_temp_dir_is_removed_on_close() -> None:
    box = Sandbox(GOOD, ["near"], LIMITS)
    with box:
        workdir = box.workdir
        assert workdir is not None and workdir.is_dir()
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("import os", "forbidden import os"),
        ("import subprocess", "forbidden import subprocess"),
        ("from os import system", "forbidden import os"),
        ("import socket", "forbidden import socket"),
        ("import numpy.ctypeslib", "forbidden import numpy.ctypeslib"),
        ("from numpy import save", "forbidden import numpy.save"),
        ("x = __import__('os')", "forbidden name __import__"),
        ("x = ().__class__.__base__.__subclasses__()", "forbidden attribute __subclasses__"),
        ("x = __builtins__", "forbidden name __builtins__"),
        ("x = getattr(np, 'save')", "forbidden name getattr"),
        ("x = open('/tmp/x', 'w')", "forbidden name open"),
        ("x = eval('1')", "forbidden name eval"),
        ("np.save('/tmp/x.npy', np.zeros(1))", "forbidden attribute save"),
        ("np.zeros(1).tofile('/tmp/x')", "forbidden attribute tofile"),
        ("x = np.lib.npyio", "forbidden attribute lib"),
        ("x = (i for i in []).gi_frame.f_back", "forbidden attribute"),
        # str.format walks attributes and indexes by name, out of the attribute check's sight.
        ("x = '{0._core.records.os.environ}'.format(np)", "format field {0._core.records.os.environ} reaches"),
        ("x = '{0.lib}'.format(np)", "format field {0.lib} reaches into an argument"),
        ("x = '{m[0]}'.format(m=[np])", "reaches into an argument"),
        ("x = '{0:{1.dtype}}'.format(1, np.zeros(1))", "format field {1.dtype} reaches"),
        ("t = '{0.x}'\nx = t.format(np)", "format only on a literal template string"),
        ("x = str.format('{0._core}', np)", "format only on a literal template string"),
        ("f = '{0'.format", "malformed format string"),
        ("class A:\n    pass", "class definitions are not allowed"),
        ("def f(:", "syntax error"),
    ],
)
def test_source_check_rejects_before_running(body: str, reason: str) -> None:
    code = "import numpy as np\n" + body + "\ndef goal(obs):\n    return obs[:, 0] > 0\n"
    assert reason in (check_source(code) or "")
    box = Sandbox(code, ["goal"], LIMITS)
    with pytest.raises(SandboxRejected, match=reason.split("(")[0][:25]):
        box.start()
    assert box.starts == 0  # no worker was ever started


def test_source_check_accepts_ordinary_numpy_code() -> None:
    assert check_source(GOOD) is None
    assert check_source("import numpy.linalg as la\nfrom math import pi\nx = [i for i in range(3)]") is None
    assert check_source("x = '{0} {name:.2f} {0:>{1}}'.format(1, 5, name=2.0) + f'{np.pi:.3f}'") is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("return obs[:, 0] / 0 if False else 1 // int(obs[0, 0] * 0)", "raised ZeroDivisionError"),
        ("raise ValueError('bad observation')", "raised ValueError: bad observation"),
        ("return np.ones((10**6, 10**5))", "memory limit"),
        ("return 'x' * (10**10)", "memory limit"),
        ("return obs", "returned shape (4, 3), expected (4,)"),
        ("return obs[:, 0] * np.nan", "returned NaN"),
        ("return np.array(['a'] * len(obs))", "returned dtype <U1"),
        ("def g(n):\n        return g(n + 1)\n    return g(0)", "raised RecursionError"),
    ],
)
def test_call_failures_are_rejected_with_reason(body: str, reason: str) -> None:
    code = f"import numpy as np\ndef goal(obs):\n    {body}\n"
    with Sandbox(code, ["goal"], LIMITS) as box:
        with pytest.raises(SandboxRejected) as info:
            box.call("goal", np.ones((4, 3)))
        assert reason in info.value.reason
        # A rejected call leaves the worker usable.
        assert box.starts == 1


def test_load_failures_are_rejected() -> None:
    with pytest.raises(SandboxRejected, match="function goal is not defined"):
        Sandbox("import numpy as np\ndef other(obs):\n    return obs[:, 0]\n", ["goal"], LIMITS).start()
    with pytest.raises(SandboxRejected, match="raised NameError while loading"):
        Sandbox("x = undefined_name\n", ["goal"], LIMITS).start()
    with pytest.raises(SandboxRejected, match=r"timeout after 0\.5 s while loading"):
        Sandbox("while True:\n    pass\n", ["goal"], SandboxLimits(timeout_s=0.5)).start()


def test_print_does_not_corrupt_the_pipe() -> None:
    code = "import numpy as np\ndef goal(obs):\n    print('x' * 200000)\n    return obs[:, 0]\n"
    with Sandbox(code, ["goal"], LIMITS) as box:
        np.testing.assert_array_equal(box.call("goal", np.arange(6.0).reshape(3, 2)), [0.0, 2.0, 4.0])


def test_unknown_function_and_bad_shapes_are_user_errors() -> None:
    with Sandbox(GOOD, ["near"], LIMITS) as box:
        with pytest.raises(ConfigError, match="unknown sandbox function"):
            box.call("closeness", np.zeros((1, 6)))
        with pytest.raises(ValueError, match="obs_dim"):
            box.call("near", np.zeros(6))
    with pytest.raises(ConfigError):
        SandboxLimits(timeout_s=0)


# ----------------------------------------------------------------------------- inner layers

# Walks every class to reach os's globals or the import machinery, as an attacker would.
WALK = """
import numpy as np

def all_classes():
    seen, todo = [], [().__class__.__base__]
    while todo:
        c = todo.pop()
        seen.append(c)
        try:
            todo.extend(c.__subclasses__())
        except TypeError:
            todo.extend(c.__subclasses__(c))
    return seen

def os_globals():
    return [c for c in all_classes() if c.__name__ == "_wrap_close"][0].__init__.__globals__
"""


def hostile(body: str) -> str:
    return WALK + "\ndef goal(obs):\n" + textwrap.indent(textwrap.dedent(body), "    ") + "\n    return obs[:, 0]\n"


def test_inner_layers_block_file_writes(tmp_path: Path) -> None:
    targets = [tmp_path / name for name in ("np_save.npy", "system.txt", "os_open.txt")]
    cases = {
        f"np.save({str(targets[0])!r}, obs)": "forbidden operation open for write",
        f"os_globals()['system']('touch {targets[1]}')": "forbidden operation os.system",
        f"g = os_globals()\ng['open']({str(targets[2])!r}, g['O_WRONLY'] | g['O_CREAT'])": "open for write",
    }
    for body, reason in cases.items():
        with Sandbox(hostile(body), ["goal"], OPEN) as box:
            with pytest.raises(SandboxRejected, match=reason):
                box.call("goal", np.ones((2, 2)))
    assert not any(t.exists() for t in targets)
    assert list(tmp_path.iterdir()) == []


def test_inner_layers_allow_writes_only_inside_temp_dir() -> None:
    with Sandbox(hostile("np.save('scratch.npy', obs)"), ["goal"], OPEN) as box:
        box.call("goal", np.ones((2, 2)))
        assert box.workdir is not None and (box.workdir / "scratch.npy").exists()


def test_inner_layers_block_network() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    so = _socket.__file__
    attempts = {
        # Load the socket extension by hand, past the import statement and __import__.
        f"""
        loader = [c for c in all_classes() if c.__name__ == "ExtensionFileLoader"][0]
        spec = [c for c in all_classes() if c.__name__ == "ModuleSpec"][0]
        ld = loader("_socket", {so!r})
        mod = ld.create_module(spec("_socket", ld, origin={so!r}))
        mod.socket().connect(("127.0.0.1", {port}))
        """: "forbidden operation",
        f"os_globals()['system']('python3 -c \"import socket; socket.create_connection((\\'127.0.0.1\\', {port}))\"')": (
            "forbidden operation os.system"
        ),
        f"np.lib.npyio.DataSource().open('http://127.0.0.1:{port}/reward')": "forbidden operation import",
    }
    try:
        for body, reason in attempts.items():
            with Sandbox(hostile(body), ["goal"], OPEN) as box:
                with pytest.raises(SandboxRejected, match=reason):
                    box.call("goal", np.ones((2, 2)))
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
    finally:
        server.close()
    with pytest.raises(SandboxRejected, match="import of socket is not allowed"):
        Sandbox("import socket\n", ["goal"], OPEN).start()


def test_inner_layers_block_frame_walks_and_builtins() -> None:
    cases = {
        "e = None\ntry:\n    1 / 0\nexcept Exception as exc:\n    e = exc\ne.__traceback__.tb_frame.f_back.f_globals": (
            "forbidden operation object.__getattr__"
        ),
        "__builtins__['open']": "raised KeyError: 'open'",
        "os_globals()['fork']()": "forbidden operation os.fork",
        "os_globals()['kill'](1, 9)": "forbidden operation os.kill",
    }
    for body, reason in cases.items():
        with Sandbox(hostile(body), ["goal"], OPEN) as box:
            with pytest.raises(SandboxRejected, match=reason):
                box.call("goal", np.ones((2, 2)))


def test_worker_sees_no_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    code = WALK + (
        "\ndef goal(obs):\n"
        "    env = os_globals()['environ']\n"
        "    return np.full(len(obs), float(len(env.get('OPENAI_API_KEY', '')) + 1000 * ('PATH' in env)))\n"
    )
    assert os.environ["OPENAI_API_KEY"]
    with Sandbox(code, ["goal"], OPEN) as box:
        np.testing.assert_array_equal(box.call("goal", np.ones((2, 2))), [1000.0, 1000.0])


def test_no_foreign_module_is_reachable_through_allowed_attributes() -> None:
    """Walk numpy's and math's public attributes as generated code could; every path to a module
    outside numpy/math must pass through a refused attribute name (guards numpy upgrades)."""
    import builtins
    import math
    import types
    import warnings
    from collections import deque

    from rlvlmf.codegen._worker import FORBIDDEN_ATTRIBUTES

    seen: set[int] = set()
    leaks: list[str] = []
    queue: deque = deque([(np, "np"), (math, "math")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while queue:
            obj, path = queue.popleft()
            for name in dir(obj):
                if name.startswith("_") or name in FORBIDDEN_ATTRIBUTES:
                    continue
                try:
                    value = getattr(obj, name)
                except Exception:  # noqa: BLE001, S112 - lazy attributes may fail to load
                    continue
                if not isinstance(value, types.ModuleType) or id(value) in seen:
                    continue
                seen.add(id(value))
                if value is builtins or value.__name__.split(".")[0] not in ("numpy", "math"):
                    leaks.append(f"{path}.{name} -> {value.__name__}")
                queue.append((value, f"{path}.{name}"))
    assert leaks == []
    assert check_source("import numpy as np\nx = np.random.bit_generator.re.enum.bltns.open") is not None


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xff", b"\x00\x00\x00\x05hello", b'\x00\x00\x00\x19{"ok": true, "nbytes": 9}'])
def test_worker_breaking_the_wire_format_is_rejected(garbage: bytes) -> None:
    body = f"""
    write = os_globals()['write']
    for fd in range(3, 12):
        try:
            write(fd, {garbage!r})
        except Exception:
            pass
    """
    with Sandbox(hostile(body), ["goal"], OPEN) as box:
        with pytest.raises(SandboxRejected, match="worker broke the protocol"):
            box.call("goal", np.ones((2, 2)))
        assert box._proc is None  # killed; the next call starts afresh
