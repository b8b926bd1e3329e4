"""Small problems and independent references shared by the tests."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import gradflow as gf


def teacher_data(key, n, d, k=1, noise=0.0):
    """Inputs on the unit sphere and targets from a random tanh teacher of width 3."""
    kx, kt, kb, kn = jax.random.split(key, 4)
    x = jax.random.normal(kx, (n, d))
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
    a = jax.random.normal(kt, (3, d))
    b = jax.random.normal(kb, (3, k))
    y = jnp.tanh(x @ a.T) @ b + noise * jax.random.normal(kn, (n, k))
    return x, y


def two_layer_problem(
    key,
    *,
    n=20,
    d=3,
    m=40,
    k=1,
    activation="tanh",
    alpha=1.0,
    center=True,
    doubled=False,
    scaling="sqrt",
):
    kd, kp = jax.random.split(key)
    x, y = teacher_data(kd, n, d, k)
    model = gf.models.TwoLayer(m, activation, scaling)
    params = model.init(kp, d, k, doubled=doubled)
    return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=alpha, center=center)


def numpy_rng(key):
    """A numpy generator seeded by a JAX key (cheap for any shape, unlike jax.random)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def materialized_jacobian(problem, params=None):
    """Dh(w) as an (N, p) numpy matrix, N = outputs.size (row-major), by forward mode."""
    w0, unravel = ravel_pytree(problem.params0)
    w = w0 if params is None else ravel_pytree(params)[0]
    jac = jax.jit(jax.jacfwd(lambda v: problem.h(unravel(v))))(w)
    return np.asarray(jac).reshape(-1, w0.size)


def empirical_fnorm(f):
    """The empirical norm of F in numpy, independent of `gf.empirical_norm`."""
    f = np.asarray(f)
    return math.sqrt(np.sum(f**2) / f.shape[0])


def small_problem(key, *, n=6, d=3, m=8, k=1, alpha=1.0, center=True):
    """A tanh two-layer net (1/sqrt(m)) on a tanh teacher, like `helpers.two_layer_problem`
    but drawn with numpy: jax.random compiles once per shape, which dominates small tests."""
    rng = numpy_rng(key)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.tanh(x @ rng.standard_normal((3, d)).T) @ rng.standard_normal((3, k))
    params = {"a": rng.standard_normal((m, d)) / np.sqrt(d), "b": rng.standard_normal((m, k))}
    model = gf.models.TwoLayer(m, "tanh")
    return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=alpha, center=center)


def run_notebook(name):
    """Execute `notebooks/<name>` (or the notebook at path `name`) cell by cell in this
    process's IPython shell, as a kernel runs it (magics, `display`, the inline matplotlib
    backend), and raise on the first failing cell.

    In-process, a notebook reuses the programs that the tests of its file compiled in the same
    pytest worker (tracing and compiling are most of its cost in a fresh kernel)."""
    from pathlib import Path

    import matplotlib.pyplot as plt
    import nbformat

    path = Path(__file__).resolve().parents[1] / "notebooks" / name
    name = path.name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3", nb.metadata.kernelspec
    shell = _notebook_shell()
    shell.reset(new_session=False)
    shell.enable_matplotlib("inline")
    try:
        for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            result = shell.run_cell(cell.source, store_history=False)
            if not result.success:
                err = result.error_in_exec or result.error_before_exec
                raise AssertionError(f"{name}, code cell {i + 1} failed:\n{cell.source}") from err
    finally:
        plt.close("all")
        shell.reset(new_session=False)


@functools.cache
def _notebook_shell():
    from IPython.core.interactiveshell import InteractiveShell

    class NotebookShell(InteractiveShell):
        def enable_gui(self, gui=None):  # inline figures need no GUI event loop
            pass

    return NotebookShell.instance()


def sweep_of(records):
    """A `gf.Sweep` of computed points whose results are `records` (by key), for calling an
    experiment's `summarize` on hand-made records."""
    keys = tuple(records)
    n = len(keys)
    return gf.Sweep(
        keys=keys,
        points=tuple({} for _ in keys),
        solution=None,
        measures={},
        outputs=tuple(dict(r) for r in records.values()),
        status=(gf.SweepStatus.computed,) * n,
        errors=(None,) * n,
        infos=(None,) * n,
        seconds=np.zeros(n),
        compiled_groups=0,
        wall_seconds=0.0,
    )
