"""JSON output and run metadata."""

import json
import math
import os
import platform
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return _clean(obj.to_dict())
    if isinstance(obj, (np.ndarray,)) or type(obj).__module__.startswith("jax"):
        arr = np.asarray(obj)
        return _clean(arr.item() if arr.ndim == 0 else arr.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def json_form(obj: Any) -> Any:
    """`obj` as JSON values, exactly as a store writes it (arrays as lists, numpy scalars as
    Python numbers, NaN and infinities as `None`): a result computed now and the same result
    read back from a store are equal."""
    return _clean(obj)


def nan_array(values: Any) -> np.ndarray:
    """The inverse of `_clean` for numbers: a JSON value (a number, `None`, or nested lists of
    them) as a float array, `None` (a NaN or inf when written) as NaN."""

    def nan(v: Any) -> Any:
        if v is None:
            return np.nan
        if isinstance(v, (list, tuple)):
            return [nan(x) for x in v]
        return v

    return np.asarray(nan(values), dtype=float)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write `obj` as JSON (NaN and inf become `null`), creating parent folders; the write is
    atomic so an interrupted run never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name per write: processes of a distributed run, or threads of one
    # process, may write the same file at once; the last rename wins whole.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""
    import diffrax
    import equinox
    import jax

    from .._version import __version__

    return {
        "gradflow": __version__,
        "jax": jax.__version__,
        "diffrax": diffrax.__version__,
        "equinox": equinox.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
    }
