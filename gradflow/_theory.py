"""The exponents of `theory/`'s statements, read at first use: importing gradflow does not
import sympy (its import and the statements' derivations cost seconds)."""

import functools
from collections.abc import Iterator, Mapping


@functools.cache
def statement_exponents(theorem: str) -> dict[str, float]:
    """The `(quantity, exponent)` pairs of `theory.STATEMENTS[theorem]()`, derived there with
    `sympy.limit` (`theory.growth_exponent`); computed once per process."""
    from theory.statements import STATEMENTS

    if theorem not in STATEMENTS:
        raise ValueError(f"Unknown theorem {theorem!r}; choose one of {list(STATEMENTS)}.")
    return dict(STATEMENTS[theorem]().exponents)


class PredictedExponents(Mapping[str, float]):
    """A read-only mapping from quantities to the exponents in alpha the statement `theorem` of
    `theory` predicts for them. The keys are known at once; the values are derived (sympy) on
    first access, by `statement_exponents`."""

    def __init__(self, theorem: str, quantities: tuple[str, ...]):
        self._theorem = theorem
        self._quantities = tuple(quantities)

    def __getitem__(self, quantity: str) -> float:
        if quantity not in self._quantities:
            raise KeyError(quantity)
        return statement_exponents(self._theorem)[quantity]

    def __iter__(self) -> Iterator[str]:
        return iter(self._quantities)

    def __len__(self) -> int:
        return len(self._quantities)

    def __repr__(self) -> str:
        return repr(dict(self))

    def to_dict(self) -> dict[str, float]:
        """The plain `dict`, for JSON."""
        return dict(self)
