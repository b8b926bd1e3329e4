"""Array and PyTree aliases used across gradflow (jaxtyping, as in diffrax and equinox)."""

from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Float, PyTree

Params: TypeAlias = PyTree[Float[Array, "..."]]
Outputs: TypeAlias = Float[Array, "n ..."]
Scalar: TypeAlias = Float[Array, ""]
FlatParams: TypeAlias = Float[Array, " p"]
Inputs: TypeAlias = Any

__all__ = ["Array", "ArrayLike", "Float", "PyTree", "Params", "Outputs", "Scalar", "FlatParams"]
