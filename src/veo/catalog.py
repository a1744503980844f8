"""The model catalog: what each model accepts, which backends run it, and when it retires.

The entries are data (``models.toml`` beside this module, extended or overridden by the file
named in ``VEO_MODELS_FILE``), so a new model, a new shutdown date or a renamed Flow menu label
needs no release. Checking a job against its model here turns what Google would answer with a
400 after the job was queued (and perhaps after other clips were paid for) into a 422 that names
the field before anything is queued.
"""

from __future__ import annotations

import json
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from veo.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent / "models.toml"


class Capabilities(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a model accepts on one backend."""

    resolutions: list[str] = []
    durations: list[int] = []
    default_duration: int = 8
    aspect_ratios: list[str] = msgspec.field(default_factory=lambda: ["16:9", "9:16"])
    first_frame: bool = False
    last_frame: bool = False
    reference_images: int = 0
    extension: bool = False
    max_extended_seconds: int = 0
    person_generation: list[str] = []
    negative_prompt: bool = False
    enhance_prompt: bool = False
    samples_per_request: int = 1


class FlowOverrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    resolutions: list[str] | None = None
    durations: list[int] | None = None
    default_duration: int | None = None
    aspect_ratios: list[str] | None = None
    first_frame: bool | None = None
    last_frame: bool | None = None
    reference_images: int | None = None
    extension: bool | None = None


class Model(Capabilities, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A catalog entry: its capabilities (on the api backend, and on Flow unless ``flow``
    overrides some) and what the catalog knows about it."""

    id: str
    protocol: str  # interactions | predict_long_running | flow
    backends: list[str]
    description: str = ""
    aliases: list[str] = []
    flow_label: str | None = None
    shutdown: date | None = None
    replacement: str | None = None
    flow: FlowOverrides | None = None

    def retired(self, today: date) -> bool:
        return self.shutdown is not None and today >= self.shutdown

    def on(self, backend: str) -> Capabilities:
        """The capabilities of this model when ``backend`` runs it."""
        base = {f: getattr(self, f) for f in Capabilities.__struct_fields__}
        if backend == "flow" and self.flow is not None:
            base.update({f: v for f in FlowOverrides.__struct_fields__
                         if (v := getattr(self.flow, f)) is not None})
        return Capabilities(**base)


class Catalog:
    """The models by id, with aliases resolved."""

    def __init__(self, models: dict[str, Model]) -> None:
        self.models = models
        self._alias = {a: m.id for m in models.values() for a in m.aliases}

    def get(self, name: str) -> Model | None:
        return self.models.get(name) or self.models.get(self._alias.get(name, ""))

    def __iter__(self) -> Any:
        return iter(self.models.values())

    def ids(self) -> list[str]:
        return sorted(self.models)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"VEO_MODELS_FILE: cannot read {path}: {exc.strerror}") from None
    try:
        data: dict[str, Any] = (json.loads(raw) if path.suffix == ".json"
                                else tomllib.loads(raw.decode()))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"VEO_MODELS_FILE: {path} is not valid: {exc}") from None
    return data


def _entries(data: dict[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{origin}: expected a 'models' table of model id -> fields")
    return {str(k): dict(v) for k, v in models.items()}


def load(extra: str | None = None) -> Catalog:
    """The shipped catalog, with the entries of ``extra`` (a path) added or merged over it."""
    merged = _entries(tomllib.loads(SHIPPED.read_text()), str(SHIPPED))
    if extra:
        for mid, fields in _entries(_read(Path(extra)), f"VEO_MODELS_FILE {extra}").items():
            merged[mid] = {**merged.get(mid, {}), **fields}
    models: dict[str, Model] = {}
    for mid, fields in merged.items():
        try:
            models[mid] = msgspec.convert({**fields, "id": mid}, Model)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"model catalog: entry {mid!r}: {exc}") from None
    catalog = Catalog(models)
    for m in models.values():
        if m.replacement and catalog.get(m.replacement) is None:
            raise ConfigError(f"model catalog: {m.id} names an unknown replacement "
                              f"{m.replacement!r}")
    return catalog
