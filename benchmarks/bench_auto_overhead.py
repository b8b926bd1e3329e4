r"""What `solver="auto"` costs on top of the solve it chooses, and gradflow against scipy's RK45.

`solver="auto"` (the default of `gf.solve`) estimates $\lambda_{\max}$ of the Hessian of
$F_\alpha$ at $w_0$ (Hessian-vector products) before it solves. This script measures, in one
process, warm (everything compiled first), best of `--repeats` runs taken round-robin:

1. On the flow of issue 22, a compute-bound smooth flow: a centered (`center=True`)
   `TwoLayer(500, "tanh")` net ($1/\sqrt m$ output), n = 200, d = 5, $\alpha = 100$, T = 20,
   10 save times ($2, 4, \dots, 20$), rtol 1e-7, atol 1e-10, `linearized=False`:

   - `Tsit5 given`: `gf.solve(..., solver=diffrax.Tsit5())`, the baseline;
   - `auto, repeated`: `gf.solve(problem, ...)` on the problem solved before (a notebook cell run
     twice, a sweep over `t1`);
   - `auto, first warm call`: `gf.solve` on a problem of the same shapes never solved before (a
     new initialization each run, so compiled programs are reused but no earlier estimate is);
   - `estimate alone`: `gf.stiffness` on such a new problem;
   - `old estimate alone`: the estimate `auto` made before issue 22 (20 power iterations on
     Hessian-vector products, compiled once per shape, no cache), rebuilt here from the operator
     layer, on such a new problem. `auto` paid it on every call: `Tsit5 given` plus this is the
     "before" of every ratio below, measured in the same process as the "after".

   And the estimates counted during the repeated solves (0 means no second estimate).

2. The same first-call cost, `gf.stiffness` (and the old estimate) on a new problem over the
   solve `auto` picks, on the flows of `benchmarks/bench_work_precision.py` (`lazy`, `smooth`,
   `relu`) at the tolerances `--wp-rtols` (`--relu-rtols` for the ReLU flow).

3. The issue's flow against `scipy.integrate.solve_ivp(method="RK45")` driving the same jitted
   gradient in the same scaled coordinates $z = \alpha (w - w_0)$ that `gf.solve` integrates
   (atol = rtol / 1000 for both, as in the issue). Error: the output-space path error
   $\max_{t \in ts} \|\alpha h(w(t)) - \alpha h(w_{ref}(t))\|_F$ (empirical norm over the training
   inputs) against `gf.solve` Tsit5 at rtol 1e-12, atol 1e-14. Matched error: scipy's time at
   gradflow's error, interpolated log-log between the two scipy tolerances whose errors bracket it
   (scipy at rtols `--scipy-rtols`); "at or below" is the cheapest scipy run reaching that error.
   The ratio is scipy seconds / gradflow seconds (above 1: gradflow faster), for `auto` solving
   its problem again (cached estimate), on a first call (plus the estimate), and before (plus
   the old estimate).

4. The estimate's accuracy over random starts against numpy's eigenvalues of the dense Hessian
   (`--accuracy-starts`), and the old estimate's on the same starts.

Run: `python benchmarks/bench_auto_overhead.py [--repeats 7] [--flows lazy,smooth,relu]
[--skip issue,wp,scipy,accuracy] [--json PATH]` (about 6 minutes on 2 cores, 1.5 of them for
the accuracy section).
"""

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import numpy as np
import scipy.integrate
from jax.flatten_util import ravel_pytree

import gradflow as gf

sys.path.insert(0, str(Path(__file__).parent))
from bench_work_precision import lazy_flow, relu_flow, smooth_flow  # noqa: E402

# The module of `gf.stiffness`, wherever the package keeps it: the script also runs on earlier
# commits (`PYTHONPATH` to an export of one), for numbers before and after a change.
_auto = sys.modules[gf.stiffness.__module__]

T1 = 20.0
TS = np.linspace(2.0, T1, 10)
RTOL, ATOL = 1e-7, 1e-10


