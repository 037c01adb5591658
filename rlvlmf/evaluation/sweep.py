"""Multi-seed sweeps: expand a grid of training runs and run it locally or on a Ray cluster.

A sweep is methods (``Variant``: reward, backend, config overrides) x presets x seeds. Each
grid point is one ``rlvlmf train`` subprocess writing its own run folder ``OUT/NAME``, so a
sweep is just many ordinary runs: ``rlvlmf report OUT`` aggregates them, and any one of them
can be inspected or resumed by hand. The sweep builds and validates every new run's config
first (a bad setting stops it before any run starts), saves it as the run's ``config.json``
and starts the run from that file (``rlvlmf train --config``). Sweeps resume: a run with
``summary.json`` is finished and skipped, a run folder without it is resumed with
``--resume``, the rest start fresh.

Runs may share one query store (``--store``): the store is SQLite in WAL mode, safe for
concurrent processes, so a pair labelled by one run is a cache hit for the others.

The sweep also records each run's method label in ``OUT/sweep.json`` so the report can tell
apart methods that differ only by ``--set`` overrides (e.g. a noisy scripted teacher).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvlmf.errors import ConfigError, MissingDependencyError, UserError
from rlvlmf.training.builder import build_config, save_config, slug, sweep_run_name
from rlvlmf.training.run_files import RunFiles
from rlvlmf.utils.atomic import atomic_write_text
from rlvlmf.utils.lock import ProcessLock

if TYPE_CHECKING:
    from rlvlmf.training.config import TrainConfig

logger = logging.getLogger(__name__)

MANIFEST_NAME = "sweep.json"
"""File in a sweep's output folder mapping run names to their method, preset and seed."""

PYTHON = "{python}"
"""Stands for the Python interpreter of whichever machine runs the command (Ray workers
may live in a different environment from the driver)."""

# Time a run gets to checkpoint after SIGINT before it is killed, when a sweep is stopped.
_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Variant:
    """One method in a sweep: where the reward comes from and any config changes.

    Attributes:
        name: Label of the method in run names and reports (e.g. ``scripted-noisy``).
        reward: ``rlvlmf train --reward`` value (``preference``, ``env``, ``clip``,
            ``code:FILE``); ``None`` keeps the preset's default.
        backend: ``rlvlmf train --backend`` spec; ``None`` keeps the preset's default.
        overrides: ``key=value`` config overrides, applied as ``--set`` applies them.
    """

    name: str
    reward: str | None = None
    backend: str | None = None
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not slug(self.name):
            raise ConfigError(f"method name {self.name!r} must contain a letter or digit")
        for item in self.overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")

    @classmethod
    def from_args(
        cls, reward: str | None = None, backend: str | None = None, overrides: Sequence[str] = (), name: str | None = None
    ) -> Variant:
        """A variant named after its reward and backend unless ``name`` is given.

        Overrides are left out of the default name (it would become unwieldy); a sweep that
        reuses a name with other settings in the same folder is refused, see ``write_manifest``.
        """
        return cls(name or method_label(reward, backend), reward, backend, tuple(overrides))


def method_label(reward: str | None, backend: str | None, overrides: Sequence[str] = ()) -> str:
    """Default method label: the reward, the backend for preference rewards, then overrides.

    >>> method_label("preference", "scripted:mistake", ["eps_mistake=0.2"])
    'preference:scripted:mistake[eps_mistake=0.2]'
    """
    label = reward or "default"
    if backend and reward in (None, "preference"):
        label = f"{label}:{backend}"
    if overrides:
        label += "[" + ",".join(overrides) + "]"
    return label


@dataclass(frozen=True)
class EnvTask:
    """A task named by an env spec and a goal sentence instead of a preset (``train --env``).

    Attributes:
        env: Family spec, e.g. ``dmc:hopper-hop`` or ``gym:my_package.envs:MyArm-v0``.
        goal: The goal sentence.
        camera: Camera name or id; empty for the env's own view.
    """

    env: str
    goal: str
    camera: str = ""

    @property
    def name(self) -> str:
        """The env id, as the task's name in run names and reports."""
        return self.env.rpartition(":")[2]


