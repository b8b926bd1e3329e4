"""A folder of per-point results, so an interrupted sweep or experiment resumes where it stopped.

Each finished point is one JSON file, written atomically (write to a temporary file, then rename):
a run killed at any instant leaves every finished point readable and no truncated file. The
store remembers the configuration it was created for; reopening it with a different configuration
raises instead of silently mixing results from two set-ups.
"""

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._io import _clean, write_json

_KEY = re.compile(r"^[A-Za-z0-9_.=+-]{1,200}$")


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration (keys sorted)."""
    text = json.dumps(_clean(dict(config)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResultStore:
    """Per-point results in `folder/points/<key>.json`, with the run's configuration in
    `folder/store.json`.

    **Arguments:**

    - `folder`: where the results live; created if missing.
    - `config`: the JSON-able settings that determine every point's result (sizes, seeds,
      tolerances, ...). Reopening a folder with a different `config` raises `ValueError`, unless
      `overwrite=True`, which discards the old points.
    - `overwrite`: start afresh even if the folder holds results for another configuration.

    A key names one point (`"tau=0.01_trial=3"`): letters, digits and `_ . = + -` only.
    """

    def __init__(
        self, folder: str | Path, config: Mapping[str, Any], *, overwrite: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.config = _clean(dict(config))
        self.hash = config_hash(self.config)
        meta_path = self.folder / "store.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError:
                meta = {"hash": None}
            if meta.get("hash") != self.hash:
                if not overwrite:
                    raise ValueError(
                        f"{self.folder} holds results of another configuration "
                        f"(stored {meta.get('config')!r}, now {self.config!r}); pass a new "
                        "output folder, or overwrite=True (--overwrite) to discard the old results"
                    )
                for f in self.points_folder.glob("*.json"):
                    f.unlink()
        self.points_folder.mkdir(parents=True, exist_ok=True)
        write_json({"hash": self.hash, "config": self.config}, meta_path)

    @property
    def points_folder(self) -> Path:
        return self.folder / "points"

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(
                f"key {key!r} may only hold letters, digits and _ . = + - (at most 200 characters)"
            )
        return self.points_folder / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return self._path(key).exists()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record for `key`, or `None` if the point has not finished."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            # Cannot happen with atomic writes, but a hand-edited file must not stop a resume.
            return None

    def put(self, key: str, record: Mapping[str, Any]) -> Path:
        """Store the finished point `key` (NaN and inf are written as `null`)."""
        return write_json(dict(record), self._path(key))

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.points_folder.glob("*.json"))

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in self.keys():
            record = self.get(key)
            if record is not None:
                yield key, record

    def __len__(self) -> int:
        return len(self.keys())
