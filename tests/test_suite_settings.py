"""The suite's compile settings (`tests/conftest.py`): less optimization, except for the tests
marked `optimized`, which compile at XLA's backend optimization level 1."""

import os

import jax
import pytest


def _less_optimized() -> bool:
    return bool(jax.config.values["jax_disable_most_optimizations"])


@pytest.mark.skipif(
    os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") != "1",
    reason="JAX_DISABLE_MOST_OPTIMIZATIONS was set to another value before the run",
)
def test_unmarked_tests_compile_less_optimized():
    # conftest sets it to 1 when the environment does not set it.
    assert _less_optimized() is True


@pytest.mark.optimized
def test_optimized_tests_compile_with_optimizations():
    assert _less_optimized() is False
    # The level that conftest adds to XLA_FLAGS, unless XLA_FLAGS set one before the run.
    levels = [f for f in os.environ.get("XLA_FLAGS", "").split() if "backend_optimization" in f]
    assert levels and levels[-1].startswith("--xla_backend_optimization_level="), levels
