"""Gradient descent: forward Euler with a constant step on the gradient flow, through the same
code path as the flows."""

import numbers

import equinox as eqx
import numpy as np


class GradientDescent(eqx.Module):
    r"""Gradient descent with constant step `learning_rate` on $F_\alpha$: forward Euler on the
    gradient flow, $w_{k+1} = w_k - \eta \nabla F_\alpha(w_k)$, at times $t_k = k \eta$.

    Pass it as `solve(problem, t1=num_steps * learning_rate, solver=gf.GradientDescent(eta))`.
    The iterates are the only states: save times `ts` must be multiples of `learning_rate`.
    """

    learning_rate: float = eqx.field(static=True)

    def __check_init__(self):
        if isinstance(self.learning_rate, (bool, np.bool_)) or not isinstance(
            self.learning_rate, numbers.Real
        ):
            raise TypeError(
                "`learning_rate` must be a real number > 0, e.g. `gf.GradientDescent(0.1)`; "
                f"got {type(self.learning_rate).__name__} {self.learning_rate!r}."
            )
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"`learning_rate` must be a finite number > 0; got {self.learning_rate}."
            )