@dataclass(frozen=True)
class RunSpec:
    """One grid point: a training run with its own folder ``out / name``.

    Attributes:
        preset: Preset (task) name; for an ``env`` task, the env's id.
        seed: Training seed.
        variant: The method.
        out: Folder that holds the sweep's run folders.
        steps: Environment steps, ``None`` for the preset's default.
        store: Query store shared by the sweep's runs, ``None`` for train's default.
        env: The env and goal when the task is not a preset.
    """

    preset: str
    seed: int
    variant: Variant
    out: Path
    steps: int | None = None
    store: Path | None = None
    env: EnvTask | None = None

    @property
    def name(self) -> str:
        """Run folder name: method, preset and seed."""
        return sweep_run_name(self.variant.name, self.preset, self.seed)

    @property
    def run_dir(self) -> Path:
        """The run folder ``rlvlmf train`` writes."""
        return self.out / self.name

    def train_config(self) -> TrainConfig:
        """This run's config, built and validated as ``rlvlmf train`` builds it from the same flags.

        Raises:
            UserError: Unknown preset or env, bad reward, backend or override (one line).
        """
        fields: dict[str, Any] = {"seed": self.seed}
        if self.env is not None:
            fields.update(env=self.env.env, goal=self.env.goal, camera=self.env.camera)
        if self.variant.reward is not None:
            fields["reward"] = self.variant.reward
        if self.variant.backend is not None:
            fields["backend"] = self.variant.backend
        if self.steps is not None:
            fields["steps"] = self.steps
        return build_config("" if self.env is not None else self.preset, self.variant.overrides, **fields)

    def manifest_entry(self) -> dict[str, Any]:
        """What ``sweep.json`` records about this run."""
        entry = {
            "method": self.variant.name,
            "preset": self.preset,
            "seed": self.seed,
            "reward": self.variant.reward,
            "backend": self.variant.backend,
            "overrides": list(self.variant.overrides),
            "steps": self.steps,
        }
        if self.env is not None:  # preset runs keep the manifest entries written before env tasks existed
            entry.update(env=self.env.env, goal=self.env.goal, camera=self.env.camera)
        return entry


class RunState(enum.Enum):
    """Where a run stands before the sweep touches it."""

    NEW = "new"
    PARTIAL = "partial"
    FINISHED = "finished"


def run_state(run_dir: Path) -> RunState:
    """``FINISHED`` if ``summary.json`` exists, ``PARTIAL`` if only the folder does, else ``NEW``."""
    if RunFiles(run_dir).is_complete():
        return RunState.FINISHED
    if run_dir.exists():
        return RunState.PARTIAL
    return RunState.NEW


CommandFor = Callable[[RunSpec, RunState], Sequence[str]]
"""Builds the command line of one run from its spec and state (NEW or PARTIAL)."""


def train_command(spec: RunSpec, state: RunState) -> list[str]:
    """The real command: ``train --config RUN/config.json`` (saved by the sweep), or ``train --resume RUN``.

    A sweep never rebuilds ``rlvlmf train``'s flags: it saves each run's validated config
    (``prepare_configs``) and starts the run from it.
    """
    base = [PYTHON, "-m", "rlvlmf", "train"]
    store = ["--store", str(spec.store)] if spec.store is not None else []
    if state is RunState.PARTIAL:
        start = ["--resume", str(spec.run_dir)]
    else:
        start = ["--config", str(RunFiles(spec.run_dir).config), "--out", str(spec.out), "--name", spec.name]
    return [*base, *start, *store, "--no-progress"]  # progress bars would fill the log files