def issue_problem(seed: int = 0) -> gf.Problem:
    """The flow of issue 22; `seed` changes the initialization only (same data, same shapes)."""
    kx, kt = jax.random.split(jax.random.PRNGKey(0))
    x = gf.data.uniform_sphere(kx, 200, 5)
    y = gf.data.teacher_targets(kt, x)
    model = gf.models.TwoLayer(500, "tanh")
    params = model.init(jax.random.PRNGKey(1000 + seed), 5)
    return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=100.0, center=True)


class Counter:
    """Counts the stiffness estimates `solver="auto"` makes (calls of
    `_lambda_max` in the module of `gf.stiffness`, the compiled estimate)."""

    def __init__(self):
        self.calls = 0
        self.inner = _auto._lambda_max

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def old_estimate() -> Callable[[gf.Problem], float]:
    """The stiffness estimate of `solver="auto"` before issue 22: 20 power iterations (norm
    estimate) on Hessian-vector products from one start, in one compiled program per shape."""
    ops = sys.modules[_auto.hessian.__module__]
    flatten = sys.modules[gf.Problem.__module__]._flatten

    @eqx.filter_jit
    def lam(problem):
        flat = flatten(problem, linearize=False)
        op = ops.hessian(lambda w: problem.objective(flat.unravel(w)), flat.w0)
        v0 = ops.unit_normal(jax.random.PRNGKey(0), flat.w0)
        return ops.power_iteration(op, v0, num_iters=20, rtol=None, estimate="norm").value

    return lambda problem: float(lam(problem))


def round_robin(cases: dict[str, Callable[[int], Any]], repeats: int) -> dict[str, float]:
    """Best time of each case over `repeats` rounds; each case's `i`-th call gets `i` (to pick a
    new problem)."""
    best = dict.fromkeys(cases, float("inf"))
    for i in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(i))
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def issue_overhead(args, log) -> dict[str, Any]:
    problem = issue_problem()
    kw = dict(t1=T1, ts=TS, rtol=RTOL, atol=ATOL, linearized=False)
    # New problems of the same shapes (new initializations): one per run of each case that
    # must not find an earlier estimate.
    fresh = [issue_problem(seed) for seed in range(1, args.repeats + 1)]
    others = iter([issue_problem(seed) for seed in range(200, 200 + args.repeats)])
    olds = iter([issue_problem(seed) for seed in range(300, 300 + args.repeats)])
    old = old_estimate()
    # Compile everything outside the timing (the estimates' programs, both solves).
    gf.solve(problem, **kw)
    gf.solve(problem, solver=dfx.Tsit5(), **kw)
    gf.stiffness(issue_problem(args.repeats + 1))
    old(problem)
    counter = Counter()
    _auto._lambda_max = counter
    try:
        for t1 in (5.0, 10.0, T1):  # a sweep over t1, ending with the call solved above
            gf.solve(problem, **{**kw, "t1": t1, "ts": TS * t1 / T1})
        repeat_estimates = counter.calls
        counter.calls = 0
        cases = {
            "Tsit5 given": lambda i: gf.solve(problem, solver=dfx.Tsit5(), **kw).loss,
            "auto, repeated": lambda i: gf.solve(problem, **kw).loss,
            "auto, first warm call": lambda i: gf.solve(fresh[i], **kw).loss,
            "estimate alone (new problem)": lambda i: gf.stiffness(next(others)),
            "old estimate alone (new problem)": lambda i: old(next(olds)),
        }
        best = round_robin(cases, args.repeats)
        first_estimates = counter.calls
    finally:
        _auto._lambda_max = counter.inner
    sol = gf.solve(problem, **kw)
    tsit5 = gf.solve(problem, solver=dfx.Tsit5(), **kw)
    info = {"solver": sol.info.solver, "stiffness": sol.info.stiffness}
    base = best["Tsit5 given"]
    log(
        f"== issue 22 flow: centered TwoLayer(500, tanh), n=200, d=5, alpha=100, T={T1:g}, "
        f"{len(TS)} save times, rtol {RTOL:g}, atol {ATOL:g}, linearized=False; "
        f"{problem.num_params} parameters"
    )
    log(
        f"  auto picks {info['solver']} (lambda_max * t1 = {info['stiffness']:.3g}); "
        f"evaluations: auto {int(sol.stats['num_vector_field_evals'])}, "
        f"Tsit5 {int(tsit5.stats['num_vector_field_evals'])}"
    )
    before = base + best["old estimate alone (new problem)"]
    log(f"  {'case':<34} {'best s':>9} {'/ Tsit5 given':>14}")
    for name, sec in best.items():
        log(f"  {name:<34} {sec:>9.4f} {sec / base:>14.3f}")
    log(f"  {'before: Tsit5 given + old estimate':<34} {before:>9.4f} {before / base:>14.3f}")
    log(
        f"  estimates made by 3 more solves of the problem solved above (t1 = 5, 10, 20): "
        f"{repeat_estimates} (goal: 0)"
    )
    log(
        f"  estimates made by {args.repeats} rounds of the cases on new problems: "
        f"{first_estimates} (goal: {2 * args.repeats})"
    )
    return {
        "seconds": best,
        "ratios_to_tsit5": {k: v / base for k, v in best.items()},
        "estimate_over_solve": best["estimate alone (new problem)"] / base,
        "old_estimate_over_solve": best["old estimate alone (new problem)"] / base,
        "estimates_in_repeated_solves": repeat_estimates,
        "auto": info,
    }


