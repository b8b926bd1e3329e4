r"""Check of the implicit bias of diagonal nets (Woodworth et al., COLT 2020, Theorem 1 and its
depth-$D$ form): the flow integrated to its limit against the minimizer of $Q_a$, over the
kernel-to-rich transition."""

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from .._losses import SquareLoss
from .._problem import Problem
from .._solve import solve
from ..analysis._implicit_bias import implicit_bias_limit
from ..models import DiagonalDifferenceNet
from ._base import CheckReport, Curve, Hypothesis, constant_check
from ._common import as_named, problem_report
from ._problems import NamedProblem
from ._theorem import Theorem

if TYPE_CHECKING:
    from theory import Statement

TEACHERS = ("sparse", "dense")
"""The teachers of [`gradflow.check.diagonal_regression`][]."""

# The goals of issue 24 for the relative error of the flow's limit, by depth.
_TOLERANCES = {2: 1e-6, 3: 1e-5}

SCALES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
"""Issue 24's grid of init scales $a$, 1e-3 ... 1e2 (`scales=SCALES` runs it at every depth)."""

DEFAULT_SCALES = {2: SCALES, 3: SCALES}
r"""The check's default grid by depth: `SCALES` at both depths. At depth 3 and $a = 10^{-3}$
the sparse teacher's flow converges only algebraically after its plateaus (loss
$\sim t^{-3/2}$, error $\sim t^{-1/2}$; the stop lies near $t = 2\cdot 10^{9}$): `"auto"`
takes [`gradflow.BDF`][] for these 60-parameter flows, whose steps grow with the time there
(11 639 evaluations; RKC's stages grow like $\sqrt{h\lambda_{\max}}$ and did not reach the
stop in 30 000 steps, docs/theory.md)."""


def statement() -> "Statement":
    """`theory.implicit_bias()`, imported at first use (importing gradflow imports no sympy)."""
    from theory import implicit_bias

    return implicit_bias()


def diagonal_regression(
    teacher: str = "sparse", *, samples: int = 12, dim: int = 30, seed: int = 0
) -> NamedProblem:
    r"""Underdetermined regression $X\beta = y$ for the implicit-bias check: $X$ with standard
    Gaussian entries, shape `(samples, dim)`, and $y = X\beta_T$ for a teacher $\beta_T$ that
    is `"sparse"` ($(1, -2, 1.5, 0, \dots)$, which the minimum-$\ell_1$ solution recovers) or
    `"dense"` ($2g/\sqrt{d}$, $g$ standard Gaussian). The problem's model is the depth-2
    [`gradflow.models.DiagonalDifferenceNet`][] from $u = v = \mathbf 1$, $\alpha = 1$; the
    check builds the depths and init scales it runs from its inputs and targets."""
    if teacher not in TEACHERS:
        raise ValueError(f"`teacher` must be one of {list(TEACHERS)}; got {teacher!r}.")
    if not (isinstance(samples, int) and isinstance(dim, int) and 1 <= samples < dim):
        raise ValueError(
            "`samples` and `dim` must be integers with 1 <= samples < dim (underdetermined "
            f"regression, where the flow has an implicit bias); got samples={samples!r}, "
            f"dim={dim!r}."
        )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, dim))
    beta = np.zeros(dim)
    beta[: min(3, dim)] = [1.0, -2.0, 1.5][: min(3, dim)]
    if teacher == "dense":
        beta = 2 * rng.standard_normal(dim) / np.sqrt(dim)
    model = DiagonalDifferenceNet(2)
    problem = Problem(
        model, model.init(dim, tau=1.0), jnp.asarray(x), SquareLoss(jnp.asarray(x @ beta)[:, None])
    )
    return NamedProblem(
        f"diagonal-{teacher}-n{samples}-d{dim}",
        f"X beta = y, X Gaussian {samples}x{dim}, {teacher} teacher (seed {seed}); diagonal net "
        "beta = u^D - v^D from u = v = a",
        problem,
        2,
    )