def prepare_configs(specs: Sequence[RunSpec]) -> dict[str, TrainConfig]:
    """Run name -> validated config of every run that needs one saved (unfinished, no ``config.json``).

    All are built before any run starts, so a bad setting stops the sweep in one line instead
    of failing each run. Building a config makes its env once (for its sizes), so the driver
    needs the envs' packages too.

    Raises:
        UserError: A run's config is invalid (unknown preset, bad override, ...).
    """
    configs: dict[str, TrainConfig] = {}
    for spec in specs:
        files = RunFiles(spec.run_dir)
        if files.is_complete() or files.is_run():
            continue
        try:
            configs[spec.name] = spec.train_config()
        except UserError as exc:
            raise UserError(f"run {spec.name}: {exc}") from exc
    return configs


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds from ``"0-4"``, ``"0,3,7"`` or a mix like ``"0-2,10"``, in order, without repeats.

    Raises:
        ConfigError: Not a list of non-negative integers or ``a-b`` ranges with a <= b.
    """
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ConfigError(f"seeds {text!r}: {part!r} is not a seed or a range like 0-4")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ConfigError(f"seeds {text!r}: range {part!r} is empty (write low-high)")
        seeds.extend(s for s in range(first, last + 1) if s not in seeds)
    return tuple(seeds)


def parse_names(text: str, what: str = "presets") -> tuple[str, ...]:
    """Comma-separated names, stripped, at least one.

    Raises:
        ConfigError: The list is empty.
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"{what}: give at least one name, comma-separated")
    return names