def wp_overhead(args, log) -> dict[str, Any]:
    builders = {"lazy": lazy_flow, "smooth": smooth_flow, "relu": lambda: relu_flow(1000)}
    out = {}
    old = old_estimate()
    log(
        "== first warm call on the work-precision flows: estimate / solve (a new problem each "
        "run), now and before"
    )
    log(
        f"  {'flow':<7} {'rtol':>7} {'auto':>6} {'evals':>6} {'solve s':>9} {'estimate s':>11} "
        f"{'old estimate s':>15} {'estimate/solve':>15} {'before':>7}"
    )
    for name in args.flows:
        flow = builders[name]()
        base = flow.problem
        # New problems of the same shapes: the initialization scaled by 1 + k * 1e-3.
        rtols = args.relu_rtols if name == "relu" else args.wp_rtols
        count = len(rtols) * args.repeats + 1
        fresh = iter([eqx_scale(base, 1.0 + 1e-3 * k) for k in range(1, count + 1)])
        olds = iter([eqx_scale(base, 1.0 - 1e-3 * k) for k in range(1, count + 1)])
        gf.stiffness(next(fresh))  # compile the estimates
        old(next(olds))
        for rtol in rtols:
            kw = dict(t1=flow.t1, ts=flow.ts, rtol=rtol, atol=rtol / 100, linearized=False)
            chosen = gf.choose_solver(base, rtol, flow.t1)
            gf.solve(base, solver=chosen, **kw)  # compile
            cases = {
                "solve": lambda i: gf.solve(base, solver=chosen, **kw).loss,
                "estimate": lambda i: gf.stiffness(next(fresh)),
                "old estimate": lambda i: old(next(olds)),
            }
            best = round_robin(cases, args.repeats)
            evals = int(gf.solve(base, solver=chosen, **kw).stats["num_vector_field_evals"])
            ratio = best["estimate"] / best["solve"]
            before = best["old estimate"] / best["solve"]
            log(
                f"  {name:<7} {rtol:>7g} {type(chosen).__name__:>6} {evals:>6} "
                f"{best['solve']:>9.4f} {best['estimate']:>11.4f} {best['old estimate']:>15.4f} "
                f"{ratio:>15.3f} {before:>7.3f}"
            )
            out[f"{name} rtol={rtol:g}"] = {
                "solver": type(chosen).__name__,
                "evals": evals,
                "solve_seconds": best["solve"],
                "estimate_seconds": best["estimate"],
                "old_estimate_seconds": best["old estimate"],
                "estimate_over_solve": ratio,
                "old_estimate_over_solve": before,
            }
    return out


