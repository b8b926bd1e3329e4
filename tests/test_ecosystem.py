"""Models from equinox and flax: `gf.Problem.from_module` and the flax recipes of
`docs/extending.md`.

The page's own blocks run as written in `tests/test_docs.py`; here each recipe is checked
against a ground truth: the same network written as a plain function `apply(params, x)` with
the same weights, and its tangent kernel from a Jacobian materialized with `jax.jacfwd`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import teacher_data
from jax.flatten_util import ravel_pytree

import gradflow as gf

N, D, M = 6, 3, 8


def _plain(params, x):
    """A one-hidden-layer tanh network, written out by hand."""
    hidden = jnp.tanh(x @ params["w1"].T + params["b1"][None, :])
    return hidden @ params["w2"].T + params["b2"][None, :]


def _data(key):
    x, y = teacher_data(key, N, D)
    return np.asarray(x), np.asarray(y)


def _kernel_by_jacfwd(problem):
    w0, unravel = ravel_pytree(problem.params0)
    jac = np.asarray(jax.jacfwd(lambda w: problem.h(unravel(w)))(w0)).reshape(-1, w0.size)
    return jac @ jac.T


def _mlp(key, dtype=None):
    return eqx.nn.MLP(D, 1, M, depth=1, activation=jnp.tanh, key=key, dtype=dtype)


def _mlp_weights(mlp):
    first, last = mlp.layers
    return {"w1": first.weight, "b1": first.bias, "w2": last.weight, "b2": last.bias}


def test_equinox_module_passed_whole_names_the_fix(getkey):
    x, y = _data(getkey())
    mlp = _mlp(getkey())
    with pytest.raises(
        TypeError, match=r"`params0` must be a PyTree of floating arrays.*from_module"
    ):
        gf.Problem(lambda m, x: jax.vmap(m)(x), mlp, x, gf.SquareLoss(y))
    with pytest.raises(TypeError, match="`module` must be an equinox module"):
        gf.Problem.from_module(_plain, x, gf.SquareLoss(y))


def test_equinox_mlp_matches_plain_function(getkey):
    x, y = _data(getkey())
    mlp = _mlp(getkey())
    problem = gf.Problem.from_module(mlp, x, gf.SquareLoss(y), alpha=10.0, center=True)
    plain = gf.Problem(_plain, _mlp_weights(mlp), x, gf.SquareLoss(y), alpha=10.0, center=True)
    assert problem.num_params == plain.num_params == D * M + M + M + 1
    # Outputs, tangent kernel (against jacfwd of the plain function) and a solve.
    out = problem.apply(problem.params0, x)
    np.testing.assert_allclose(out, _plain(_mlp_weights(mlp), x), rtol=1e-13, atol=1e-14)
    kernel = np.asarray(gf.tangent_kernel(problem))
    expected = _kernel_by_jacfwd(plain)
    np.testing.assert_allclose(kernel, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    ts = [0.0, 0.5, 2.0]
    a = gf.solve(problem, ts=ts, rtol=1e-10, atol=1e-12, save_params=True)
    b = gf.solve(plain, ts=ts, rtol=1e-10, atol=1e-12)
    assert a.succeeded and b.succeeded
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-8)
    np.testing.assert_allclose(a.param_gap[1:], b.param_gap[1:], rtol=1e-6)
    # The module at the solved parameters, rebuilt: its outputs are the solve's loss.
    w_t = jax.tree_util.tree_map(lambda v: v[-1], a.params)
    trained = problem.apply.module(w_t)
    assert isinstance(trained, eqx.nn.MLP)
    pred = problem.alpha * (jax.vmap(trained)(x) - jax.vmap(mlp)(x))
    np.testing.assert_allclose(
        0.5 * np.mean(np.sum((pred - y) ** 2, axis=1)), a.loss[-1], rtol=1e-8
    )


class _BatchNet(eqx.Module):
    """A module whose `__call__` takes the whole batch (`per_example=False`)."""

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array
    scale: int = eqx.field(static=True)

    def __call__(self, x):
        params = {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}
        return self.scale * _plain(params, x)


def test_batch_module_and_float32_module(getkey):
    x, y = _data(getkey())
    weights = _mlp_weights(_mlp(getkey()))
    net = _BatchNet(**weights, scale=2)
    problem = gf.Problem.from_module(net, x, gf.SquareLoss(y), per_example=False)
    plain = gf.Problem(lambda p, x: 2 * _plain(p, x), weights, x, gf.SquareLoss(y))
    expected = _kernel_by_jacfwd(plain)
    np.testing.assert_allclose(
        gf.tangent_kernel(problem), expected, rtol=0, atol=1e-12 * np.abs(expected).max()
    )
    # A float32 module with float64 data computes in float32: 1e-5 relative to float64.
    mlp32 = _mlp(getkey(), dtype=jnp.float32)
    p32 = gf.Problem.from_module(mlp32, x, gf.SquareLoss(y))
    w64 = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), _mlp_weights(mlp32))
    k64 = _kernel_by_jacfwd(gf.Problem(_plain, w64, x, gf.SquareLoss(y)))
    k32 = gf.tangent_kernel(p32)
    assert p32.dtype == jnp.float32 and k32.dtype == jnp.float32
    np.testing.assert_allclose(k32, k64, rtol=0, atol=1e-5 * np.abs(k64).max())


TRACES: list[int] = []


class _Counting(eqx.Module):
    """An MLP that records each trace of its call."""

    mlp: eqx.nn.MLP

    def __call__(self, x):
        TRACES.append(1)
        return self.mlp(x)


def test_from_module_compiles_once(getkey):
    # alpha is an array leaf and the module's static part is hashable: a second problem built
    # from the same module, or at another alpha, reuses the compiled solve.
    x, y = _data(getkey())
    module = _Counting(_mlp(getkey()))
    problem = gf.Problem.from_module(module, x, gf.SquareLoss(y), center=True)
    gf.solve(problem, t1=1.0)
    count = len(TRACES)
    gf.solve(problem.with_alpha(30.0), t1=1.0)
    again = gf.Problem.from_module(module, x, gf.SquareLoss(y), alpha=3.0, center=True)
    gf.solve(again, t1=2.0)
    assert len(TRACES) == count


# ------------------------------------------------------------------------------ flax


def test_flax_nnx_recipe(getkey):
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(D, M, rngs=rngs)
            self.l2 = nnx.Linear(M, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    x, y = _data(getkey())
    # The README's recipe (split once, merge inside `apply`), here with nnx's default float32
    # parameters (the README asks for float64): the problem computes in float32.
    graphdef, params, rest = nnx.split(Net(nnx.Rngs(0)), nnx.Param, ...)

    def apply(p, x):
        return nnx.merge(graphdef, p, rest)(x)

    problem = gf.Problem(apply, params, x, gf.SquareLoss(y), alpha=10.0, center=True)
    assert problem.dtype == jnp.float32
    # Against the plain function with the same weights in float64 (flax's kernel is (in, out)).
    weights = {
        "w1": params["l1"]["kernel"][...].T,
        "b1": params["l1"]["bias"][...],
        "w2": params["l2"]["kernel"][...].T,
        "b2": params["l2"]["bias"][...],
    }
    weights = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), weights)
    plain = gf.Problem(_plain, weights, x, gf.SquareLoss(y), alpha=10.0, center=True)
    expected = _kernel_by_jacfwd(plain)
    # float32 against float64: 1e-5 relative.
    np.testing.assert_allclose(
        gf.tangent_kernel(problem), expected, rtol=0, atol=1e-5 * np.abs(expected).max()
    )
    a = gf.solve(problem, ts=[0.0, 1.0], rtol=1e-6, atol=1e-8)
    b = gf.solve(plain, ts=[0.0, 1.0])
    assert a.succeeded and a.loss.dtype == jnp.float32
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)


def test_flax_linen_recipe(getkey):
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            hidden = nn.Dense(M, param_dtype=jnp.float64, name="l1")(x)
            return nn.Dense(1, param_dtype=jnp.float64, name="l2")(jnp.tanh(hidden))

    x, y = _data(getkey())
    net = Net()
    params = net.init(jax.random.PRNGKey(0), x)["params"]

    def apply(p, x):
        return net.apply({"params": p}, x)

    problem = gf.Problem(apply, params, x, gf.SquareLoss(y), alpha=10.0, center=True)
    weights = {
        "w1": params["l1"]["kernel"].T,
        "b1": params["l1"]["bias"],
        "w2": params["l2"]["kernel"].T,
        "b2": params["l2"]["bias"],
    }
    plain = gf.Problem(_plain, weights, x, gf.SquareLoss(y), alpha=10.0, center=True)
    expected = _kernel_by_jacfwd(plain)
    np.testing.assert_allclose(
        gf.tangent_kernel(problem), expected, rtol=0, atol=1e-12 * np.abs(expected).max()
    )
    a = gf.solve(problem, ts=[0.0, 0.5, 2.0], rtol=1e-10, atol=1e-12)
    b = gf.solve(plain, ts=[0.0, 0.5, 2.0], rtol=1e-10, atol=1e-12)
    assert a.succeeded and b.succeeded
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-8)
    np.testing.assert_allclose(a.output_gap[1:], b.output_gap[1:], rtol=1e-6)
