import abc

import equinox as eqx

from .._typing import Inputs, Outputs, Params


class AbstractModel(eqx.Module):
    """A model: a pure map `(params, inputs) -> outputs` with configuration in its fields.

    Models hold no parameters, so one model object can be reused across problems and sweeps
    without recompiling.
    """

    @abc.abstractmethod
    def __call__(self, params: Params, inputs: Inputs) -> Outputs:
        """The outputs, with a leading sample axis."""
