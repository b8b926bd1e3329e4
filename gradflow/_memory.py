"""Sizes that cannot fit in memory, refused before anything is allocated: XLA aborts the whole
process (SIGABRT, no Python exception) on an allocation it cannot make."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")

# The memory limit of a control group (a container, a SLURM job), version 2 then version 1.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


class ArraySize(NamedTuple):
    """Arrays that one point of an experiment (or one call) holds at once.

    - `what`: what they are and their shape in the options' names, e.g.
      `"the tangent kernel and its eigenvectors, 2 x n_train^2 per trial"`.
    - `elements`: how many numbers they hold.
    - `options`: the options that set their size, the one to lower first.
    - `itemsize`: bytes per number (8: float64).
    """

    what: str
    elements: int
    options: tuple[str, ...]
    itemsize: int = 8

    @property
    def nbytes(self) -> int:
        return int(self.elements) * int(self.itemsize)


def memory_limit() -> int | None:
    """The bytes of memory this process can use at most: the machine's physical memory, or
    its control group's limit where that is lower; `None` where neither can be read.

    Physical memory, not the memory free now: a size above it cannot fit whatever else runs,
    so a refusal never depends on the other processes of the moment.
    """
    try:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        limit = None
    if limit is not None and limit <= 0:
        limit = None
    for path in _CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        # "max" (no limit), or a huge number standing for none in version 1.
        if text.isdigit() and int(text) > 0:
            limit = int(text) if limit is None else min(limit, int(text))
    return limit


def format_bytes(nbytes: float) -> str:
    """`nbytes` in binary units with 3 significant digits: `"15.3 MiB"`, `"26.5 YiB"`."""
    value, unit = float(nbytes), _UNITS[0]
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            break
        value /= 1024
    if unit == "bytes":
        return f"{int(value)} bytes"
    return f"{value:.3g} {unit}"


def refuse_if_too_large(
    arrays: Sequence[ArraySize], values: dict[str, object], kind: str = "Option"
) -> None:
    """Raise a `ValueError` when `arrays` together hold more than [`memory_limit`][] bytes,
    naming the options of the largest, their values, the bytes needed and the limit.

    **Arguments:**

    - `arrays`: what is held at once; their sum is a lower bound of the memory needed
      (XLA's temporaries come on top).
    - `values`: each option's value, by name, for the message.
    - `kind`: the word before the names: `"Option"` (an experiment's) or `"Argument"`.
    """
    limit = memory_limit()
    need = sum(a.nbytes for a in arrays)
    if limit is None or need <= limit:
        return
    top = max(arrays, key=lambda a: a.nbytes)
    named = [f"`{name}`={values[name]!r}" for name in top.options]
    names = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    if kind == "Option":
        names = f"{kind}{'s' if len(named) > 1 else ''} {names}"
    verb = "needs" if len(named) == 1 else "need"
    fix = top.options[0] if len(top.options) == 1 else _or(top.options)
    share = "" if top.nbytes == need else f"{format_bytes(top.nbytes)} of it "
    raise ValueError(
        f"{names} {verb} at least {format_bytes(need)} of memory ({share}for {top.what}) but "
        f"this machine has {format_bytes(limit)}; lower {fix}."
    )


def _or(names: Sequence[str]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"
