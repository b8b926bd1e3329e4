"""Theorem checks: each statement of `theory` (sympy) measured on problems, with a report.

One entry point per theorem, each returning a [`gradflow.check.CheckReport`][]:

- `check_next_to_lazy`: the $1/\\alpha^2$ constant from the next-to-lazy ODE;
- `check_finite_horizon`: slopes -1, -2, -1 and the explicit Gronwall bounds of the proof;
- `check_over_parameterized`: the $C_0$ condition, the geometric envelope, the displacement bound
  and the uniform rates;
- `check_under_parameterized`: the geometric rate and its independence of alpha;
- `check_scale_criterion`, `check_width_law`: the scale criterion's laws;
- `check_off_training_set`: the model against its linearization on held-out inputs, slope -1,
  the sharp Taylor bound and the paper's form with the constants $M_1$, $M_2$ measured there;
- `check_implicit_bias`: the diagonal net's flow integrated to its limit (`t1=math.inf`)
  against $\\arg\\min Q_a$ (Woodworth et al. 2020) over the init scale, depth 2 and 3.

Each check module declares its theorem as a [`gradflow.check.Theorem`][] record: its name, the
`theory` statement it measures, the check function, its default problems, its research-size
options and its figure; [`gradflow.check.REGISTRY`][] collects the records. `run(theorem)` runs
a theorem on its default problems (two non-convex toys, a neural net and a negative control
where $h(w_0) \\neq 0$); `run(theorem, size="research")` runs the finite-horizon, next-to-lazy
and scale-criterion checks on real-size nets instead ([`gradflow.check.research_problems`][],
with the options of [`gradflow.check.research_settings`][]). A report's verdict is a
[`gradflow.check.VERDICTS`][] item (`report.result`, its text `report.verdict`);
[`gradflow.check.plot_check`][] draws it.
"""

from ._base import (
    KINDS as KINDS,
    VERDICTS as VERDICTS,
    BoundCheck as BoundCheck,
    CheckReport as CheckReport,
    ConstantCheck as ConstantCheck,
    Curve as Curve,
    ExponentCheck as ExponentCheck,
    Hypothesis as Hypothesis,
    bound_check as bound_check,
    constant_check as constant_check,
    exponent_check as exponent_check,
)
from ._finite_horizon import check_finite_horizon as check_finite_horizon
from ._implicit_bias import (
    check_implicit_bias as check_implicit_bias,
    diagonal_regression as diagonal_regression,
    plot_implicit_bias as plot_implicit_bias,
)
from ._next_to_lazy import (
    NextToLazy as NextToLazy,
    check_next_to_lazy as check_next_to_lazy,
    next_to_lazy as next_to_lazy,
)
from ._off_training_set import check_off_training_set as check_off_training_set
from ._over_parameterized import check_over_parameterized as check_over_parameterized
from ._plot import (
    plot_check as plot_check,
    plot_check_bounds as plot_check_bounds,
    plot_check_curves as plot_check_curves,
    plot_check_exponents as plot_check_exponents,
)
from ._problems import (
    NamedProblem as NamedProblem,
    ScaledModel as ScaledModel,
    diagonal_net as diagonal_net,
    matrix_completion as matrix_completion,
    matrix_factorization as matrix_factorization,
    two_layer as two_layer,
    vgg_digits as vgg_digits,
)
from ._registry import (
    REGISTRY as REGISTRY,
    RESEARCH_THEOREMS as RESEARCH_THEOREMS,
    SIZES as SIZES,
    THEOREMS as THEOREMS,
    default_problems as default_problems,
    research_problems as research_problems,
    research_settings as research_settings,
    run as run,
)
from ._scale import (
    check_scale_criterion as check_scale_criterion,
    check_width_law as check_width_law,
)
from ._theorem import Research as Research, Theorem as Theorem
from ._under_parameterized import check_under_parameterized as check_under_parameterized
