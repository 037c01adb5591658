"""Backend names: parse a spec string, find the class, build the backend.

A spec reads ``family[:model][@base_url]``: ``scripted``, ``openai:gpt-4o``,
``openai:llava:13b@http://localhost:11434/v1``,
``openai:Qwen/Qwen2.5-VL-7B-Instruct@http://localhost:8000/v1``. The model may contain ``:``
and ``/``; ``@`` separates a base URL only when what follows starts with ``http://`` or
``https://`` (so ``model@v2`` stays a model name).

Families map to ``"module:Class"`` strings and are imported only when asked for, so a
missing optional package breaks only its own backend. Third-party packages add families
through the entry-point group ``rlvlmf.backends`` (name = family, value = ``module:Class``).
Every backend class provides ``from_spec(model, base_url, *, rng=None, **options)``; ``rng`` (a
``np.random.Generator`` or a seed) is the source of any randomness the backend draws itself,
so callers build every backend the same way.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rlvlmf.errors import ConfigError, MissingDependencyError, UnknownNameError
from rlvlmf.feedback.base import Backend, RngLike

ENTRY_POINT_GROUP = "rlvlmf.backends"
"""Entry-point group third-party packages use to register backend families."""

BUILTIN_BACKENDS: dict[str, str] = {
    "scripted": "rlvlmf.feedback.backends.scripted:ScriptedTeacher",
    "openai": "rlvlmf.feedback.backends.openai:OpenAIBackend",
    "gemini": "rlvlmf.feedback.backends.gemini:GeminiBackend",
    "anthropic": "rlvlmf.feedback.backends.anthropic:AnthropicBackend",
    "hf": "rlvlmf.feedback.backends.hf:HFBackend",
    "clip": "rlvlmf.feedback.backends.clip:ClipBackend",
}
"""Families shipped with rlvlmf, as lazily imported ``module:Class`` targets."""

_URL_PREFIXES = ("http://", "https://")


@dataclass(frozen=True)
class BackendSpec:
    """A parsed backend spec string.

    Attributes:
        family: Registry name, e.g. ``"openai"``.
        model: Model name as the provider spells it, or ``None`` for the backend's default.
        base_url: Server URL for OpenAI-compatible servers, or ``None``.
    """

    family: str
    model: str | None = None
    base_url: str | None = None

    def __str__(self) -> str:
        text = self.family
        if self.model is not None:
            text += f":{self.model}"
        if self.base_url is not None:
            text += f"@{self.base_url}"
        return text


def parse_spec(spec: str) -> BackendSpec:
    """Split ``family[:model][@base_url]`` into its parts.

    Args:
        spec: The spec string.

    Returns:
        The parsed spec; the family is lower-cased.

    Raises:
        ConfigError: The spec or one of its parts is empty.
    """
    text = spec.strip()
    base_url = None
    # Search from the left so "model@v2@http://..." keeps "model@v2" whole only when the
    # first '@' is not followed by a URL; the first '@'+URL wins (URLs rarely hold "@http").
    start = 0
    while (at := text.find("@", start)) != -1:
        if text[at + 1 :].startswith(_URL_PREFIXES):
            base_url = text[at + 1 :]
            text = text[:at]
            break
        start = at + 1
    family, sep, model = text.partition(":")
    family = family.strip().lower()
    if not family:
        raise ConfigError(f"backend spec {spec!r} has no family; expected family[:model][@base_url], e.g. openai:gpt-4o")
    if sep and not model:
        raise ConfigError(f"backend spec {spec!r} has an empty model after ':'")
    if base_url is not None and not urlsplit(base_url).netloc:
        raise ConfigError(f"backend spec {spec!r} has an empty base URL after '@'")
    return BackendSpec(family=family, model=model or None, base_url=base_url)


def _entry_point_families() -> dict[str, str]:
    found: dict[str, str] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name.lower()
        if name in BUILTIN_BACKENDS:
            raise ConfigError(
                f"entry point {entry_point.value!r} (group {ENTRY_POINT_GROUP}) registers backend family {name!r}, "
                f"which is built in ({BUILTIN_BACKENDS[name]}); uninstall the package or rename its family"
            )
        if name in found and found[name] != entry_point.value:
            raise ConfigError(
                f"backend family {name!r} is registered twice in entry-point group {ENTRY_POINT_GROUP}: "
                f"{found[name]!r} and {entry_point.value!r}; uninstall one of the packages"
            )
        found[name] = entry_point.value
    return found


def available_families() -> dict[str, str]:
    """Every known family and its ``module:Class`` target, built-ins first.

    Raises:
        ConfigError: Two registrations claim the same family.
    """
    return {**BUILTIN_BACKENDS, **_entry_point_families()}


def _resolve(family: str, families: dict[str, str]) -> str:
    if family not in families:
        raise UnknownNameError(f"unknown backend family {family!r}; available: {', '.join(sorted(families))}")
    return families[family]


def load_backend_class(family: str) -> type[Backend]:
    """Import and return the class registered for ``family``.

    Raises:
        UnknownNameError: No such family.
        MissingDependencyError: Its module or an optional package it needs is not installed.
        ConfigError: The registered target is not a ``Backend`` subclass.
    """
    target = _resolve(family.lower(), available_families())
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if missing.split(".")[0] == "rlvlmf":
            hint = "this rlvlmf install lacks it; reinstall rlvlmf or pick another family"
        else:
            hint = f"pip install {missing.split('.')[0]}"
        raise MissingDependencyError(
            f"backend family {family!r} needs module {missing!r}, which is not installed ({hint})"
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError(f"backend target {target!r} is not a subclass of rlvlmf.feedback.base.Backend")
    return cls


def make_backend(spec: str, *, rng: RngLike = None, **options: Any) -> Backend:
    """Build the backend a spec names.

    Args:
        spec: ``family[:model][@base_url]``.
        rng: Source of the backend's own random draws (the scripted teacher's noise): a
            generator or a seed; ``None`` leaves the backend to its default. Every built-in
            backend accepts it; those that draw nothing ignore it.
        **options: Backend-specific keyword options (``beta``, ``temperature``...), passed to
            the class's ``from_spec``.

    Returns:
        A ready backend. Building it does not touch the network.

    Raises:
        UnknownNameError: Unknown family (the message lists the known ones).
        MissingDependencyError: The backend's optional package is missing.
        ConfigError: Bad spec or options.
    """
    parsed = parse_spec(spec)
    cls = load_backend_class(parsed.family)
    from_spec = getattr(cls, "from_spec", None)
    if from_spec is None:
        raise ConfigError(f"backend class {cls.__qualname__} has no from_spec(model, base_url, **options) classmethod")
    if rng is not None:  # a third-party from_spec written before rng existed still builds without one
        options["rng"] = rng
    return from_spec(parsed.model, parsed.base_url, **options)


@dataclass(frozen=True)
class BackendInfo:
    """One row of ``rlvlmf backends``.

    Attributes:
        family: Spec prefix.
        target: ``module:Class`` it maps to.
        description: One line from the class, or the import problem.
        requires: Optional packages the class needs.
        key_env: Environment variables its API key may come from.
        installed: Whether the class imports and all its ``requires`` are importable.
        missing: What is missing when not installed (module names).
    """

    family: str
    target: str
    description: str
    requires: tuple[str, ...]
    key_env: tuple[str, ...]
    installed: bool
    missing: tuple[str, ...] = ()


def _package_importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def list_backends() -> list[BackendInfo]:
    """Describe every registered family, importing each lazily.

    A family whose module or optional package cannot be imported shows as not installed
    rather than failing the listing.
    """
    infos = []
    for family, target in available_families().items():
        try:
            cls = load_backend_class(family)
        except MissingDependencyError as exc:
            module = exc.__cause__.name if isinstance(exc.__cause__, ModuleNotFoundError) else None
            infos.append(BackendInfo(family, target, str(exc), (), (), False, (module or target.partition(":")[0],)))
            continue
        except ImportError as exc:  # a dependency that imports but fails (e.g. missing system lib)
            infos.append(BackendInfo(family, target, f"import failed: {exc}", (), (), False, (target.partition(":")[0],)))
            continue
        requires = tuple(cls.requires)
        missing = tuple(name for name in requires if not _package_importable(name))
        infos.append(
            BackendInfo(
                family=family,
                target=target,
                description=cls.description or _first_line(cls.__doc__),
                requires=requires,
                key_env=tuple(cls.key_env),
                installed=not missing,
                missing=missing,
            )
        )
    return infos
