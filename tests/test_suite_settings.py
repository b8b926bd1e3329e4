"""The suite's compile settings (`tests/conftest.py`): less optimization, except for the tests
marked `optimized`."""

import os

import jax
import pytest


def _less_optimized() -> bool:
    return bool(jax.config.values["jax_disable_most_optimizations"])


def test_unmarked_tests_compile_less_optimized():
    # Set by conftest unless the environment asked otherwise (JAX_DISABLE_MOST_OPTIMIZATIONS=0).
    asked = os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] not in ("0", "false", "False")
    assert _less_optimized() is asked


@pytest.mark.optimized
def test_optimized_tests_compile_fully():
    assert _less_optimized() is False
