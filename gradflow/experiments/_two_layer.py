"""The paper's two-layer ReLU parameterization, mapped onto `gf.models.TwoLayer` and `gf.solve`.

The authors' code trains $f(x) = s \\sum_{j \\le m} b_j \\max(a_j \\cdot x, 0)$ on
$L(f) = \\frac{1}{2n} \\sum_i (f(x_i) - y_i)^2$ by gradient descent with step $\\eta / s$ on the
gradient computed without the factor $s$, i.e. $w \\leftarrow w - (\\eta / s^2) \\nabla_w L$. With
`TwoLayer(m, "relu", scaling="sqrt")`, whose output is $h(w) = m^{-1/2} \\sum_j b_j
\\max(a_j \\cdot x, 0)$, the paper's $f$ is $\\alpha h$ with $\\alpha = s \\sqrt m$ and
$F_\\alpha(w) = L(\\alpha h(w)) / \\alpha^2 = L(f) / (s^2 m)$, so the paper's update is gradient
descent on $F_\\alpha$ with learning rate $\\eta m$.
"""

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import models
from .._gd_flow import audit_gd
from .._losses import SquareLoss
from .._memory import ArraySize
from .._options import SolveOptions, decide
from .._problem import Problem
from .._solution import RESULTS
from .._solve import solve
from .._typing import Array, ArrayLike, Params
from ..analysis._closed_form import linear_flow_closed_form
from ..models.two_layer import init_neurons
from ..solvers._auto import batch_stiffness
from ..solvers._gradient_descent import GradientDescent

# The help of the experiments' `audit` option: what is measured of their gradient descent.
AUDIT_HELP = (
    "what is recorded of gradient descent against its flows (method=gd), on the first trial "
    "(the trials share the step): sharpness: eta * lambda_max at the saved iterates (at the "
    "paper's sizes about a third of one trial's GD time); full: also GD's output distance "
    "to the gradient flow and to its modified flow (Barrett & Dherin 2021) at the saved "
    "times (two flow solves: 15-450 s a Fig. 1c point, whose GD takes about 60 s); off: "
    "nothing"
)
AUDITS = ("full", "sharpness", "off")


def audit_option() -> Any:
    """The `audit` option of the experiments that run the paper's GD (`AUDIT_HELP`)."""
    from ._base import option

    return option("sharpness", AUDIT_HELP, choices=AUDITS)


def audit_rtol_option() -> Any:
    """The `audit_rtol` option: the tolerance of the audit's flow solves."""
    from ._base import option

    return option(
        1e-4,
        "relative tolerance of the audit's flow solves (audit=full); atol = audit_rtol / 100",
        within="[1e-12, 1)",
    )


def audit_max_steps_option() -> Any:
    """The `audit_max_steps` option: the step budget of the audit's flow solves."""
    from ._base import option

    return option(
        20_000,
        "step budget of each of the audit's flow solves; a flow that stops short (ReLU kinks) "
        "is reported, NaN after it",
        positive=True,
    )


def trial_batching_option() -> Any:
    """The `trial_batching` option: how `train_trials` solves a point's flows."""
    from ._base import option

    return option(
        "auto",
        "how a point's flows (method=flow) are solved: loop (one solve per trial, each its own "
        "solver choice and steps), vmap (the trials in one batched program, stepping in "
        "lockstep), auto (loop on CPU, vmap on an accelerator; the choice is recorded)",
        choices=("auto", "vmap", "loop"),
    )


# The help of the experiments' `method` option: how `train_trials` trains (each experiment adds
# its own further choices).
METHOD_HELP = (
    "gd: the paper's gradient descent; flow: the gradient flow over the same horizon "
    "(num_steps times the GD step), solved with solver='auto' (the stabilized RKC where the "
    "flow is stiff)"
)


