"""Symbolic statements of the lazy-training theory (sympy). This package never imports gradflow:
it is the independent side against which numerical measurements are compared.

- `theory.toy`: exact flows of the scalar model $h(w) = w^2 - w_0^2$ and the series of its gap.
- `theory.next_to_lazy`: the linear ODE of the $1/\\alpha^2$ correction, for polynomial models.
- `theory.statements`: the next-to-lazy expansion, the finite-horizon, over-parameterized,
  under-parameterized, scale-criterion and off-training-set statements, and the implicit bias
  of the depth-2 diagonal net (Woodworth et al. 2020), each a [`theory.Statement`][] with
  hypotheses, symbolic bounds and rates.
- `theory.diagonal_net`: the flow of the diagonal net $\beta = u^D - v^D$, its link function
  and its implicit-bias potential $q_D$ (closed form at depth 2, numeric above).
"""

from .diagonal_net import (
    DiagonalNetPotential as DiagonalNetPotential,
    diagonal_flow as diagonal_flow,
    diagonal_net_potential as diagonal_net_potential,
    paper_potential as paper_potential,
)
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
    implicit_bias as implicit_bias,
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
