"""A folder of per-point results, so an interrupted sweep or experiment resumes where it stopped.

Each finished point is one JSON file, written atomically (write to a temporary file, then rename)
and carrying a checksum of its own content and the hash of the configuration it was computed
for: a run killed at any instant leaves every finished point readable, and a file damaged later
(truncated, hand-edited, copied from another folder) is detected, reported in one line, moved to
`corrupted/` and recomputed, never silently reused or silently dropped.

The store remembers the configuration it was created for; reopening it with a different one
raises and names the keys that differ. One run writes into a folder at a time: each process holds
a lock file `locks/process-I-of-N.json` (its pid and host) while the store is open, so the N
processes of one distributed run share the folder and any other run is refused. A lock left by a
process that died is recognised (same host, pid no longer alive) and taken over.
"""

import dataclasses
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._fingerprint import stable_repr as stable_repr
from ._io import _clean, write_json

_KEY = re.compile(r"^[A-Za-z0-9_.=+-]{1,200}$")
_FORMAT = 2


class StoreError(ValueError):
    """A [`gradflow.ResultStore`][] refused to open: another configuration, a corrupted
    `store.json`, or a folder in use by another run. The message says which, and the fix."""


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration (keys sorted)."""
    text = json.dumps(_clean(dict(config)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _content_hash(record: Any) -> str:
    # The record as written (after _clean), with sorted keys and no spaces: floats round-trip
    # exactly through JSON, so re-serializing what was read gives the same text.
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(config, dict) and config:
        out: dict[str, Any] = {}
        for k, v in config.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "(whole configuration)": config}


_ABSENT = object()


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys (dotted for nested ones) whose values differ, as `"key: stored X, now Y"`."""
    a, b = _flatten(_clean(dict(old))), _flatten(_clean(dict(new)))
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if va != vb:
            sa = "(absent)" if va is _ABSENT else repr(va)
            sb = "(absent)" if vb is _ABSENT else repr(vb)
            lines.append(f"{key}: stored {sa}, now {sb}")
    return lines


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except OSError:
        return False
    return True


# Locks this process holds, by path: the thread that holds each and how many open stores of
# that thread use it. The thread that holds a folder may reopen it (a notebook cell run twice);
# another thread of the process is refused like another process. `_GUARD` makes the check and
# the update one step.
_HELD: dict[Path, "_Holder"] = {}
_GUARD = threading.RLock()


@dataclasses.dataclass
class _Holder:
    thread: threading.Thread
    count: int