def eqx_scale(problem: gf.Problem, factor: float) -> gf.Problem:
    """The problem with its initialization scaled (same shapes, other values)."""
    params = jax.tree_util.tree_map(lambda x: x * factor, problem.params0)
    return gf.Problem(
        problem.apply,
        params,
        problem.inputs,
        problem.loss,
        alpha=problem.alpha,
        center=problem.center,
    )


def path_error(outputs: np.ndarray, ref: np.ndarray) -> float:
    diff = (np.asarray(outputs) - ref).reshape(ref.shape[0], ref.shape[1], -1)
    return float(np.max(np.sqrt(np.mean(np.sum(diff**2, -1), -1))))


def scipy_comparison(args, log) -> dict[str, Any]:
    problem = issue_problem()
    w0, unravel = ravel_pytree(problem.params0)
    alpha = problem.alpha

    @jax.jit
    def outputs(w_flat):
        return jax.vmap(lambda w: alpha * problem.h(unravel(w)))(w_flat)

    @jax.jit
    def velocity(z):
        # dz/dt = -alpha grad F_alpha(w0 + z / alpha): the field gf.solve integrates.
        return -alpha * jax.grad(lambda v: problem.objective(unravel(v)))(w0 + z / alpha)

    def flat(params_t):
        return np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(params_t))

    def gf_run(rtol, atol, solver="auto", save_params=False):
        return gf.solve(
            problem,
            t1=T1,
            ts=TS,
            solver=solver,
            rtol=rtol,
            atol=atol,
            linearized=False,
            save_params=save_params,
            max_steps=10**6,
        )

    ref_sol = gf_run(1e-12, 1e-14, dfx.Tsit5(), save_params=True)
    ref = np.asarray(outputs(flat(ref_sol.params)))
    check = gf_run(1e-12, 1e-14, dfx.Dopri8(), save_params=True)
    ref_err = path_error(outputs(flat(check.params)), ref)

    def scipy_run(rtol):
        count = [0]

        def f(t, z):
            del t
            count[0] += 1
            return np.asarray(velocity(z))

        res = scipy.integrate.solve_ivp(
            f, (0.0, T1), np.zeros_like(w0), method="RK45", t_eval=TS, rtol=rtol, atol=rtol / 1000
        )
        assert res.success, res.message
        return res, count[0]

    velocity(np.zeros_like(w0)).block_until_ready()
    gf_rtols = args.gf_rtols
    for rtol in gf_rtols:
        gf_run(rtol, rtol / 1000)
    cases: dict[str, Callable[[int], Any]] = {}
    for rtol in gf_rtols:
        cases[f"gf auto rtol={rtol:g}"] = lambda i, r=rtol: gf_run(r, r / 1000).loss
    for rtol in args.scipy_rtols:
        cases[f"scipy RK45 rtol={rtol:g}"] = lambda i, r=rtol: scipy_run(r)[0].y
    # What a first call adds: the estimate on a problem of the same shapes not seen before.
    # and what it added before, the old estimate on every call.
    fresh = iter([issue_problem(seed) for seed in range(100, 101 + args.repeats)])
    olds = iter([issue_problem(seed) for seed in range(400, 401 + args.repeats)])
    old = old_estimate()
    gf.stiffness(issue_problem(99))
    old(issue_problem(98))
    cases["estimate (new problem)"] = lambda i: gf.stiffness(next(fresh))
    cases["old estimate (new problem)"] = lambda i: old(next(olds))
    best = round_robin(cases, args.repeats)
    estimate, old_seconds = best["estimate (new problem)"], best["old estimate (new problem)"]
    points = {}
    for rtol in gf_rtols:
        sol = gf_run(rtol, rtol / 1000, save_params=True)
        points[f"gf auto rtol={rtol:g}"] = {
            "error": path_error(outputs(flat(sol.params)), ref),
            "evals": int(sol.stats["num_vector_field_evals"]),
            "seconds": best[f"gf auto rtol={rtol:g}"],
        }
    for rtol in args.scipy_rtols:
        res, evals = scipy_run(rtol)
        w = np.asarray(w0)[None] + res.y.T / float(alpha)
        points[f"scipy RK45 rtol={rtol:g}"] = {
            "error": path_error(outputs(w), ref),
            "evals": evals,
            "seconds": best[f"scipy RK45 rtol={rtol:g}"],
        }
    log(
        "== issue 22 flow against scipy RK45 (same jitted gradient); path error against Tsit5 "
        f"rtol 1e-12 (its distance to Dopri8 rtol 1e-12: {ref_err:.1e})"
    )
    log(f"  {'run':<26} {'evals':>6} {'best s':>8} {'path error':>11}")
    for name, p in points.items():
        log(f"  {name:<26} {p['evals']:>6} {p['seconds']:>8.4f} {p['error']:>11.2e}")
    scipy_pts = sorted(
        (p["error"], p["seconds"]) for k, p in points.items() if k.startswith("scipy")
    )
    ratios = {}
    log(
        f"  {'gf auto':<14} {'its error':>10} {'RK45 s / gf s: again':>21} {'at or below':>12} "
        f"{'first call':>11} {'before':>7}"
    )
    for rtol in gf_rtols:
        p = points[f"gf auto rtol={rtol:g}"]
        interp = interpolate(scipy_pts, p["error"])
        below = min((s for e, s in scipy_pts if e <= p["error"]), default=float("nan"))
        ratios[f"rtol={rtol:g}"] = {
            "error": p["error"],
            "interpolated": interp / p["seconds"],
            "at_or_below": below / p["seconds"],
            "interpolated_first_call": interp / (p["seconds"] + estimate),
            "interpolated_before": interp / (p["seconds"] + old_seconds),
        }
        r = ratios[f"rtol={rtol:g}"]
        log(
            f"  rtol={rtol:<9g} {p['error']:>10.2e} {r['interpolated']:>21.2f} "
            f"{r['at_or_below']:>12.2f} {r['interpolated_first_call']:>11.2f} "
            f"{r['interpolated_before']:>7.2f}"
        )
    log(
        f"  (again: the problem solved before, its estimate cached; first call: plus the estimate "
        f"on a new problem, {estimate:.4f} s; before: plus the old estimate, {old_seconds:.4f} s; "
        "interpolated at gf's error but for 'at or below')"
    )
    return {
        "reference_error": ref_err,
        "estimate_seconds": estimate,
        "old_estimate_seconds": old_seconds,
        "points": points,
        "ratios": ratios,
    }


