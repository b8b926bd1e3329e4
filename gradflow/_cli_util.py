"""Argument parsing helpers and start-up settings shared by the `gradflow` subcommands."""

import argparse
import os
from pathlib import Path

import numpy as np


def floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 1,10,100; got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {value}")
    return value


def enable_compilation_cache(disabled: bool) -> str | None:
    """JAX's persistent compilation cache, so a second run skips XLA compilation."""
    if disabled or os.environ.get("GRADFLOW_NO_CACHE"):
        return None
    import jax

    path = os.environ.get("GRADFLOW_CACHE_DIR") or str(Path.home() / ".cache" / "gradflow" / "jax")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path