def paper_model(width: int) -> models.TwoLayer:
    r"""The paper's two-layer ReLU net of `width` neurons as a
    [`gradflow.models.TwoLayer`][] with the $m^{-1/2}$ output scaling (the factor $s$ goes
    into $\alpha$, see [`gradflow.experiments.paper_alpha`][])."""
    return models.TwoLayer(width, "relu", scaling="sqrt")


def paper_alpha(width: int, output_scale: float) -> float:
    """$\\alpha = s \\sqrt m$: the scale at which `TwoLayer(..., "sqrt")` is the paper's net."""
    return float(output_scale) * float(np.sqrt(width))


def paper_learning_rate(width: int, step: float) -> float:
    """The learning rate on $F_\\alpha$ equivalent to the paper's step $\\eta$: $\\eta m$."""
    return float(step) * int(width)


def paper_output(params: Params, x: Array, output_scale: float) -> Array:
    """The paper's $f(x) = s \\sum_j b_j \\max(a_j \\cdot x, 0)$, written out (a reference)."""
    return output_scale * (jax.nn.relu(x @ params["a"].T) @ params["b"])


def paper_init(
    key: Array,
    width: int,
    dim: int,
    *,
    tau: float | Array = 1.0,
    input_init: Literal["normal", "sphere"] = "normal",
    output_init: Literal["normal", "uniform"] = "normal",
    doubled: bool = True,
) -> Params:
    """The authors' initializations: input weights $a_j \\sim N(0, I_d)$ (`"normal"`) or
    uniform on the unit sphere (`"sphere"`); output weights $N(0, 1)$ or $U(0, 1)$; with
    `doubled=True` (even `width`) neuron $j + m/2$ copies neuron $j$ with the opposite output
    weight, so $f(w_0) = 0$; everything times $\\tau$."""
    return init_neurons(
        key, width, dim, doubled=doubled, tau=tau, input_init=input_init, output_init=output_init
    )


def paper_problem(params: Params, x: Array, y: Array, output_scale: float) -> Problem:
    r"""The [`gradflow.Problem`][] of the paper's net $f = s \sum_j b_j \max(a_j \cdot x, 0)$
    with output scale $s$ = `output_scale`, from `params` (e.g.
    [`gradflow.experiments.paper_init`][]), on the square loss
    $\frac{1}{2n} \sum_i (f(x_i) - y_i)^2$: [`gradflow.experiments.paper_model`][] at
    $\alpha = s \sqrt m$."""
    width = params["a"].shape[-2]
    return Problem(
        paper_model(width), params, x, SquareLoss(y), alpha=paper_alpha(width, output_scale)
    )