def expand_grid(
    presets: Iterable[str | EnvTask],
    seeds: Iterable[int],
    variants: Iterable[Variant],
    *,
    out: str | os.PathLike[str],
    steps: int | None = None,
    store: str | os.PathLike[str] | None = None,
) -> list[RunSpec]:
    """All runs of a sweep, seeds outermost so an early stop still covers every method and task.

    A task is a preset name or an ``EnvTask`` (env spec and goal).

    Raises:
        ConfigError: An empty axis, bad steps, or two grid points with the same run name.
    """
    presets, seeds, variants = list(presets), list(seeds), list(variants)
    if not presets or not seeds or not variants:
        raise ConfigError("a sweep needs at least one preset, one seed and one method")
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    out_dir = Path(out).resolve()
    store_dir = Path(store).resolve() if store is not None else None
    specs = [
        RunSpec(preset, seed, variant, out_dir, steps, store_dir) if isinstance(preset, str)
        else RunSpec(preset.name, seed, variant, out_dir, steps, store_dir, env=preset)
        for seed in seeds
        for preset in presets
        for variant in variants
    ]
    names = [s.name for s in specs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(f"run names clash after making them path-safe: {clashes}; give methods distinct names")
    return specs


def check_manifest(specs: Sequence[RunSpec]) -> None:
    """Refuse runs whose name is already recorded in ``sweep.json`` with other settings.

    Without this, a second sweep with other ``--set`` values into the same folder would
    find the first sweep's finished runs under the same names and silently skip them.

    Raises:
        ConfigError: A run name is taken by a run with a different method, preset, seed,
            reward, backend, overrides or steps.
    """
    manifests: dict[Path, dict[str, dict[str, Any]]] = {}
    for spec in specs:
        recorded = manifests.setdefault(spec.out, read_manifest(spec.out)).get(spec.name)
        if recorded is not None and recorded != spec.manifest_entry():
            changed = sorted(k for k, v in spec.manifest_entry().items() if recorded.get(k) != v)
            raise ConfigError(
                f"run {spec.name} in {spec.out} was started with other settings ({', '.join(changed)} differ); "
                "give this sweep another --method name or another --out folder"
            )


def write_manifest(specs: Sequence[RunSpec]) -> None:
    """Record the runs in ``OUT/sweep.json`` of each output folder, keeping earlier entries.

    Raises:
        ConfigError: See ``check_manifest``.
    """
    check_manifest(specs)
    by_out: dict[Path, list[RunSpec]] = {}
    for spec in specs:
        by_out.setdefault(spec.out, []).append(spec)
    for out, group in by_out.items():
        manifest = read_manifest(out)
        manifest.update({spec.name: spec.manifest_entry() for spec in group})
        atomic_write_text(out / MANIFEST_NAME, json.dumps({"runs": manifest}, indent=2, sort_keys=True) + "\n")


def read_manifest(out: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Run name -> manifest entry from ``OUT/sweep.json``; empty if there is none."""
    path = Path(out) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text())["runs"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a sweep manifest ({exc}); delete it to start a new one") from exc


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run.

    Attributes:
        spec: The run.
        state: Its state before this sweep (FINISHED runs were skipped).
        returncode: Exit status of the command; ``None`` if skipped or never started.
        wall_s: Seconds the command ran.
        log: The command's log file, ``None`` if skipped.
    """

    spec: RunSpec
    state: RunState
    returncode: int | None
    wall_s: float = 0.0
    log: Path | None = None

    @property
    def ok(self) -> bool:
        """Skipped as finished, or ran and exited 0."""
        return self.state is RunState.FINISHED or self.returncode == 0


@dataclass(frozen=True)
class SweepResult:
    """Outcomes of every run of a sweep, in grid order."""

    outcomes: tuple[RunOutcome, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[RunOutcome]:
        """Runs that were started and exited non-zero (or never started because of a stop)."""
        return [o for o in self.outcomes if not o.ok]

    @property
    def skipped(self) -> list[RunOutcome]:
        """Runs that were already finished."""
        return [o for o in self.outcomes if o.state is RunState.FINISHED]


def run_sweep(
    specs: Sequence[RunSpec],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    command_for: CommandFor = train_command,
    env: Mapping[str, str] | None = None,
    on_done: Callable[[RunOutcome], None] | None = None,
) -> SweepResult:
    """Run every unfinished run of ``specs``; finished ones are skipped, partial ones resumed.

    Each run's output goes to ``OUT/logs/NAME.log``. A failing run does not stop the others.
    If the sweep itself is interrupted (Ctrl-C, SIGTERM turned into ``SystemExit``), the
    running commands get SIGINT, a grace period to checkpoint, then SIGKILL; running the same
    sweep again picks up where it stopped.

    Args:
        specs: The grid, from ``expand_grid``.
        workers: Runs at once (local) or runs in flight (Ray).
        ray_address: Run on Ray (``"auto"``, ``"local"`` or ``"ray://host:port"``) instead
            of a local process pool. Run folders must be on a filesystem all nodes share.
        command_for: Command line of a run; tests swap in a fake training script.
        env: Environment of the commands (default: this process's, unbuffered output, and
            ``OMP_NUM_THREADS`` split between workers unless already set).
        on_done: Called with each outcome as soon as it is known.

    Returns:
        The outcome of every run, in the order of ``specs``.

    Raises:
        ConfigError: ``workers`` < 1.
        MissingDependencyError: ``ray_address`` given but Ray is not installed.
        UserError: Another sweep is running over the same manifest (the message names its PID).
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    with contextlib.ExitStack() as held:
        # One sweep per manifest: a second one would start the same runs again beside the first.
        for out in sorted({spec.out for spec in specs}):
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(ProcessLock(out / f".{MANIFEST_NAME}.lock", f"sweep {out / MANIFEST_NAME}"))
        return _run_sweep(specs, workers, ray_address, command_for, env, on_done)


def _run_sweep(specs: Sequence[RunSpec], workers: int, ray_address: str | None, command_for: CommandFor,
               env: Mapping[str, str] | None, on_done: Callable[[RunOutcome], None] | None) -> SweepResult:
    write_manifest(specs)
    states = {spec.name: run_state(spec.run_dir) for spec in specs}
    configs = prepare_configs(specs)
    outcomes: dict[str, RunOutcome] = {}

    def record(outcome: RunOutcome) -> None:
        outcomes[outcome.spec.name] = outcome
        if on_done is not None:
            on_done(outcome)

    jobs: list[_Job] = []
    for spec in specs:
        state = states[spec.name]
        if state is RunState.FINISHED:
            record(RunOutcome(spec, state, None))
            continue
        log = spec.out / "logs" / f"{spec.name}.log"
        jobs.append(_Job(spec, state, list(command_for(spec, state)), log, configs.get(spec.name)))
    child_env = _child_env(env, workers)
    if ray_address is not None:
        _run_on_ray(jobs, ray_address, workers, child_env, record)
    else:
        _run_locally(jobs, workers, child_env, record)
    return SweepResult(tuple(outcomes[s.name] for s in specs if s.name in outcomes))


@dataclass(frozen=True)
class _Job:
    spec: RunSpec
    state: RunState
    argv: list[str]
    log: Path
    config: TrainConfig | None = None
    """Saved as the run's ``config.json`` just before it starts (its command reads it)."""

    def save_config(self) -> None:
        if self.config is not None:
            self.spec.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.spec.run_dir)


def execute(
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    started: Callable[[subprocess.Popen], None] | None = None,
) -> tuple[int, float]:
    """Run ``argv`` with output appended to ``log``; return ``(exit status, seconds)``.

    ``argv[0] == PYTHON`` is replaced by this interpreter. Used by the local pool and, on the
    worker, by the Ray task.
    """
    argv = [sys.executable if i == 0 and a == PYTHON else a for i, a in enumerate(argv)]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("a") as handle:
        handle.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n")
        handle.flush()
        # Own session: a Ctrl-C at the terminal reaches only the sweep, which then sends each
        # run exactly one SIGINT (a second one could abort a run's final checkpoint).
        process = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env), start_new_session=True
        )
        if started is not None:
            started(process)
        returncode = process.wait()
    return returncode, time.monotonic() - start


