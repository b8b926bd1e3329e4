"""The scaled objective `F_alpha(w) = R(alpha h(w)) / alpha^2` and its linearization."""

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._losses import AbstractLoss, _check_finite, empirical_norm
from ._typing import Array, ArrayLike, FlatParams, Inputs, Outputs, Params, Scalar


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _alpha_array(alpha: Any, dtype) -> Array:
    """`alpha` as an array of `dtype`, or a `TypeError` naming it for a value that is not a
    real number: None, a string, a bool, a complex number (numpy's or JAX's own messages
    would name none of these)."""
    problem = None
    if alpha is None or isinstance(alpha, (bool, np.bool_, str, bytes)):
        problem = f"{type(alpha).__name__} {alpha!r}"
    else:
        try:
            array = jnp.asarray(alpha)
        except (TypeError, ValueError):
            problem = f"{type(alpha).__name__} {alpha!r}"
        else:
            if not (
                jnp.issubdtype(array.dtype, jnp.integer)
                or jnp.issubdtype(array.dtype, jnp.floating)
            ):
                problem = f"{alpha!r} of dtype {array.dtype}"
    if problem is not None:
        raise TypeError(
            f"`alpha` must be a real number > 0 (a float, or a real scalar array); got {problem}."
        )
    return array.astype(dtype)


def _check_alpha(alpha: Array) -> Array:
    """`alpha` must be a finite scalar > 0: a ValueError for a concrete value, and a runtime
    error (`eqx.error_if`) for a traced one, e.g. under `jax.vmap` over alphas."""
    if alpha.ndim != 0:
        raise ValueError(f"`alpha` must be a scalar; got shape {alpha.shape}.")
    if _is_traced(alpha):
        bad = jnp.logical_not(jnp.isfinite(alpha) & (alpha > 0))
        return eqx.error_if(alpha, bad, "`alpha` must be a finite number > 0.")
    a = float(alpha)
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"`alpha` must be a finite number > 0; got alpha={a}.")
    return alpha


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, int)) and not isinstance(
        x, bool
    )


def _cast_floats(tree, dtype):
    """Cast the floating arrays of `tree` to `dtype`, keeping numpy arrays numpy and leaving
    every other leaf (integer labels, functions) as it is."""

    def cast(x):
        if isinstance(x, (jax.Array, np.ndarray, np.generic)) and jnp.issubdtype(
            x.dtype, jnp.floating
        ):
            if x.dtype == dtype:
                return x
            return x.astype(dtype) if isinstance(x, jax.Array) else np.asarray(x, dtype)
        return x

    return jax.tree_util.tree_map(cast, tree)


class ModuleApply(eqx.Module):
    r"""An equinox module as a model `apply(params, inputs)`: `params` are the module's
    floating-point arrays (`eqx.partition(module, eqx.is_inexact_array)`), `static` the rest
    (activation functions, sizes, integer arrays), and the call is
    `eqx.combine(params, static)` applied to the inputs. Built by
    [`gradflow.Problem.from_module`][].

    - `static`: the module with its floating arrays replaced by `None`.
    - `per_example`: the module maps one example to its output (the equinox convention, as
      `eqx.nn.MLP`), so it is `jax.vmap`-ed over the leading axis of the inputs; `False` for a
      module whose `__call__` takes the whole batch.
    """

    static: Any
    per_example: bool = eqx.field(static=True)

    def module(self, params: Params) -> eqx.Module:
        """The module with the parameters `params`, e.g. `problem.apply.module(w_t)`."""
        return eqx.combine(params, self.static)

    def __call__(self, params: Params, inputs: Inputs) -> Outputs:
        module = self.module(params)
        return jax.vmap(module)(inputs) if self.per_example else module(inputs)


