"""Argument parsing helpers and start-up settings shared by the `gradflow` subcommands."""

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def number(
    text: str,
    convert: Callable[[str], Any],
    allowed: Callable[[Any], bool],
    what: str,
    allowed_what: str | None = None,
) -> Any:
    """`convert(text)` (`int` or `float`), checked by `allowed`; an argparse error
    "expected WHAT; got ..." when either fails (`allowed_what`, default `what`, words the
    second)."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}") from None
    if not allowed(value):
        raise argparse.ArgumentTypeError(f"expected {allowed_what or what}; got {value}")
    return value


def positive_int(text: str) -> int:
    return number(text, int, lambda v: v >= 1, "a positive integer")


def positive_float(text: str) -> float:
    return number(
        text, float, lambda v: np.isfinite(v) and v > 0, "a number > 0", "a finite number > 0"
    )


def enable_compilation_cache(disabled: bool) -> str | None:
    """JAX's persistent compilation cache, so a second run skips XLA compilation."""
    if disabled or os.environ.get("GRADFLOW_NO_CACHE"):
        return None
    import jax

    path = os.environ.get("GRADFLOW_CACHE_DIR") or str(Path.home() / ".cache" / "gradflow" / "jax")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


class UsageError(Exception):
    """A user error on the command line: `gradflow` prints its message on one line and exits 2."""


def positive_floats(text: str) -> list[float]:
    """Comma-separated finite numbers > 0 (the scales of a sweep)."""
    values = floats(text)
    bad = [v for v in values if not (np.isfinite(v) and v > 0)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated finite numbers > 0 such as 1,10,100; got {text!r} "
            f"(not allowed: {', '.join(repr(v) for v in bad)})"
        )
    return values


def writable_folder(path: Path, flag: str = "--out") -> Path:
    """Create `path` if missing and check that a file can be written there, before any
    computation: a run must not lose its results at the end to a bad output folder."""
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"{flag} {path} is a file, not a folder; pass a folder (created if missing)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(
            f"{flag} {path} cannot be created: a part of that path is a file; pass a folder"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"{flag} {path} cannot be created ({exc.strerror}); pass a folder you can write to"
        ) from None
    probe = path / f".gradflow-write-test-{os.getpid()}"
    try:
        probe.write_text("ok\n")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{flag} {path} is not writable ({exc.strerror}); pass a folder you can write to"
        ) from None
    return path


def line_buffered_stdout() -> None:
    """Flush standard output at every line when it is not a terminal (a log file, a pipe), so
    that a killed run's log holds everything printed until then."""
    import io
    import sys

    if isinstance(sys.stdout, io.TextIOWrapper) and not sys.stdout.isatty():
        sys.stdout.reconfigure(line_buffering=True)


def add_output_arguments(
    p: argparse.ArgumentParser, out: str, out_help: str, *, progress: bool = True
) -> None:
    """The options every computing subcommand shares: `--out` (a folder, default `out`),
    `--no-cache` and, with `progress`, `--no-progress`."""
    p.add_argument("--out", type=Path, default=Path(out), help=out_help)
    p.add_argument("--no-cache", action="store_true", help="disable the compilation cache")
    if progress:
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    """`--distributed`, `--coordinator`, `--num-processes`, `--process-id` (docs/distributed.md)."""
    from .sweeps._distributed import check_coordinator

    def coordinator(text: str) -> str:
        try:
            return check_coordinator(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def index(text: str) -> int:
        return number(text, int, lambda v: v >= 0, "an integer >= 0")

    g = p.add_argument_group(
        "distributed run",
        "Split the points across processes with jax.distributed (point i to process\n"
        "i mod N); every process runs the same command on the same --out, on a shared\n"
        "file system. docs/distributed.md: SLURM (srun) and multi-GPU launches.",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() and let JAX detect the cluster (e.g. under "
        "srun, from the SLURM variables)",
    )
    g.add_argument(
        "--coordinator",
        type=coordinator,
        metavar="HOST:PORT",
        help="address of process 0 (the coordinator), e.g. node01:8476; with --num-processes "
        "and --process-id",
    )
    g.add_argument(
        "--num-processes", type=positive_int, metavar="N", help="number of processes in the run"
    )
    g.add_argument("--process-id", type=index, metavar="I", help="this process, 0 to N-1")


def start_distributed(args: argparse.Namespace) -> None:
    """Initialize jax.distributed from the flags of `add_distributed_arguments`, if any."""
    from .sweeps._distributed import initialize

    flags = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in flags):
        return
    if args.distributed and any(v is not None for v in flags):
        raise UsageError("--distributed detects the cluster; do not combine it with --coordinator")
    try:
        initialize(*flags)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