def _run_locally(jobs: list[_Job], workers: int, env: Mapping[str, str], record: Callable[[RunOutcome], None]) -> None:
    live: set[subprocess.Popen] = set()
    lock = threading.Lock()
    stopping = threading.Event()

    def started(process: subprocess.Popen) -> None:
        with lock:
            live.add(process)

    def run(job: _Job) -> RunOutcome:
        if stopping.is_set():
            return RunOutcome(job.spec, job.state, None)
        try:
            job.save_config()
            returncode, wall = execute(job.argv, job.log, env, started)
        except OSError as exc:  # e.g. the command does not exist: fail this run, not the sweep
            job.log.parent.mkdir(parents=True, exist_ok=True)
            with job.log.open("a") as handle:
                handle.write(f"could not start {job.argv[0]!r}: {exc}\n")
            returncode, wall = 127, 0.0
        return RunOutcome(job.spec, job.state, returncode, wall, job.log)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep")
    futures: dict[Future[RunOutcome], _Job] = {pool.submit(run, job): job for job in jobs}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                record(future.result())
    except BaseException:
        stopping.set()
        for future in futures:
            future.cancel()
        with lock:
            _stop(list(live))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGINT (a run checkpoints and exits), then SIGKILL whatever is still alive."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_on_ray(
    jobs: list[_Job], address: str, workers: int, env: Mapping[str, str], record: Callable[[RunOutcome], None]
) -> None:
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    # One CPU per run so Ray never packs more runs on a node than it has cores.
    remote = ray.remote(num_cpus=1, max_retries=0)(execute)
    queue = list(jobs)
    in_flight: dict[Any, _Job] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                job = queue.pop(0)
                job.save_config()  # run folders are on a filesystem every node shares
                in_flight[remote.remote(job.argv, job.log, dict(env))] = job
            done, _ = ray.wait(list(in_flight), num_returns=1)
            job = in_flight.pop(done[0])
            try:
                returncode, wall = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                logger.error("run %s failed on Ray: %s", job.spec.name, exc)
                returncode, wall = -1, 0.0
            record(RunOutcome(job.spec, job.state, returncode, wall, job.log))
    except BaseException:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise


def import_ray() -> Any:
    """Import Ray or say how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            "running a sweep on Ray needs the ray package: pip install 'rlvlmf[ray]' (or drop --ray to run locally)"
        ) from exc
    return ray


def _child_env(env: Mapping[str, str] | None, workers: int) -> dict[str, str]:
    child = dict(os.environ if env is None else env)
    child.setdefault("PYTHONUNBUFFERED", "1")
    if env is None and "OMP_NUM_THREADS" not in child:
        # Several runs each using every core would thrash; split the cores between them.
        child["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return child
