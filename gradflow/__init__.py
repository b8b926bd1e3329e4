"""gradflow: training as a gradient flow, and the lazy-training regime, in JAX.

Importing gradflow enables 64-bit floats in JAX (`jax_enable_x64`): the distances it measures
reach 1e-8 of the parameters' size, below float32 resolution.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import check as check, data as data, models as models, plot as plot  # noqa: E402
from ._gd_flow import (  # noqa: E402
    GDFlowDistance as GDFlowDistance,
    gd_flow_distance as gd_flow_distance,
)
from ._losses import (  # noqa: E402
    AbstractLoss as AbstractLoss,
    CrossEntropyLoss as CrossEntropyLoss,
    LogisticLoss as LogisticLoss,
    SquareLoss as SquareLoss,
    empirical_norm as empirical_norm,
)
from ._options import SolveOptions as SolveOptions  # noqa: E402
from ._problem import ModuleApply as ModuleApply, Problem as Problem  # noqa: E402
from ._solution import (  # noqa: E402
    RESULTS as RESULTS,
    Solution as Solution,
    SolveError as SolveError,
    SolveInfo as SolveInfo,
)
from ._solve import solve as solve  # noqa: E402
from ._version import __version__ as __version__  # noqa: E402
from .analysis._closed_form import linear_flow_closed_form as linear_flow_closed_form  # noqa: E402
from .analysis._diagnostics import (  # noqa: E402
    ScaleCriterion as ScaleCriterion,
    kernel_drift as kernel_drift,
    operator_norms as operator_norms,
    scale_criterion as scale_criterion,
    tangent_kernel as tangent_kernel,
)
from .analysis._estimators import (  # noqa: E402
    LipschitzEstimate as LipschitzEstimate,
    Spectrum as Spectrum,
    lipschitz_dh as lipschitz_dh,
    parameter_spectrum as parameter_spectrum,
    tangent_spectrum as tangent_spectrum,
)
from .analysis._implicit_bias import (  # noqa: E402
    ImplicitBiasLimit as ImplicitBiasLimit,
    implicit_bias_limit as implicit_bias_limit,
)
from .analysis._kernel_flow import (  # noqa: E402
    KernelFlow as KernelFlow,
    infinite_width_flow as infinite_width_flow,
    kernel_flow as kernel_flow,
)
from .analysis._kernels import (  # noqa: E402
    infinite_width_kernels as infinite_width_kernels,
    infinite_width_nngp as infinite_width_nngp,
    infinite_width_ntk as infinite_width_ntk,
)
from .analysis._sharpness import (  # noqa: E402
    Sharpness as Sharpness,
    sharpness as sharpness,
    sharpness_along as sharpness_along,
)
from .analysis._stats import (  # noqa: E402
    RateFit as RateFit,
    fit_rate as fit_rate,
    student_t_quantile as student_t_quantile,
)
from .models import symmetric_init as symmetric_init  # noqa: E402
from .solvers._auto import (  # noqa: E402
    SolverChoice as SolverChoice,
    StiffnessSource as StiffnessSource,
    choose_solver as choose_solver,
    has_kinks as has_kinks,
    stiff_threshold as stiff_threshold,
    stiffness as stiffness,
)
from .solvers._bdf import BDF as BDF  # noqa: E402
from .solvers._gradient_descent import GradientDescent as GradientDescent  # noqa: E402
from .solvers._rock2 import ROCK2 as ROCK2  # noqa: E402
from .solvers._stabilized import (  # noqa: E402
    RKC as RKC,
    AbstractSpectralRadius as AbstractSpectralRadius,
    AbstractStabilizedSolver as AbstractStabilizedSolver,
    PowerIteration as PowerIteration,
    SpectralBound as SpectralBound,
)
from .solvers._switch import Tsit5ThenRKC as Tsit5ThenRKC  # noqa: E402
from .sweeps._computation import Computation as Computation  # noqa: E402
from .sweeps._fingerprint import (  # noqa: E402
    problem_fingerprint as problem_fingerprint,
    tree_fingerprint as tree_fingerprint,
)
from .sweeps._store import ResultStore as ResultStore, StoreError as StoreError  # noqa: E402
from .sweeps._sweep import (  # noqa: E402
    PREDICTED_SLOPES as PREDICTED_SLOPES,
    AlphaSweep as AlphaSweep,
    Sweep as Sweep,
    SweepStatus as SweepStatus,
    sweep as sweep,
    sweep_alpha as sweep_alpha,
)
