import os
import subprocess
import sys

import jax
import pytest

# XLA's classic CPU emitters compile the suite's many small programs in 20-50% less time than
# its fusion emitters (benchmarks/bench_compile.py); the suite then takes 22% less CPU time. The
# tests marked `optimized` (below) compile at XLA's backend optimization level 1, which for them
# costs less compile time than the default level and runs nearly as fast. Set in the controlling
# process before any backend starts, so that the xdist workers and the subprocesses the tests
# start inherit them. A flag that XLA_FLAGS sets already is kept as set; neither is added where
# this XLA does not know them.
_FAST_COMPILE = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=1")


def _use_fast_compile() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    new = [f for f in _FAST_COMPILE if f.split("=")[0] not in flags]
    if not new:
        return
    env = {**os.environ, "XLA_FLAGS": " ".join([flags, *new]).strip()}
    probe = [sys.executable, "-c", "import jax.numpy as j; j.zeros(1).block_until_ready()"]
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        os.environ["XLA_FLAGS"] = env["XLA_FLAGS"]


_use_fast_compile()

# Most of the suite's time is XLA compiling small programs that then run for milliseconds, so the
# suite compiles with JAX's switch for that case (`jax_disable_most_optimizations`: LLVM at -O0,
# its expensive passes off), which halves XLA's compile time and changes results only at float64
# rounding (benchmarks/bench_compile.py). Tests whose run time dominates are marked `optimized`
# and compile with LLVM's optimizations, at XLA's backend level 1 (XLA_FLAGS above). Unless the
# environment sets it already (JAX then reads it, in every process): set in this process, which
# imported JAX, and in the environment, for the workers and subprocesses.
if "JAX_DISABLE_MOST_OPTIMIZATIONS" not in os.environ:
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    jax.config.update("jax_disable_most_optimizations", True)
_LESS_OPTIMIZED = bool(jax.config.values["jax_disable_most_optimizations"])

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _optimization_level(request):
    """XLA's optimizations (backend level 1) for the tests marked `optimized` (the programs they
    compile keep it)."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", _LESS_OPTIMIZED)


@pytest.fixture
def getkey():
    """A fresh PRNG key per call, deterministic per test."""
    keys = iter(jax.random.split(jax.random.PRNGKey(5678), 1000))
    return lambda: next(keys)