class Problem(eqx.Module):
    r"""A training problem in the lazy-training scaling of Chizat, Oyallon & Bach (2019).

    With `apply(params, inputs)` the model on the training inputs, the model map is
    $h(w) = \mathrm{apply}(w, x)$, or $h(w) = \mathrm{apply}(w, x) - \mathrm{apply}(w_0, x)$ when
    `center=True` (so that $h(w_0) = 0$ without changing $Dh(w_0)$). The objective is

    $$F_\alpha(w) = \frac{1}{\alpha^2} R(\alpha h(w)),$$

    and the linearized model is $\bar h(w) = h(w_0) + Dh(w_0)(w - w_0)$, evaluated with
    `jax.jvp` (the Jacobian is never built).

    **Arguments:**

    - `apply`: the model, a pure function `apply(params, inputs) -> outputs`.
    - `params0`: the initialization $w_0$, any PyTree of floating arrays with at least one
      entry. (For an equinox module use [`gradflow.Problem.from_module`][].)
    - `inputs`: the training inputs (any PyTree `apply` accepts), all finite.
    - `loss`: an [`gradflow.AbstractLoss`][] whose `targets` have the shape of the outputs,
      with at least one sample.
    - `alpha`: the scale $\alpha > 0$. It is an array leaf, so sweeping it does not recompile.
    - `center`: subtract the initial outputs from the model.

    The problem computes in the parameters' dtype (float32 or float64; their common dtype
    if the leaves differ): the floating arrays of `params0`, `inputs` and the loss are cast to
    it here, and the model's outputs in [`gradflow.Problem.h`][]. So float32 parameters from
    a float32 initializer (flax's default) work with the float64 data of `gf.data`.
    """

    apply: Callable[[Params, Inputs], Outputs]
    params0: Params
    inputs: Inputs
    loss: AbstractLoss
    alpha: Array
    center: bool = eqx.field(static=True)

    def __init__(
        self,
        apply: Callable[[Params, Inputs], Outputs],
        params0: Params,
        inputs: Inputs,
        loss: AbstractLoss,
        *,
        alpha: ArrayLike = 1.0,
        center: bool = False,
    ):
        if not callable(apply):
            raise TypeError(f"`apply` must be a callable `apply(params, inputs)`; got {apply!r}.")
        if not isinstance(center, (bool, np.bool_)):
            raise TypeError(
                f"`center` must be True or False (subtract the initial outputs or not); got "
                f"center={center!r}."
            )
        if not isinstance(loss, AbstractLoss):
            raise TypeError(
                "`loss` must be a gradflow loss such as `gf.SquareLoss(targets)`; got "
                f"{type(loss).__name__}."
            )
        leaves = jax.tree_util.tree_leaves(params0)
        if not leaves:
            raise ValueError("`params0` has no array leaves: there is nothing to train.")
        for leaf in leaves:
            if not _is_array(leaf):
                raise TypeError(
                    "`params0` must be a PyTree of floating arrays; got a leaf of type "
                    f"{type(leaf).__name__} ({leaf!r}). For an equinox module use "
                    "`gf.Problem.from_module(module, inputs, loss, ...)`, which trains its "
                    "floating arrays and keeps the rest."
                )
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                raise ValueError(
                    "`params0` must hold floating-point arrays; got a leaf of dtype "
                    f"{jnp.result_type(leaf)}. Cast it, e.g. `jnp.asarray(x, float)`."
                )
        dtype = jnp.result_type(*leaves)
        params0 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), params0)
        if sum(np.size(x) for x in jax.tree_util.tree_leaves(params0)) == 0:
            raise ValueError(
                "`params0` has no entries (every leaf has size 0): there is nothing to train."
            )
        for leaf in jax.tree_util.tree_leaves(inputs):
            _check_finite("inputs", leaf)
        inputs = _cast_floats(inputs, dtype)
        loss = _cast_floats(loss, dtype)
        alpha = _check_alpha(_alpha_array(alpha, dtype))
        out = jax.eval_shape(apply, params0, inputs)
        target_shape = loss.targets.shape
        if not hasattr(out, "shape") or out.shape != target_shape:
            raise ValueError(
                f"The model output has shape {getattr(out, 'shape', type(out))} but the loss "
                f"targets have shape {target_shape}: they must match (reshape the targets, e.g. "
                "`y[:, None]` for a model returning (n, 1))."
            )
        if len(target_shape) == 0:
            raise ValueError("Model outputs need a leading sample axis; got a scalar output.")
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise ValueError(f"The model output must be floating-point; got dtype {out.dtype}.")
        if target_shape[0] == 0:
            raise ValueError(
                f"The loss targets have no samples (shape {target_shape}): the empirical loss "
                "over n = 0 points is undefined. Pass at least one sample in `inputs` and "
                "`loss.targets`."
            )
        if np.prod(target_shape) == 0:
            raise ValueError(
                f"The model outputs have size 0 (shape {target_shape}): there is nothing to "
                "fit. Give the model at least one output per sample."
            )
        self.apply = apply
        self.params0 = params0
        self.inputs = inputs
        self.loss = loss
        self.alpha = alpha
        self.center = bool(center)

    @property
    def num_params(self) -> int:
        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.params0)))

    @property
    def dtype(self):
        return jnp.result_type(*jax.tree_util.tree_leaves(self.params0))

    def _outputs(self, params: Params) -> Outputs:
        # In the parameters' dtype, even if `apply` promotes (a float64 constant it closes over).
        return self.apply(params, self.inputs).astype(self.dtype)

    def h(self, params: Params) -> Outputs:
        """The model map $h(w)$ on the training inputs (centered if `center=True`)."""
        out = self._outputs(params)
        if self.center:
            out = out - self._outputs(self.params0)
        return out

    def hbar(self, params: Params) -> Outputs:
        r"""The linearized model $\bar h(w) = h(w_0) + Dh(w_0)(w - w_0)$, by one JVP."""
        delta = jax.tree_util.tree_map(jnp.subtract, params, self.params0)
        h0, dh = jax.jvp(self.h, (self.params0,), (delta,))
        return h0 + dh

    def _outputs_at(self, params: Params, inputs: Inputs) -> Outputs:
        out = self.apply(params, _cast_floats(inputs, self.dtype)).astype(self.dtype)
        if self.center:
            out = out - self.apply(self.params0, _cast_floats(inputs, self.dtype)).astype(
                self.dtype
            )
        return out

    def predict(self, params: Params, inputs: Inputs) -> Outputs:
        r"""The scaled model $\alpha h(w, x)$ at other inputs `inputs` (a held-out or test set),
        centered as the problem is: with `center=True`, $h(w, x) = f(w, x) - f(w_0, x)$ at those
        inputs too."""
        return self.alpha * self._outputs_at(params, inputs)

    def predict_linear(self, params: Params, inputs: Inputs) -> Outputs:
        r"""The scaled linearized model $\alpha \bar h(w, x) = \alpha [h(w_0, x) +
        D_w h(w_0, x)(w - w_0)]$ at other inputs `inputs`, by one JVP: what the linearized flow's
        parameters $\bar w(t)$ (e.g. from [`gradflow.linear_flow_closed_form`][]) predict off the
        training set."""
        delta = jax.tree_util.tree_map(jnp.subtract, params, self.params0)
        h0, dh = jax.jvp(lambda p: self._outputs_at(p, inputs), (self.params0,), (delta,))
        return self.alpha * (h0 + dh)

    def objective(self, params: Params) -> Scalar:
        r"""$F_\alpha(w) = R(\alpha h(w)) / \alpha^2$."""
        return self.loss(self.alpha * self.h(params)) / self.alpha**2

    def linear_objective(self, params: Params) -> Scalar:
        r"""$\bar F_\alpha(w) = R(\alpha \bar h(w)) / \alpha^2$."""
        return self.loss(self.alpha * self.hbar(params)) / self.alpha**2

    def with_alpha(self, alpha: ArrayLike) -> "Problem":
        """The same problem at another scale (no recompilation: `alpha` is an array leaf).
        `alpha` is checked as in the constructor (under a trace, at run time)."""
        alpha = _check_alpha(_alpha_array(alpha, self.alpha.dtype))
        return eqx.tree_at(lambda p: p.alpha, self, alpha)

    @classmethod
    def from_module(
        cls,
        module: eqx.Module,
        inputs: Inputs,
        loss: AbstractLoss,
        *,
        alpha: ArrayLike = 1.0,
        center: bool = False,
        per_example: bool = True,
    ) -> "Problem":
        r"""A problem whose model is an equinox module, e.g. `eqx.nn.MLP`.

        The parameters $w_0$ are the module's floating-point arrays
        (`eqx.partition(module, eqx.is_inexact_array)`); everything else (activations,
        sizes, integer arrays) is held fixed in `problem.apply`, a
        [`gradflow.ModuleApply`][]. `problem.apply.module(params)` rebuilds the module at
        other parameters, e.g. `sol.params` at one save time.

        **Arguments:**

        - `module`: a deterministic equinox module (no dropout or batch-norm state: use
          `eqx.nn.inference_mode(module)`).
        - `inputs`, `loss`, `alpha`, `center`: as in [`gradflow.Problem`][].
        - `per_example`: `True` (the equinox convention) when `module(x)` maps one example:
          it is then vmapped over the leading axis of `inputs`. `False` when `module(inputs)`
          takes the whole batch.

        **Returns:** a [`gradflow.Problem`][].
        """
        if not isinstance(module, eqx.Module):
            raise TypeError(
                f"`module` must be an equinox module; got {type(module).__name__}. For a plain "
                "function use `gf.Problem(apply, params0, inputs, loss)`."
            )
        if not isinstance(per_example, (bool, np.bool_)):
            raise TypeError(
                "`per_example` must be True or False (True: the module maps one example and "
                f"is vmapped over the inputs); got per_example={per_example!r}."
            )
        params0, static = eqx.partition(module, eqx.is_inexact_array)
        apply = ModuleApply(static, bool(per_example))
        return cls(apply, params0, inputs, loss, alpha=alpha, center=center)