def _train_options(
    width: int, step: float, num_steps: int, num_saves: int, solver: Any, rtol: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """The save iterations and the [`gradflow.solve`][] options of a training run over the
    paper's horizon: gradient descent (`solver=None`) or the flow with `solver` at `rtol`."""
    from ._base import log_spaced_steps

    eta = paper_learning_rate(width, step)
    iters = log_spaced_steps(int(num_steps), num_saves)
    if solver is None:
        kw: dict[str, Any] = {"solver": GradientDescent(eta)}
    else:
        kw = {"solver": solver, "rtol": rtol, "atol": rtol / 100, "max_steps": 1_000_000}
    kw.update(t1=int(num_steps) * eta, ts=iters * eta, linearized=False, save_params=True)
    return iters, kw


def _test_loss(problem: Problem, params_t: Params, x_test: Array, y_test: Array) -> Array:
    """The test loss of the scaled net at every saved parameter (a leading time axis)."""
    model = problem.apply
    return jax.vmap(lambda p: SquareLoss(y_test)(problem.alpha * model(p, x_test)))(params_t)


def _evaluations(stats: dict[str, Any]) -> Any:
    """Gradient evaluations of a solve, and for a stabilized solver its Jacobian-vector
    products too."""
    evals = stats.get("num_vector_field_evals", stats["num_steps"])
    return evals + stats.get("num_jvp_evals", 0)


def paper_train(
    problem: Problem,
    *,
    step: float,
    num_steps: int,
    x_test: Array,
    y_test: Array,
    num_saves: int = 80,
    solver: Any = None,
    rtol: float = 1e-4,
) -> dict[str, Array]:
    """Train over the paper's horizon, `num_steps` steps of `step` (in the paper's units):
    by the paper's gradient descent (`solver=None`), or as the gradient flow over the same time
    with the given diffrax solver at `rtol` (`atol = rtol / 100`). Train and test losses at
    about `num_saves` log-spaced iterations (times, for the flow). Runs under `jax.vmap`
    (batched problems and test sets); choose a flow's solver outside it
    ([`gradflow.choose_solver`][], which needs concrete problems to estimate stiffness). The
    experiments train their trials with `train_trials` on the same
    options instead.

    **Returns:** a dict with `iterations`, `train_loss`, `test_loss` (arrays over saves),
    `result` (the [`gradflow.RESULTS`][] code) and `evaluations` (gradients, and for a
    stabilized solver its Jacobian-vector products too).
    """
    width = problem.params0["a"].shape[-2]
    iters, kw = _train_options(width, step, num_steps, num_saves, solver, rtol)
    sol = solve(problem, **kw)
    return {
        "iterations": jnp.asarray(iters),
        "train_loss": sol.loss,
        "test_loss": _test_loss(problem, sol.params, x_test, y_test),
        "result": sol.result._value,
        "evaluations": _evaluations(sol.stats),
    }


def linear_baseline(
    problem: Problem, ts: ArrayLike, x_test: Array, y_test: Array
) -> dict[str, Array]:
    """The linearized model trained exactly (square loss, [`gradflow.linear_flow_closed_form`][])
    at the save times `ts` (the last is the horizon) and to convergence (`t = inf`: ridgeless
    regression with the tangent kernel at init), evaluated on the test set: the lazy limit a
    trained net's test loss is compared against. Runs under `jax.vmap` (batched problems and
    test sets).

    **Returns:** a dict with `test_loss` and `train_loss` (arrays over `ts`), `test_loss_end`,
    `test_loss_inf` (test losses at the horizon and at infinity) and `train_loss_end`.
    """
    times = jnp.concatenate([jnp.asarray(ts, problem.dtype).reshape(-1), jnp.array([jnp.inf])])
    outs, params = linear_flow_closed_form(problem, times)
    loss = SquareLoss(y_test)
    test = jax.vmap(lambda p: loss(problem.predict_linear(p, x_test)))(params)
    train = jax.vmap(problem.loss)(outs)
    return {
        "test_loss": test[:-1],
        "train_loss": train[:-1],
        "test_loss_end": test[-2],
        "test_loss_inf": test[-1],
        "train_loss_end": train[-2],
    }


def train_trials(
    build: Callable[[Array], tuple[Problem, Any]],
    keys: Array,
    *,
    step: float,
    num_steps: int,
    num_saves: int,
    method: Literal["gd", "flow", "linear"],
    rtol: float,
    baseline_at_saves: bool = False,
    audit: Literal["full", "sharpness", "off"] = "off",
    audit_rtol: float = 1e-4,
    audit_max_steps: int = 20_000,
    batching: Literal["auto", "vmap", "loop"] = "auto",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train every trial of one point of the paper's two-layer experiments (Fig. 1c, Fig. 2):
    by the paper's gradient descent (`method="gd"`), as the gradient flow over the same
    horizon (`"flow"`, `solver="auto"` at `rtol`, chosen once for the stiffest trial), or not
    at all (`"linear"`: the linearized model only); and the linearized model of each trial
    trained exactly ([`gradflow.experiments.linear_baseline`][]) at the horizon (and at every
    save time with `baseline_at_saves`).

    The trials' problems and data are built together with `jax.vmap` over `keys`, and solved
    with the options of [`gradflow.experiments.paper_train`][]:
    - gradient descent: together, one [`gradflow.solve`][] vmapped over the trials (one
      compiled program; every trial takes the same steps, so nothing waits);
    - flows, `batching="vmap"`: the same, `solver="auto"` chosen once from the stiffest trial.
      The adaptive steps are taken in lockstep: every trial steps until the slowest one
      finishes, with the batch's largest stage count at each step;
    - flows, `batching="loop"`: one solve per trial, each with its own `auto` choice (its own
      stiffness) and its own steps and stages, one compiled program per solver;
    - `batching="auto"` (default): `"loop"` on CPU, where on Fig. 1c's points (10 trials) it
      measured 1.8x and 3.8x faster than `"vmap"` at $\tau$ = 0.1 and 10 and 0.9x at 1, with
      the same gradients per trial (`benchmarks/bench_trial_batching.py`); `"vmap"` on an
      accelerator, where one batched program keeps the device busy.
    The choice is in the record (`flow["batching"]`). The test losses are computed from the
    stacked saved parameters. A trial whose solve ends unsuccessfully
    (gradient descent that diverges) has NaN losses in the record and is counted in
    `diverged_trials`; an error raises here (the experiment records the point as failed).
    The experiments run this as one [`gradflow.Computation`][] per point of
    [`gradflow.sweep`][].

    **Arguments:** `build(key) -> (problem, data)` makes one trial's problem and its
    `teacher_student` data from its key; `step`, `num_steps`, `num_saves` as in
    [`gradflow.experiments.paper_train`][]. With `method="gd"`, `audit` says what is recorded
    of the first trial's gradient descent against its flows (`gd_audit`, the dict of
    `gradflow._gd_flow.GDAudit`): `"full"` solves the gradient flow and the
    modified flow from its $w_0$ at `audit_rtol` (`atol = audit_rtol / 100`, at most
    `audit_max_steps` steps each; a flow that stops short is reported with NaN distances
    after it), `"sharpness"` measures $\\eta\\,\\lambda_{\\max}$ at the saved iterates only,
    `"off"` nothing. The trials of a point share the step, so one trial stands for them.

    **Returns:** the record fields every such point stores (`test_loss_end`,
    `test_loss_best`, `train_loss_end` per trial, NaN for a diverged trial; `diverged_trials`,
    `method`, `flow` (the solver choice), `evaluations`, `linear_test_loss_end`,
    `linear_test_loss_inf`), and the paths (`iterations`, `test_loss`, `train_loss`: trials x
    saves).
    """
    if batching not in ("auto", "vmap", "loop"):
        raise ValueError(f"`batching` must be 'auto', 'vmap' or 'loop'; got {batching!r}.")
    width = eqx.filter_eval_shape(build, keys[0])[0].params0["a"].shape[-2]
    trials = len(keys)
    solver = None if method == "gd" else "auto"
    iters, options = _train_options(width, step, num_steps, num_saves, solver, rtol)
    baseline_ts = options["ts"] if baseline_at_saves else jnp.array([options["t1"]])

    def one_baseline(key):
        # Built inside the vmap, so that `alpha` stays one unbatched constant as it was
        # (a batched `alpha` moves `test_loss_inf` by an ulp).
        problem, d = build(key)
        return linear_baseline(problem, baseline_ts, d.x_test, d.y_test)

    linear = eqx.filter_vmap(one_baseline)(keys)
    flow: dict[str, Any] = {}
    gd_audit: dict[str, Any] | None = None
    if method == "linear":
        test, train = np.asarray(linear["test_loss"]), np.asarray(linear["train_loss"])
        ok, evaluations = np.ones(trials, dtype=bool), np.zeros(trials, dtype=int)
    else:
        problems, data = eqx.filter_vmap(build)(keys)
        dynamic, static = eqx.partition(problems, eqx.is_array)
        options = SolveOptions(**options)
        how = trial_batching(batching) if method == "flow" else "vmap"
        if how == "loop":
            # One solve per trial, each with its own `auto` choice: no trial waits for another.
            sols, choices = [], []
            for i in range(trials):
                one = eqx.combine(jax.tree_util.tree_map(lambda x: x[i], dynamic), static)
                choice = decide(one, options)
                choices.append(choice)
                one_sol = solve(one, options=options.replace(solver=choice.solver))
                sols.append(jax.tree_util.tree_map(np.asarray, one_sol))
            sol = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *sols)
            names = [type(c.solver).__name__ for c in choices]
            flow = {
                "solver": names[0] if len(set(names)) == 1 else ",".join(names),
                "solver_reason": choices[0].reason + " (each trial its own choice)",
                "stiffness": max(
                    (c.stiffness for c in choices if c.stiffness is not None), default=None
                ),
                "rtol": rtol,
                "batching": how,
            }
        else:
            if method == "flow":
                # `solver="auto"` decides once for the batch, outside the vmapped solve (where
                # the problems are traced), from its stiffest trial.
                first = eqx.combine(jax.tree_util.tree_map(lambda x: x[0], dynamic), static)
                choice = decide(first, options, batch_stiffness(dynamic, static))
                options = options.replace(solver=choice.solver)
                flow = {
                    "solver": type(choice.solver).__name__,
                    "solver_reason": choice.reason + " (the stiffest trial)",
                    "stiffness": choice.stiffness,
                    "rtol": rtol,
                    "batching": how,
                }
            # The trials in lockstep: one program, vmapped over the trials (adaptive steps are
            # taken together, so a trial's path is its own solve's to the tolerance).
            sol = jax.vmap(lambda d: solve(eqx.combine(d, static), options=options))(dynamic)
            sol = jax.tree_util.tree_map(np.asarray, sol)
        test_loss = eqx.filter_vmap(_test_loss)
        test = np.asarray(test_loss(problems, sol.params, data.x_test, data.y_test))
        train = np.asarray(sol.loss, dtype=float)
        # A diverged trial keeps its losses up to the divergence in the paths.
        ok = np.asarray(sol.result._value) == int(RESULTS.successful._value)
        evaluations = np.asarray(_evaluations(sol.stats)).astype(int)
        if method == "gd" and audit != "off":
            gd_audit = _audit_first_trial(
                build, keys[0], sol.params, iters, options, audit, audit_rtol, audit_max_steps
            )
    record = {
        "test_loss_end": np.where(ok, test[:, -1], np.nan),
        "test_loss_best": np.where(ok, np.nanmin(test, axis=1), np.nan),
        "train_loss_end": np.where(ok, train[:, -1], np.nan),
        "diverged_trials": int(np.sum(~ok)),
        "method": method,
        "flow": flow,
        "evaluations": evaluations,
        "linear_test_loss_end": np.asarray(linear["test_loss_end"]),
        "linear_test_loss_inf": np.asarray(linear["test_loss_inf"]),
    }
    if gd_audit is not None:
        record["gd_audit"] = gd_audit
    paths = {"iterations": np.asarray(iters), "test_loss": test, "train_loss": train}
    return record, paths


def _audit_first_trial(
    build: Callable[[Array], tuple[Problem, Any]],
    key: Array,
    params: Params,
    iters: np.ndarray,
    options: SolveOptions,
    audit: str,
    rtol: float,
    max_steps: int,
) -> dict[str, Any]:
    """The GD audit of the trial built from `key` (the first), from its saved parameters (the
    first row of the trials' `params`)."""
    if audit not in AUDITS:
        raise ValueError(f"`audit` must be one of {AUDITS}; got {audit!r}.")
    problem, data = build(key)
    first = jax.tree_util.tree_map(lambda x: x[0], params)
    result = audit_gd(
        problem,
        first,
        iters,
        options.solver.learning_rate,
        rtol=rtol,
        max_steps=max_steps,
        test=(data.x_test, data.y_test),
        flows=audit == "full",
    )
    return {"trial": 0, **result.to_dict()}


def audit_row(record: dict[str, Any]) -> dict[str, Any]:
    """The columns of a summary row from a point's `gd_audit` (empty without one): the largest
    and the final $\\eta\\,\\lambda_{\\max}$, whether GD reached the edge of stability, the
    largest output distance to the flow and to the modified flow over the saves (over the
    targets' norm), and the flow's end test loss relative to GD's."""
    audit = record.get("gd_audit")
    if not audit:
        return {}
    losses = audit["test_loss_end"]
    gd, flow = losses.get("gd"), losses.get("flow")
    return {
        "gd_max_eta_sharpness": audit["max_eta_sharpness"],
        "gd_final_eta_sharpness": audit["final_eta_sharpness"],
        "gd_edge_of_stability": audit["edge_of_stability"],
        "gd_flow_distance": audit["max_relative_flow_distance"],
        "gd_modified_distance": audit["max_relative_modified_distance"],
        "gd_flow_test_loss_gap": None if gd is None or flow is None else flow / gd - 1.0,
        # How each flow ended, in its first clause ("The solver took `max_steps` steps ...").
        "gd_flow_results": [
            r.split(",")[0] for r in (audit["flow_result"], audit["modified_result"])
        ],
    }


def trial_batching(batching: Literal["auto", "vmap", "loop"]) -> Literal["vmap", "loop"]:
    """How `train_trials` solves a point's flows: `batching` itself,
    or for `"auto"`, `"loop"` (one solve per trial) on CPU and `"vmap"` (the trials in one
    batched program) on an accelerator."""
    if batching != "auto":
        return batching
    return "loop" if jax.default_backend() == "cpu" else "vmap"


def num_saves_at_least(num_steps: int, num_saves: int) -> int:
    """How many iterates [`gradflow.experiments.log_spaced_steps`][] saves (the log-spaced
    grid, capped at 10^5 requested points so that counting them allocates little)."""
    from ._base import log_spaced_steps

    return len(log_spaced_steps(int(num_steps), min(int(num_saves), 100_000)))


def trials_arrays(
    *,
    n_train: int,
    n_test: int,
    dim: int,
    width: int,
    trials: int,
    num_steps: int,
    num_saves: int,
    names: dict[str, str],
) -> list[ArraySize]:
    """The largest arrays of one point of `train_trials` (its trials
    batched with `jax.vmap`), for an experiment's `largest_arrays`: each trial's tangent kernel
    and its eigenvectors (the exact linearized baseline, $2 n^2$), its data, its hidden
    pre-activations and its saved parameters, and the grid of saved iterations. `names` maps
    `n_train`, `n_test`, `dim`, `width`, `trials` and `num_saves` to the experiment's option
    names."""
    n, nt, d, m, t = (int(v) for v in (n_train, n_test, dim, width, trials))
    saves = num_saves_at_least(num_steps, num_saves)
    o = names
    return [
        ArraySize(
            "the tangent kernel of the exact linearized baseline and its eigenvectors, "
            f"2 x {o['n_train']}^2 per trial",
            2 * n * n * t,
            (o["n_train"], o["trials"]),
        ),
        ArraySize(
            f"the data, ({o['n_train']} + {o['n_test']}) x {o['dim']} per trial",
            (n + nt) * d * t,
            (o["n_train"], o["n_test"], o["dim"], o["trials"]),
        ),
        ArraySize(
            f"the hidden pre-activations, {o['n_train']} x {o['width']} per trial",
            n * m * t,
            (o["width"], o["n_train"], o["trials"]),
        ),
        ArraySize(
            f"the saved parameters, {saves} saves x {o['width']} x ({o['dim']} + 1) per trial",
            saves * m * (d + 1) * t,
            (o["width"], o["num_saves"], o["dim"], o["trials"]),
        ),
        ArraySize(
            f"the grid of saved iterations, {o['num_saves']}", int(num_saves), (o["num_saves"],)
        ),
    ]