@dataclasses.dataclass(frozen=True)
class _Lock:
    path: Path
    pid: int
    host: str
    index: int
    count: int
    since: float

    @staticmethod
    def read(path: Path) -> "_Lock | None":
        try:
            d = json.loads(path.read_text())
            return _Lock(
                path, int(d["pid"]), str(d["host"]), int(d["index"]), int(d["count"]), d["since"]
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # Locks are written whole (link of a complete file), so this is damage, not a race.
            return _Lock(path, -1, "?", -1, -1, 0.0)

    def alive(self) -> bool | None:
        """True or False when this host can tell, None for another host's process."""
        if self.pid < 0:
            return False
        if self.host != socket.gethostname():
            return None
        if self.pid == os.getpid():
            return self.path in _HELD
        return _pid_alive(self.pid)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        share = "" if self.count == 1 else f" (process {self.index} of {self.count})"
        return f"pid {self.pid} on host {self.host}{share}, since {when}"


class ResultStore:
    """Per-point results in `folder/points/<key>.json`, with the run's configuration in
    `folder/store.json`.

    **Arguments:**

    - `folder`: where the results live; created if missing.
    - `config`: the JSON-able settings that determine every point's result (sizes, seeds,
      tolerances, ...). Reopening a folder with a different `config` raises
      [`gradflow.StoreError`][] naming the keys that differ, unless `overwrite=True`.
    - `overwrite`: start afresh even if the folder holds results for another configuration
      (discards the old points).
    - `repair`: rebuild a corrupted `store.json` for `config`, keeping every point whose own
      checksum matches and which was computed for `config`; the others are moved to
      `folder/corrupted/`. Without it a corrupted `store.json` raises.
    - `process_index`, `process_count`: this process's share of a run split across
      `process_count` processes; they share the folder, any other run is refused.
    - `log`: where the one-line reports go (a corrupted point, a stale lock taken over);
      default standard error.

    A key names one point (`"tau=0.01_trial=3"`): letters, digits and `_ . = + -` only. Close
    the store (`close()`, or use it as a context manager) to release the folder; a process
    that dies without closing leaves a lock that the next run on the same host takes over.
    """

    def __init__(
        self,
        folder: str | Path,
        config: Mapping[str, Any],
        *,
        overwrite: bool = False,
        repair: bool = False,
        process_index: int = 0,
        process_count: int = 1,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.config = _clean(dict(config))
        self.hash = config_hash(self.config)
        self.log = _stderr if log is None else log
        self.corrupted: list[str] = []
        if not (isinstance(process_count, int) and process_count >= 1):
            raise ValueError(f"`process_count` must be an integer >= 1; got {process_count!r}.")
        if not (isinstance(process_index, int) and 0 <= process_index < process_count):
            raise ValueError(
                f"`process_index` must be an integer in [0, {process_count}); got "
                f"{process_index!r}."
            )
        if process_count > 1 and (overwrite or repair):
            raise ValueError(
                "`overwrite` and `repair` delete or move files: run them once in a single "
                "process before starting a run across processes."
            )
        self.process_index, self.process_count = process_index, process_count
        self._lock: Path | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire()
            self._open(overwrite, repair)
        except BaseException:
            self.close()
            raise

    # -- configuration -----------------------------------------------------------------------

    def _open(self, overwrite: bool, repair: bool) -> None:
        meta_path = self.folder / "store.json"
        if meta_path.exists():
            meta, problem = None, None
            try:
                meta = json.loads(meta_path.read_text())
                if not isinstance(meta, dict) or "config" not in meta or "hash" not in meta:
                    problem = "it lacks the fields 'hash' and 'config'"
                elif meta["hash"] != config_hash(meta["config"]):
                    problem = "its hash does not match its configuration"
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                problem = f"it is not valid JSON ({exc})"
            if problem is not None:
                if overwrite:
                    self._discard_points()
                elif repair:
                    self._repair()
                else:
                    raise StoreError(
                        f"{meta_path} is corrupted: {problem}. Pass repair=True (--repair) to "
                        "rebuild it for this configuration, keeping every finished point whose "
                        "checksum matches, or overwrite=True (--overwrite) to discard them all."
                    )
            elif meta["hash"] != self.hash:
                if not overwrite:
                    diffs = config_differences(meta["config"], self.config)
                    raise StoreError(
                        f"{self.folder} holds results of another configuration; "
                        f"{len(diffs)} key(s) differ: " + "; ".join(diffs) + ". Pass a new output "
                        "folder, or overwrite=True (--overwrite) to discard the old results."
                    )
                self._discard_points()
        self.points_folder.mkdir(parents=True, exist_ok=True)
        write_json({"format": _FORMAT, "hash": self.hash, "config": self.config}, meta_path)

    def _discard_points(self) -> None:
        for f in self.points_folder.glob("*.json"):
            f.unlink()

    def _repair(self) -> None:
        kept = 0
        for path in sorted(self.points_folder.glob("*.json")):
            record, reason = self._read(path)
            if record is None:
                self._set_aside(path, reason)
            else:
                kept += 1
        self.log(
            f"{self.folder / 'store.json'}: rebuilt for this configuration; kept {kept} "
            f"finished point(s), moved {len(self.corrupted)} to {self.folder / 'corrupted'}"
        )

    # -- the lock ----------------------------------------------------------------------------

    @property
    def locks_folder(self) -> Path:
        return self.folder / "locks"

    def _acquire(self) -> None:
        with _GUARD:
            self._acquire_locked()

    def _acquire_locked(self) -> None:
        self.locks_folder.mkdir(exist_ok=True)
        name = f"process-{self.process_index}-of-{self.process_count}.json"
        path = (self.locks_folder / name).resolve()
        holder = _HELD.get(path)
        if holder is not None and holder.thread is not threading.current_thread():
            if holder.thread.is_alive():
                raise StoreError(
                    f"{self.folder} is in use by another thread of this process "
                    f"({holder.thread.name!r}); two threads writing one store would overwrite "
                    "each other's points. Wait for that thread to finish (or close its store), "
                    "or give this thread another output folder."
                )
            # The thread that held it ended without closing the store: take it over.
            holder.thread, holder.count = threading.current_thread(), 0
        if holder is not None:
            holder.count += 1
            self._lock = path
            self._check_others(path)
            return
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "index": self.process_index,
            "count": self.process_count,
            "since": time.time(),
        }
        tmp = path.with_name(f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(mine))
        try:
            for _ in range(3):
                try:
                    # link() fails if the lock exists: of two runs racing for it, one wins,
                    # and the lock is never seen half written.
                    os.link(tmp, path)
                    break
                except FileExistsError:
                    held = _Lock.read(path)
                    if held is None:
                        continue
                    self._refuse_or_clear(held)
            else:
                raise StoreError(f"could not take the lock {path}; try again")
        finally:
            tmp.unlink(missing_ok=True)
        _HELD[path] = _Holder(threading.current_thread(), 1)
        self._lock = path
        try:
            self._check_others(path)
        except BaseException:
            self.close()
            raise

    def _refuse_or_clear(self, held: _Lock) -> None:
        alive = held.alive()
        if held.pid < 0:
            raise StoreError(
                f"{self.folder} has a damaged lock file {held.path}; if no other run uses this "
                "folder, delete that file and rerun."
            )
        if alive is False:
            held.path.unlink(missing_ok=True)
            self.log(f"{held.path}: stale lock of a finished process ({held.describe()}) removed")
            return
        where = "is running" if alive else "may still be running (another host: cannot check)"
        raise StoreError(
            f"{self.folder} is in use by another run: {held.describe()} {where}. Wait for it to "
            f"finish or use another output folder; if that process is gone, delete {held.path}."
        )

    def _check_others(self, mine: Path) -> None:
        # Runs split into a different number of processes must not share the folder; of two
        # racing, the later one (by start time, then name) gives way.
        me = _Lock.read(mine)
        for path in sorted(self.locks_folder.glob("process-*.json")):
            if path == mine:
                continue
            other = _Lock.read(path)
            if other is None or other.count == self.process_count:
                continue
            if other.alive() is False and other.pid >= 0:
                path.unlink(missing_ok=True)
                self.log(f"{path}: stale lock of a finished process ({other.describe()}) removed")
                continue
            if me is not None and (me.since, mine.name) < (other.since, path.name):
                continue
            self._refuse_or_clear(other)

    def close(self) -> None:
        """Release the folder (remove this process's lock). Idempotent."""
        with _GUARD:
            path, self._lock = self._lock, None
            if path is None or path not in _HELD:
                return
            _HELD[path].count -= 1
            if _HELD[path].count <= 0:
                del _HELD[path]
                held = _Lock.read(path)
                if held is not None and held.pid == os.getpid():
                    path.unlink(missing_ok=True)

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- points ------------------------------------------------------------------------------

    @property
    def points_folder(self) -> Path:
        return self.folder / "points"

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(
                f"key {key!r} may only hold letters, digits and _ . = + - (at most 200 characters)"
            )
        return self.points_folder / f"{key}.json"

    def _read(self, path: Path) -> tuple[dict[str, Any] | None, str]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None, ""
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None, "not valid JSON (truncated or edited?)"
        if not isinstance(data, dict) or not {"sha256", "record", "config_hash"} <= set(data):
            return None, "no checksum (not written by this version of gradflow)"
        if data["config_hash"] != self.hash:
            return None, "computed for another configuration"
        if not isinstance(data["record"], dict) or _content_hash(data["record"]) != data["sha256"]:
            return None, "its content does not match its checksum (edited or damaged)"
        return data["record"], ""

    def _set_aside(self, path: Path, reason: str) -> None:
        dest = self.folder / "corrupted" / path.name
        dest.parent.mkdir(exist_ok=True)
        try:
            path.replace(dest)
        except FileNotFoundError:  # another process of the run set it aside first
            pass
        self.corrupted.append(path.stem)
        self.log(f"{path}: corrupted point ({reason}); moved to {dest}, it will be recomputed")

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str, *, set_aside: bool = True) -> dict[str, Any] | None:
        """The stored record for `key`, or `None` if the point has not finished. A file that
        fails its check (bad JSON, checksum, another configuration) counts as not finished and,
        with `set_aside=True`, is reported through `log` and moved to `folder/corrupted/`. (A
        process reading another process's point passes `set_aside=False`: the owner may be
        rewriting it.)"""
        path = self._path(key)
        record, reason = self._read(path)
        if record is None and reason and set_aside:
            self._set_aside(path, reason)
        return record

    def put(self, key: str, record: Mapping[str, Any]) -> Path:
        """Store the finished point `key` (NaN and inf are written as `null`), with a checksum
        of its content."""
        clean = _clean(dict(record))
        body = {
            "key": key,
            "config_hash": self.hash,
            "sha256": _content_hash(clean),
            "record": clean,
        }
        return write_json(body, self._path(key))

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.points_folder.glob("*.json"))

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in self.keys():
            record = self.get(key)
            if record is not None:
                yield key, record

    def __len__(self) -> int:
        return len(self.keys())


