"""Sweeps and experiments across processes: which points a process owns, and the barrier.

A run across `N` processes (`jax.distributed.initialize`, e.g. one process per GPU or per node
under SLURM) splits its points deterministically, point `i` to process `i mod N`. Each process
solves its own points on its own devices and writes them to the shared store; no array crosses
processes. At the end every process waits at a barrier and then reads the other processes'
points back from the store. A rerun after a crash recomputes exactly the points missing from
the store, each on the process that owns it.
"""

import re

import jax

_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")


def share(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """`(process_index, process_count)`, each defaulting to JAX's (`jax.process_index()`,
    `jax.process_count()`: 0 and 1 without `jax.distributed`), checked."""
    count = jax.process_count() if process_count is None else process_count
    index = jax.process_index() if process_index is None else process_index
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"`process_count` must be an integer >= 1; got {process_count!r}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(
            f"`process_index` must be an integer in [0, {count}) (process_count={count}); got "
            f"{index!r}."
        )
    return index, count


def owner(position: int, process_count: int) -> int:
    """The process that computes the point at `position` in the list of points."""
    return position % process_count


def barrier(name: str) -> None:
    """Wait for every process of a `jax.distributed` run (nothing to do in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def check_coordinator(text: str) -> str:
    """A `HOST:PORT` coordinator address, or `ValueError` saying what is expected."""
    if not _ADDRESS.match(text):
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:12345 or node01:8476; got {text!r}")
    return text


def initialize(
    coordinator: str | None, num_processes: int | None, process_id: int | None
) -> tuple[int, int]:
    """Start `jax.distributed` (before any computation). With all three arguments `None`, JAX
    detects the cluster (SLURM, Open MPI, ...); otherwise all three are needed. Returns this
    process's `(process_index, process_count)`."""
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "--coordinator, --num-processes and --process-id go together (or use --distributed "
            "alone to let JAX detect SLURM)"
        )
    if num_processes is not None and process_id is not None:
        if not 0 <= process_id < num_processes:
            raise ValueError(
                f"--process-id must be in [0, {num_processes}) for --num-processes "
                f"{num_processes}; got {process_id}"
            )
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"jax.distributed.initialize failed: {exc}") from None
    return jax.process_index(), jax.process_count()
