"""Point keys: the names under which finished points are stored, one format for every runner
([`gradflow.sweep`][] and the experiments)."""

import math
from typing import Any

import numpy as np


def point_key(
    *, prefix: str | None = None, suffix: str | None = None, digits: int = 6, **values: Any
) -> str:
    """The key of one point of an experiment: `name=value` for each keyword, in order, between
    an optional `prefix` and `suffix`, joined by `_`. Integers are written in full, other
    numbers with `digits` significant digits (`f"{value:.{digits}g}"`) where that form reads
    back as the same float, else in the shortest form that does (`repr`: `1.0000001`,
    `0.00630957344480193`), so distinct values always have distinct keys; strings and booleans
    as they are.

    A run finds the points already stored under these keys, so a key must not change for a
    configuration that did not change: e.g. `point_key(tau=0.01, trial=3)` is
    `"tau=0.01_trial=3"`, `point_key(prefix="sqrt", m=8)` is `"sqrt_m=8"` and
    `point_key(tau=2.0, suffix="gd")` is `"tau=2_gd"`.

    **Arguments:**

    - `prefix`, `suffix`: a bare word before or after the `name=value` parts.
    - `digits`: significant digits of the numbers that are not integers, where they are exact.
    - `values`: the point's coordinates, as `name=value`.

    **Returns:** the key, a file-name-safe string.
    """
    if not isinstance(digits, int) or isinstance(digits, bool) or digits < 1:
        raise ValueError(f"`digits` must be an integer >= 1; got digits={digits!r}.")
    parts = [] if prefix is None else [_word("prefix", prefix)]
    for name, value in values.items():
        parts.append(f"{name}={_value(name, value, digits)}")
    if suffix is not None:
        parts.append(_word("suffix", suffix))
    if not parts:
        raise ValueError("`point_key` needs at least one of `prefix`, `suffix` or a name=value.")
    return "_".join(parts)


def _word(name: str, text: Any) -> str:
    if not isinstance(text, str) or not text or any(c in text for c in "/\\= "):
        raise ValueError(
            f"`{name}` must be a non-empty string without '/', '\\', '=' or spaces; "
            f"got {name}={text!r}."
        )
    return text


def _value(name: str, value: Any, digits: int) -> str:
    if isinstance(value, str):
        return _word(name, value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and not math.isnan(value):
        value = float(value)
        short = f"{value:.{digits}g}"
        # Exact: the short form only where it reads back as the same float, else the shortest
        # form that does (`repr`), so two distinct values never share a key.
        return short if float(short) == value else repr(value)
    raise ValueError(f"Point coordinate `{name}` must be a number or a string; got {value!r}.")


def duplicate_keys(keys: "list[str]", points: "list[Any]") -> str | None:
    """`None` if the keys are distinct, else a message naming each repeated key and the
    points that share it (by position and value)."""
    where: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        where.setdefault(key, []).append(i)
    repeated = {k: idx for k, idx in where.items() if len(idx) > 1}
    if not repeated:
        return None
    shown = [
        f"{k!r} for " + " and ".join(f"points[{i}]={points[i]!r}" for i in idx)
        for k, idx in list(repeated.items())[:3]
    ]
    more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
    return f"{len(repeated)} key(s) repeat: " + "; ".join(shown) + more
