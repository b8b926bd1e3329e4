"""A point of [`gradflow.sweep`][] that is not a flow: a function and its arguments."""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True, init=False)
class Computation:
    """A point computed by a function rather than by [`gradflow.solve`][]: SGD on the
    population loss, a CNN's epochs, trials solved together, a closed form. A `build` given to
    [`gradflow.sweep`][] returns one where a point is not one flow; the sweep then runs it
    through the same resume, fingerprint, store and progress as the flows:
    `fn(**kwargs)` is called once, and its result (a mapping of JSON-able values: numbers,
    strings, arrays, lists and dicts of them) is stored with the point and returned in
    `Sweep.outputs` in its JSON form (arrays as lists, NaN as `None`), the same whether
    computed now or read back.

    The point's identity in a store is the fingerprint of `fn` (its code, closure, defaults,
    the globals it reads, and for a bound method its object's fields) and of `kwargs`: an
    edited function or other arguments is another computation, never read back for this one.

    **Arguments:** `Computation(fn, **kwargs)`.
    """

    fn: Callable[..., Mapping[str, Any]]
    kwargs: dict[str, Any]

    def __init__(self, fn: Callable[..., Mapping[str, Any]], /, **kwargs: Any):
        if not callable(fn):
            raise TypeError(
                f"`Computation(fn, **kwargs)` needs a function `fn(**kwargs) -> dict`; got "
                f"fn={fn!r}."
            )
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "kwargs", dict(kwargs))

    def __call__(self) -> dict[str, Any]:
        out = self.fn(**self.kwargs)
        if not isinstance(out, Mapping):
            name = getattr(self.fn, "__qualname__", repr(self.fn))
            raise TypeError(
                f"A Computation's function must return a mapping of results (a dict); "
                f"{name} returned {type(out).__name__}."
            )
        return dict(out)