def interpolate(points: list[tuple[float, float]], error: float) -> float:
    """Seconds at `error`, log-log between the two bracketing (error, seconds) points."""
    for (e_lo, s_lo), (e_hi, s_hi) in zip(points, points[1:]):
        if e_lo <= error <= e_hi:
            if e_hi == e_lo:
                return min(s_lo, s_hi)
            w = np.log(error / e_lo) / np.log(e_hi / e_lo)
            return float(np.exp((1 - w) * np.log(s_lo) + w * np.log(s_hi)))
    return float("nan")


def accuracy(args, log) -> dict[str, Any]:
    """The estimate's spread over random starts, against numpy's top eigenvalue of the dense
    Hessian: the iteration `gf.stiffness` runs (its tolerance, cap and number of starts), and the
    20 power iterations (norm estimate) it replaced, on the same starts."""
    import jax.numpy as jnp
    import lineax as lx

    rtol = getattr(_auto, "_LANCZOS_RTOL", None)
    if rtol is None:
        log("== accuracy: this gradflow has no Lanczos estimate; skipped")
        return {}
    operators = sys.modules[_auto.lanczos_largest.__module__]
    lanczos_largest, power_iteration = operators.lanczos_largest, operators.power_iteration
    cap, starts = _auto._LANCZOS_MAX_ITERS, _auto._LANCZOS_STARTS
    problems = {
        "issue": (issue_problem(), args.accuracy_starts // 5),
        "lazy": (lazy_flow().problem, args.accuracy_starts),
        "smooth": (smooth_flow().problem, args.accuracy_starts),
    }
    log(
        f"== accuracy over random starts: estimate / lambda_max (numpy eigvalsh of the dense "
        f"Hessian); Lanczos rtol {rtol:g}, {starts} starts, cap {cap}; against 20 power iterations"
    )
    log(
        f"  {'flow':<7} {'runs':>5} {'method':<16} {'P(< 0.95)':>10} {'P(< 0.9)':>9} "
        f"{'lowest':>7} {'mean HVPs':>10}"
    )
    out = {}
    for name, (problem, runs) in problems.items():
        w0, unravel = ravel_pytree(problem.params0)
        dense = jax.jit(jax.hessian(lambda v, p=problem, u=unravel: p.objective(u(v))))(w0)
        top = float(np.linalg.eigvalsh(np.asarray(dense))[-1])
        v = jax.random.normal(jax.random.PRNGKey(7), (runs, starts, w0.size))

        @jax.jit
        def lanczos_runs(v, dense=dense):
            one = lambda x: lanczos_largest(dense.__matmul__, x, max_iters=cap, rtol=rtol)  # noqa: E731
            res = jax.vmap(jax.vmap(one))(v)
            return jnp.max(res.value, axis=1), starts * jnp.max(res.steps, axis=1)

        @jax.jit
        def power_runs(v, dense=dense):
            op = lx.MatrixLinearOperator(dense)

            def one(x):
                x = x / jnp.linalg.norm(x)
                return power_iteration(op, x, num_iters=20, rtol=None, estimate="norm").value

            return jax.vmap(one)(v[:, 0])

        value, hvps = (np.asarray(a) for a in lanczos_runs(v))
        rows = {
            f"Lanczos x{starts}": (value / top, float(np.mean(hvps))),
            "power x20 (old)": (np.asarray(power_runs(v)) / top, 20.0),
        }
        for method, (ratio, mean_hvps) in rows.items():
            p95, p90 = float(np.mean(ratio < 0.95)), float(np.mean(ratio < 0.9))
            log(
                f"  {name:<7} {runs:>5} {method:<16} {p95:>10.4f} {p90:>9.4f} "
                f"{ratio.min():>7.3f} {mean_hvps:>10.1f}"
            )
            out[f"{name} {method}"] = {
                "runs": runs,
                "below_0.95": p95,
                "below_0.9": p90,
                "lowest": float(ratio.min()),
                "mean_hvps": mean_hvps,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="best of")
    parser.add_argument("--flows", default="lazy,smooth,relu")
    parser.add_argument("--wp-rtols", default="1e-4,1e-6,1e-8")
    parser.add_argument("--relu-rtols", default="1e-2,1e-3")
    parser.add_argument("--gf-rtols", default="1e-6,1e-7,1e-8")
    parser.add_argument(
        "--scipy-rtols", default="1e-5,3e-6,1e-6,3e-7,1e-7,3e-8,1e-8,3e-9,1e-9,3e-10"
    )
    parser.add_argument("--accuracy-starts", type=int, default=2000)
    parser.add_argument("--skip", default="", help="comma-separated: issue,wp,scipy,accuracy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.flows = [f for f in args.flows.split(",") if f]
    for name in ("wp_rtols", "relu_rtols", "gf_rtols", "scipy_rtols"):
        setattr(args, name, [float(v) for v in getattr(args, name).split(",") if v])
    skip = set(args.skip.split(","))

    def log(msg):
        print(msg, flush=True)

    log(
        f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}; "
        f"best of {args.repeats}, round-robin"
    )
    result: dict[str, Any] = {}
    if "issue" not in skip:
        result["issue"] = issue_overhead(args, log)
    if "wp" not in skip:
        result["work_precision_flows"] = wp_overhead(args, log)
    if "scipy" not in skip:
        result["scipy"] = scipy_comparison(args, log)
    if "accuracy" not in skip:
        result["accuracy"] = accuracy(args, log)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