# -- resuming: one code path for every runner ------------------------------------------------


def identity_differences(stored: Any, now: Mapping[str, Any]) -> list[str]:
    """The parts of a point's identity that differ between a stored record's `fingerprint` and
    `now` (both `{part: hash}` mappings, nested one level, e.g. `{"problem": {...}, "solve":
    "..."}`), as a list of names; `["fingerprint (none stored)"]` when the record has none."""
    if not isinstance(stored, Mapping):
        return ["fingerprint (none stored)"]
    if "format" in now and stored.get("format") != now["format"]:
        # Hashes of another scheme cannot be compared part by part.
        return [
            f"fingerprint format (stored {stored.get('format', 'before format 3')}, now "
            f"{now['format']}: written by another version of gradflow)"
        ]
    names = {
        "solve": "solve options",
        "measure": "`measure` (its code or closure)",
        "computation": "the computation (its function's code, closure or arguments)",
    }
    differ = []
    for part in sorted(set(stored) | set(now)):
        a, b = stored.get(part), now.get(part)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            differ += [f"{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            differ.append(names.get(part, part))
    return differ


@dataclasses.dataclass(frozen=True)
class Resumed:
    """What [`resume`][gradflow.sweeps._store.resume] found in a store: the records of the finished
    points (by position), and the positions still to compute."""

    records: dict[int, dict[str, Any]]
    pending: list[int]


def resume(
    store: "ResultStore | None",
    keys: list[str],
    identities: list[Mapping[str, Any]],
    *,
    owned: Callable[[int], bool] = lambda i: True,
    recompute_stale: bool = False,
    positions: "list[int] | None" = None,
    now: str = "the one given now",
) -> Resumed:
    """Read back the finished points among `keys` and decide what is left to compute; the one
    resume step of [`gradflow.sweep`][] and [`gradflow.experiments.run`][].

    A stored record is reused only if its `fingerprint` equals the point's identity (the
    hashes of its problem and options). A record computed for another identity is never reused:
    with `recompute_stale` (and the point owned here) it is computed again, otherwise
    [`gradflow.StoreError`][] is raised naming the points and the parts that differ, before
    anything is computed. A point file that fails its own check is set aside by its owner and
    computed again.

    **Arguments:** `store` (or `None`: everything pending), the point `keys`, their
    `identities`, `owned(i)` (whether this process computes point `i`; only the owner sets a
    damaged file aside), `recompute_stale`, `positions` (the points to look at; default
    all) and `now` (what the refusal calls the current computation).
    """
    positions = list(range(len(keys))) if positions is None else positions
    if store is None:
        return Resumed({}, [i for i in positions if owned(i)])
    records: dict[int, dict[str, Any]] = {}
    stale: dict[int, list[str]] = {}
    for i in positions:
        rec = store.get(keys[i], set_aside=owned(i))
        if rec is None:
            continue
        differ = identity_differences(rec.get("fingerprint"), identities[i])
        if differ:
            stale[i] = differ
        else:
            records[i] = rec
    if stale and not (recompute_stale and all(owned(i) for i in stale)):
        shown = [f"{keys[i]} (differs in: {', '.join(d)})" for i, d in list(stale.items())[:5]]
        more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
        raise StoreError(
            f"{len(stale)} point(s) in {store.folder} were computed for another computation "
            f"than {now}: {'; '.join(shown)}{more}. A stored point is reused only for the same "
            "problem (model and loss as traced, arrays), solve options and `measure`: pass "
            "another store folder, or overwrite=True (--overwrite) to recompute them."
        )
    pending = [i for i in positions if i not in records and owned(i)]
    return Resumed(records, pending)
