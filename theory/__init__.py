"""Symbolic statements of the lazy-training theory (sympy). This package never imports gradflow:
it is the independent side against which numerical measurements are compared.

- `theory.toy`: exact flows of the scalar model $h(w) = w^2 - w_0^2$ and the series of its gap.
- `theory.next_to_lazy`: the linear ODE of the $1/\\alpha^2$ correction, for polynomial models.
- `theory.statements`: the next-to-lazy expansion, the finite-horizon, over-parameterized,
  under-parameterized, scale-criterion and off-training-set statements, each a
  [`theory.Statement`][] with hypotheses, symbolic bounds and rates.
"""

from .next_to_lazy import (
    NextToLazySystem as NextToLazySystem,
    next_to_lazy_system as next_to_lazy_system,
    scalar_next_to_lazy as scalar_next_to_lazy,
)
from .statements import (
    STATEMENTS as STATEMENTS,
    Statement as Statement,
    finite_horizon as finite_horizon,
    growth_exponent as growth_exponent,
    homogeneity_time_change as homogeneity_time_change,
    next_to_lazy_expansion as next_to_lazy_expansion,
    off_training_set as off_training_set,
    over_parameterized as over_parameterized,
    scale_criterion as scale_criterion,
    under_parameterized as under_parameterized,
)
from .toy import (
    GapSeries as GapSeries,
    ScalarModelFlows as ScalarModelFlows,
    gap_series as gap_series,
    scalar_model_flows as scalar_model_flows,
)
