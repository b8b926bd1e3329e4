"""The suite's compile settings (`tests/conftest.py`): less optimization, except for the tests
marked `optimized`."""

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
def test_optimized_tests_compile_fully():
    assert _less_optimized() is False
