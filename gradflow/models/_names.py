"""Older spellings of the `init` arguments, still accepted: `scale` for the init scale `tau`
(the paper's name), `symmetric` for the `doubled` init (neuron pairs with opposite output
weights)."""

from typing import Any


def renamed(new: str, value: Any, default: Any, old: str, old_value: Any) -> Any:
    """The value of the argument `new`, given under its older name `old` or not at all
    (`old_value=None`); both names with different values raise `ValueError`."""

    def scalar(v: Any) -> bool:
        return isinstance(v, (bool, int, float))

    if old_value is None:
        return value
    # Only Python scalars are compared: `tau` may be a traced array under `jax.vmap`.
    if value is default or (scalar(value) and value == default):
        return old_value
    if not (scalar(value) and scalar(old_value) and value == old_value):
        raise ValueError(
            f"`{old}` is the older name of `{new}`; pass `{new}` only (got {new}={value!r} "
            f"and {old}={old_value!r})."
        )
    return old_value