def _scales_by_depth(scales, depths: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The sorted init scales of each depth: `DEFAULT_SCALES` (None), one sequence for every
    depth, or a mapping depth -> sequence; each checked finite and > 0."""
    if scales is None:
        scales = DEFAULT_SCALES
    if isinstance(scales, Mapping):
        missing = [d for d in depths if d not in scales]
        if missing:
            raise ValueError(
                f"`scales` maps depths to init scales but has no scales for depth(s) {missing}; "
                f"give a sequence for every depth in `depths={depths!r}`, e.g. "
                f"{{2: (1e-3, 1.0), 3: (1e-2, 1.0)}}, or one sequence such as (1e-3, 1.0, 100.0)."
            )
        grids = {d: scales[d] for d in depths}
    else:
        grids = {d: scales for d in depths}
    out = {}
    for depth, grid in grids.items():
        grid = np.sort(np.asarray(grid, dtype=float).ravel())
        if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
            raise ValueError(
                "`scales` must be init scales a > 0 (finite), e.g. (1e-3, 1.0, 100.0), or a "
                f"mapping depth -> such scales; got {grid!r} for depth {depth}."
            )
        out[depth] = grid
    return out


def _minimum_norm_solutions(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The limits of the transition: the minimum-l1 solution (linear program on
    beta = p - q, p, q >= 0) and the minimum-l2 solution (least squares)."""
    from scipy.optimize import linprog

    n, d = x.shape
    lp = linprog(np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=[(0, None)] * (2 * d))
    if not lp.success:
        raise RuntimeError(f"the minimum-l1 solution was not found: {lp.message}")
    l1 = lp.x[:d] - lp.x[d:]
    l2 = np.linalg.lstsq(x, y, rcond=None)[0]
    return l1, l2


def check_implicit_bias(
    spec: NamedProblem | Problem,
    *,
    scales=None,
    depths=(2, 3),
    rtol: float = 1e-9,
    atol: float = 1e-11,
    lazy_atol: float = 1e-12,
    stop_loss: float = 1e-16,
    max_steps: int = 30_000,
    num_predicted: int = 41,
) -> CheckReport:
    r"""Check the implicit bias of the diagonal net $\beta = u^D - v^D$ on the regression
    data of `spec` (its inputs $X$ and square-loss targets $y$; e.g.
    [`gradflow.check.diagonal_regression`][]).

    For each depth $D$ in `depths` and init scale $a$ in its grid, the flow of
    [`gradflow.models.DiagonalDifferenceNet`][]`(D)` from $u = v = a\mathbf 1$ at $\alpha = 1$
    ($\alpha = a^D$ in the toolkit's scaling: `theory.implicit_bias().alpha_of_scale`) is
    integrated to its limit by [`gradflow.solve`][] with `t1=math.inf` and the default solver
    `"auto"`, at the tolerances `rtol`, `atol` and the stop level `stop_loss`, tighter than
    the defaults (at rtol 1e-8 the global error of the small-$a$ solves is 2e-6; the
    stop's loss floor follows the tolerances, and where the floor stops a solve the error of
    the limit is about $2.5\sqrt{\text{floor}}$), with at most `max_steps` steps per scale.
    At $a > 1$ the absolute tolerance is `lazy_atol` instead: there the flow barely moves
    ($u - a$ is small, so `atol` sets the tolerance) and $\beta = u^D - v^D$ amplifies a state
    error by $D a^{D-1}$ (depth 3, $a = 100$: relative error 5.2e-6 and 9.5e-6 at atol 1e-11,
    7.1e-7 and 1.0e-6 at 1e-12, for 10-15% more evaluations; at $a \le 10^{-2}$ atol 1e-12
    would cost 13-25% more, `benchmarks/bench_implicit_bias.py`).
    Its $\beta$ is compared with $\arg\min Q^D_a$ s.t. $X\beta = y$ from
    [`gradflow.implicit_bias_limit`][] (Newton on the strictly convex dual, to $10^{-12}$):
    the relative error passes at $10^{-6}$ for $D = 2$ and $10^{-5}$ for $D = 3$ (issue 24's
    goals).

    `scales`: the grid of init scales; one sequence for every depth, or a mapping depth ->
    sequence. The default runs $a = 10^{-3}, 10^{-2}, \dots, 10^2$ at both depths (at depth 3
    and $a = 10^{-3}$ the sparse teacher's flow converges only algebraically after its
    plateaus, the stop near $t = 2\cdot 10^9$; `"auto"`'s [`gradflow.BDF`][] gets there). A
    solve that ends at `max_steps` fails its point, its error counted infinite.

    Reported beside it, per $(D, a)$: the train loss reached (a fraction of the initial
    loss), the loss floor at the stop, the gradient evaluations (with the Jacobian-vector
    products of a stabilized solver, and BDF's Jacobians as one product per parameter), the
    solver `"auto"` chose and the stop time; and the
    $\ell_1$ and $\ell_2$ norms of the flow's limit against $a$, with those of
    $\arg\min Q^D_a$ on `num_predicted` scales and the two asymptotes (the minimum-$\ell_1$
    solution as $a \to 0$ by `scipy.optimize.linprog`, the minimum-$\ell_2$ one as
    $a \to \infty$ by least squares): the kernel-to-rich transition, drawn by
    [`gradflow.check.plot_implicit_bias`][].

    Hypotheses: a square loss, rows of $X$ linearly independent with $n < d$ (so
    $X\beta = y$ is underdetermined and solvable), and the theorem's init $u = v = a\mathbf 1$
    (built here).

    **Returns:** a [`gradflow.check.CheckReport`][].
    """
    start = time.perf_counter()
    if not (
        isinstance(lazy_atol, (int, float))
        and not isinstance(lazy_atol, bool)
        and math.isfinite(lazy_atol)
        and lazy_atol > 0
    ):
        raise ValueError(
            f"`lazy_atol` (the absolute tolerance at a > 1) must be a number > 0; got "
            f"{lazy_atol!r}."
        )
    stmt = statement()
    spec = as_named(spec)
    problem = spec.problem
    depths = tuple(int(d) for d in depths)
    if not depths or any(d not in _TOLERANCES for d in depths):
        raise ValueError(
            f"`depths` must be a non-empty tuple of depths in {sorted(_TOLERANCES)} (the depths "
            f"whose reference reaches 1e-12 over the scales); got {depths!r}."
        )
    grids = _scales_by_depth(scales, depths)
    listed = {str(d): g.tolist() for d, g in grids.items()}
    x = np.asarray(problem.inputs, dtype=float)
    loss = problem.loss
    square = isinstance(loss, SquareLoss) and loss.targets.ndim == 2 and loss.targets.shape[1] == 1
    hyps = [Hypothesis(stmt.hypotheses[0].split(" on ")[0], square, type(loss).__name__)]
    rank = int(np.linalg.matrix_rank(x)) if x.ndim == 2 else -1
    n, d = x.shape if x.ndim == 2 else (0, 0)
    hyps.append(
        Hypothesis(
            "rows of X linearly independent, n < d (underdetermined)",
            bool(rank == n and n < d),
            f"X is {n}x{d} of rank {rank}",
        )
    )
    hyps.append(Hypothesis(stmt.hypotheses[1], True, "u = v = a 1, built by the check"))
    if not all(h.holds for h in hyps):
        return problem_report(
            "implicit_bias", spec, start, hypotheses=hyps, settings=(("scales", listed),)
        )
    y = np.asarray(loss.targets[:, 0], dtype=float)
    l1_sol, l2_sol = _minimum_norm_solutions(x, y)
    estimates: list[tuple[str, float, str]] = [
        ("min ||beta||_1 s.t. X beta = y (a -> 0)", float(np.abs(l1_sol).sum()), "linprog"),
        ("||beta||_2 of the min-l1 solution", float(np.linalg.norm(l1_sol)), "linprog"),
        ("||beta||_1 of the min-l2 solution", float(np.abs(l2_sol).sum()), "lstsq"),
        ("min ||beta||_2 s.t. X beta = y (a -> inf)", float(np.linalg.norm(l2_sol)), "lstsq"),
    ]
    constants, curves = [], []
    # The prediction on one finer grid over every depth's scales (drawn where a depth's flow
    # was not run, too).
    lo = min(g[0] for g in grids.values())
    hi = max(g[-1] for g in grids.values())
    fine = np.geomspace(lo, hi, int(num_predicted))
    for depth in depths:
        model = DiagonalDifferenceNet(depth)
        scales = grids[depth]
        flow_l1, flow_l2, ref_l1, ref_l2 = [], [], [], []
        for a in scales:
            a = float(a)
            scaled = Problem(model, model.init(d, tau=a), problem.inputs, loss, alpha=1.0)
            sol = solve(
                scaled,
                t1=math.inf,
                rtol=rtol,
                atol=lazy_atol if a > 1 else atol,
                stop_loss=stop_loss,
                max_steps=max_steps,
                linearized=False,
                save_params=True,
            )
            evals = int(sol.stats["num_vector_field_evals"]) + int(
                sol.stats.get("num_jvp_evals", 0)
            )
            last = jax.tree_util.tree_map(lambda p: p[-1], sol.params)
            beta = np.asarray(model.beta(last), dtype=float)
            ref = implicit_bias_limit(x, y, a, depth=depth).beta
            error = float(np.linalg.norm(beta - ref) / np.linalg.norm(ref))
            reached = float(sol.loss[-1] / sol.loss[0])
            floor = float(sol.stats["stop_floor"])
            tag = f"D={depth}, a={a:g}"
            constants.append(
                constant_check(
                    f"{tag}: limit vs argmin Q_a (rel.)",
                    0.0,
                    error if sol.succeeded else math.inf,
                    _TOLERANCES[depth],
                    note=f"{sol.info.solver}, {evals} evaluations, loss {reached:.1e} of the "
                    f"initial (floor {floor:.1e}), {sol.result}",
                )
            )
            estimates += [
                (f"train loss reached / initial, {tag}", reached, "the solve's last save"),
                (f"loss floor at the stop / initial, {tag}", floor, "stats['stop_floor']"),
                (f"gradient evaluations, {tag}", float(evals), f"{sol.info.solver}, with JVPs"),
                (f"stop time, {tag}", float(sol.stats["stop_time"]), "stats['stop_time']"),
            ]
            flow_l1.append(np.abs(beta).sum())
            flow_l2.append(np.linalg.norm(beta))
            ref_l1.append(np.abs(ref).sum())
            ref_l2.append(np.linalg.norm(ref))
        predicted = [implicit_bias_limit(x, y, float(a), depth=depth).beta for a in fine]
        for norm, flow, ref, line in (
            ("l1", flow_l1, ref_l1, [np.abs(b).sum() for b in predicted]),
            ("l2", flow_l2, ref_l2, [np.linalg.norm(b) for b in predicted]),
        ):
            curves.append(
                Curve(f"{norm} norm, D={depth}", math.nan, scales, np.array(flow), np.array(ref))
            )
            # The prediction alone, on a finer grid of scales (measured = predicted).
            line = np.asarray(line)
            curves.append(Curve(f"{norm} norm, D={depth}, argmin Q_a", math.nan, fine, line, line))
    return problem_report(
        "implicit_bias",
        spec,
        start,
        hypotheses=hyps,
        constants=constants,
        estimates=estimates,
        curves=curves,
        settings=(
            ("scales", listed),
            ("depths", list(depths)),
            ("rtol", rtol),
            ("atol", atol),
            ("lazy_atol", lazy_atol),
            ("stop_loss", stop_loss),
            ("max_steps", max_steps),
            ("solver", "auto"),
            ("t1", "inf"),
        ),
    )


def plot_implicit_bias(report: CheckReport) -> Any:
    """The figure of an implicit-bias report: the $\\ell_1$ and $\\ell_2$ norms of the flow's
    limit against the init scale $a$ (markers) with those of $\\arg\\min Q^D_a$ (lines) and the
    asymptotes (the minimum-$\\ell_1$ solution's as $a \\to 0$, the minimum-$\\ell_2$ one's as
    $a \\to \\infty$), and the relative error of the limit with its tolerance.

    **Returns:** the matplotlib `Figure`.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18.0, 5.2), constrained_layout=True)
    est = {name: value for name, value, _ in report.estimates}
    colors = {2: "tab:blue", 3: "tab:red"}
    asymptotes = {
        "l1": (
            est.get("min ||beta||_1 s.t. X beta = y (a -> 0)"),
            est.get("||beta||_1 of the min-l2 solution"),
        ),
        "l2": (
            est.get("||beta||_2 of the min-l1 solution"),
            est.get("min ||beta||_2 s.t. X beta = y (a -> inf)"),
        ),
    }
    for ax, norm in zip(axes[:2], ("l1", "l2")):
        for c in report.curves:
            if not c.quantity.startswith(f"{norm} norm"):
                continue
            depth = int(c.quantity.split("D=")[1].split(",")[0])
            color = colors.get(depth, "k")
            if c.quantity.endswith("argmin Q_a"):
                ax.semilogx(c.ts, c.predicted, "-", color=color, label=f"argmin Q_a, D={depth}")
            else:
                ax.semilogx(c.ts, c.measured, "o", color=color, ms=7, mfc="none",
                            label=f"flow's limit (t1=inf), D={depth}")  # fmt: skip
        rich, kernel = asymptotes[norm]
        if rich is not None:
            ax.axhline(rich, color="k", ls=":", label="min-l1 solution (a -> 0)")
        if kernel is not None:
            ax.axhline(kernel, color="k", ls="--", label="min-l2 solution (a -> inf)")
        ax.set_xlabel("init scale a (alpha = a^D)")
        ax.set_ylabel(f"||beta||_{norm[1]}")
        ax.set_title(f"{report.problem}: the {norm} norm of the limit", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for depth, color in colors.items():
        rows = [c for c in report.constants if c.quantity.startswith(f"D={depth},")]
        if not rows:
            continue
        a = np.array([float(c.quantity.split("a=")[1].split(":")[0]) for c in rows])
        err = np.array([c.measured for c in rows])
        done = np.isfinite(err)
        ax.loglog(a[done], err[done], "o-", color=color, label=f"relative error, D={depth}")
        tol = rows[0].tolerance
        ax.axhline(tol, color=color, ls=":", label=f"tolerance {tol:g}")
        if not done.all():
            # A solve that did not reach its stop (max_steps): drawn on its tolerance line.
            ax.loglog(a[~done], np.full((~done).sum(), tol), "x", color=color, ms=12, mew=2,
                      label=f"not converged, D={depth}")  # fmt: skip
    ax.set_xlabel("init scale a")
    ax.set_ylabel("||beta(inf) - argmin Q_a|| / ||argmin Q_a||")
    ax.set_title(f"{report.problem}: the flow's limit\nverdict: {report.verdict}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


THEOREM = Theorem(
    name="implicit_bias",
    statement=statement,
    summary="the flow's limit (t1=inf) of diagonal nets is argmin Q_a, depth 2 and 3, "
    "a = 1e-3..1e2 (depth 3 from 1e-2)",
    check=check_implicit_bias,
    problems=lambda: [diagonal_regression(t) for t in TEACHERS],
    # No research size: the default problems are the grid already (two instances,
    # depth 2 at a = 1e-3 ... 1e2, depth 3 from 1e-2: DEFAULT_SCALES).
    plot=plot_implicit_bias,
)
