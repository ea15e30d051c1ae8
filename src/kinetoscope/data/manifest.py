"""The JSONL manifest: the project's one dataset format, for world clips and your own media alike.

One JSON object per line: a video or image (an image is a one-frame video) and what is
known about it. ``path`` and ``caption`` are required; everything else is optional::

    {"path": "clip_00000.mp4", "caption": "A large red ball moves right ...",
     "short_caption": "a red ball moves right", "fps": 10.0, "width": 128, "height": 128,
     "frames": 32, "state_path": "clip_00000.json", "scenario": "uniform", "seed": 1234}

- ``path``: the media file; a relative path is relative to the manifest's folder.
- ``caption``: the text a model trains on (may be empty for media still to be captioned).
- ``short_caption``, ``fps`` (> 0), ``width``, ``height``, ``frames`` (whole numbers >= 1).
- ``state`` (an inline dict) or ``state_path`` (a JSON file, relative like ``path``): the
  ground truth of a world clip, as documented in :mod:`kinetoscope.world.truth`.
- any other key is kept as it is, in ``extra``.

Writing is atomic, keys are sorted and paths inside the manifest's folder are written
relative to it, so the same entries always give a byte-identical file and a dataset folder
can be moved as a whole.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kinetoscope.errors import ConfigError
from kinetoscope.files import atomic_write_text

_INT_FIELDS = ("width", "height", "frames")


@dataclasses.dataclass
class ManifestEntry:
    """One line of a manifest. ``path`` and ``state_path`` are absolute once read from a file."""

    path: Path
    caption: str
    short_caption: str | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    state: dict[str, Any] | None = None
    state_path: Path | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.state_path is not None:
            self.state_path = Path(self.state_path)
        if self.fps is not None:
            self.fps = float(self.fps)
        clash = sorted(set(self.extra) & _FIELDS)
        if clash:
            raise ConfigError(f"Manifest extra fields {clash} clash with the entry's own fields.")

    @property
    def is_image(self) -> bool:
        return self.frames == 1

    def load_state(self) -> dict[str, Any] | None:
        """The ground-truth state: inline, read from ``state_path``, or None."""
        if self.state is not None or self.state_path is None:
            return self.state
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"State file {self.state_path} named by the manifest does not exist.") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"State file {self.state_path} is not valid JSON ({e.msg} at line {e.lineno}).") from None

    def to_json(self, root: Path) -> dict[str, Any]:
        """The line's JSON object; paths under ``root`` become relative to it."""
        data: dict[str, Any] = dict(self.extra)
        for field in _FIELDS - {"extra"}:
            value = getattr(self, field)
            if value is None:
                continue
            data[field] = _relative(value, root) if field in ("path", "state_path") else value
        return data

    @classmethod
    def from_json(cls, data: Any, root: Path) -> ManifestEntry:
        """Build from one parsed line; raises ``ValueError`` or ``TypeError`` with the reason when it is not valid."""
        if not isinstance(data, dict):
            raise TypeError(f"a line must be a JSON object, got {type(data).__name__}")
        for key in ("path", "caption"):
            if key not in data:
                raise ValueError(f"the required field {key!r} is missing")
        if not isinstance(data["path"], str) or not data["path"]:
            raise ValueError(f"'path' must be a non-empty string, got {data['path']!r}")
        for key in ("caption", "short_caption"):
            if key in data and not isinstance(data[key], str):
                raise ValueError(f"{key!r} must be a string, got {data[key]!r}")
        if "fps" in data and not (_is_number(data["fps"]) and data["fps"] > 0):
            raise ValueError(f"'fps' must be a positive number, got {data['fps']!r}")
        for key in _INT_FIELDS:
            if key in data and not (isinstance(data[key], int) and not isinstance(data[key], bool) and data[key] >= 1):
                raise ValueError(f"{key!r} must be a whole number of at least 1, got {data[key]!r}")
        if "state" in data and not isinstance(data["state"], dict):
            raise ValueError(f"'state' must be a JSON object, got {type(data['state']).__name__}")
        if "state_path" in data and (not isinstance(data["state_path"], str) or not data["state_path"]):
            raise ValueError(f"'state_path' must be a non-empty string, got {data['state_path']!r}")
        known = {k: data[k] for k in _FIELDS if k in data}
        known["path"] = root / data["path"]
        if "state_path" in known:
            known["state_path"] = root / data["state_path"]
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(**known, extra=extra)


_FIELDS = frozenset(f.name for f in dataclasses.fields(ManifestEntry))


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """Every entry of a JSONL manifest (blank lines skipped); relative paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Manifest {path} does not exist or is not a file.")
    root = path.absolute().parent
    entries = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entries.append(ManifestEntry.from_json(json.loads(line), root))
            except json.JSONDecodeError as e:
                raise ConfigError(f"Manifest {path} line {number} is not valid JSON ({e.msg}).") from None
            except (ValueError, TypeError, ConfigError) as e:
                raise ConfigError(f"Manifest {path} line {number} is not a valid entry: {e}.") from None
    return entries


def write_manifest(path: str | os.PathLike, entries: Iterable[ManifestEntry]) -> Path:
    """Write ``entries`` atomically, one sorted-key JSON object a line; returns the path.

    Absolute paths inside the manifest's folder are written relative to it; a relative path
    is written as it is, so it is taken as relative to the manifest's folder.
    """
    path = Path(path)
    root = path.absolute().parent
    lines = [
        json.dumps(entry.to_json(root), sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n" for entry in entries
    ]
    atomic_write_text(path, "".join(lines))
    return path


def _relative(value: Path, root: Path) -> str:
    if value.is_absolute() and value.is_relative_to(root):
        return value.relative_to(root).as_posix()
    return value.as_posix()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