class _Flat(NamedTuple):
    """The problem on flat parameter vectors, built once inside a trace."""

    w0: FlatParams
    unravel: Callable[[FlatParams], Params]
    h: Callable[[FlatParams], Outputs]
    h0: Outputs
    jvp0: Callable[[FlatParams], Outputs]
    vjp0: Callable[[Outputs], FlatParams]
    loss: AbstractLoss
    alpha: Scalar

    def fnorm(self, f: Outputs) -> Scalar:
        return empirical_norm(f)


def _flatten(problem: Problem, *, linearize: bool = True) -> _Flat:
    w0, unravel = ravel_pytree(problem.params0)
    out0 = problem._outputs(problem.params0)

    def h(w: FlatParams) -> Outputs:
        out = problem._outputs(unravel(w))
        return out - out0 if problem.center else out

    if linearize:
        # `linearize` keeps the residuals of the forward pass at w0, so each JVP/VJP of the
        # linear model costs one matrix-free pass and never re-evaluates the model at w0.
        h0, jvp0 = jax.linearize(h, w0)
        transpose = jax.linear_transpose(jvp0, w0)

        def vjp0(c: Outputs) -> FlatParams:
            (out,) = transpose(c)
            return out
    else:
        h0 = h(w0)
        jvp0 = vjp0 = None
    return _Flat(w0, unravel, h, h0, jvp0, vjp0, problem.loss, problem.alpha)


def _hash_key(tree: Any) -> Any:
    """A hashable stand-in for a PyTree equal to another's when the trees are equal: its
    structure (types, static fields) and its leaves, an array by its dtype, shape and values.
    A solver or controller may hold arrays (`gf.RKC`'s power iteration converts its safety
    factor to one), which do not hash."""

    def leaf(x):
        if _is_traced(x):
            return ("traced", id(x))
        if isinstance(x, (jax.Array, np.ndarray, np.generic)):
            a = np.asarray(x)
            return (a.dtype.str, a.shape, tuple(a.ravel().tolist()))
        return x

    def structure(treedef):
        # Each node's type and static data (a `PyTreeDef` hashes its node types only).
        return treedef.node_data(), tuple(structure(c) for c in treedef.children())

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return structure(treedef), tuple(leaf(x) for x in leaves)
