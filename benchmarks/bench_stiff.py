r"""Work-precision on the stiff gradient flows: the stabilized `gf.RKC` and `gf.ROCK2` against the
paper's gradient descent, explicit Runge-Kutta, and scipy's RK45, BDF and LSODA.

Flows (one trial each):

- `tau<T>`: the paper's Fig. 1c flow (d = 100, n = 1000, m = 50, ReLU, doubled init times
  $\tau$, key as in `bench_fig1c.py`) over the paper's horizon, 1e4 steps of the paper step
  $\min(10, 0.1/\tau^2)$: $t_1 = 10^4 \eta$, $\eta$ = `paper_learning_rate(50, step)`;
- `lazy`: a two-layer tanh net at $\alpha = 100$ (doubled init; n = 100, d = 5, m = 200, as
  `lazy` in `bench_work_precision.py`), over a horizon $T$ with $\lambda_{\max}(w_0) T$ =
  `--lazy-stiffness` (3e3), with $\lambda_{\max}$ from `gf.stiffness`; its GD takes
  1e4 steps of $T / 10^4$.

Competitors, in one process per flow on the same problem: the paper's GD
(`gf.GradientDescent(eta)`, 1e4 steps); `gf.solve(..., linearized=False)` with `gf.RKC()` and
`gf.ROCK2()` at `--stab-rtols`, diffrax Tsit5, Heun, Bosh3 at `--explicit-rtols`, and
`solver="auto"` at `--auto-rtols` (always `atol = rtol / 100`); scipy `solve_ivp` RK45, and BDF
and LSODA given the exact Jacobian (minus the Hessian of $F_\alpha$, every column a forward-over-
reverse product, in blocks of `--jac-block`) at `--scipy-rtols`, on the field of the scaled
coordinates $z = \alpha (w - w_0)$ that `gf.solve` integrates.

Evaluations = gradients + Jacobian-vector products: `num_vector_field_evals` (every attempted
step, rejected ones included) plus `num_jvp_evals` (power iterations) for RKC/ROCK2, and for BDF
and LSODA the gradients plus p products per exact Jacobian (each Jacobian is p = 5 050 columns).
A product costs 2-3 gradients in time; the seconds column has the true cost.

Timing: one short compile run per competitor (horizon t1/100, same save times scaled), then
`--repeats` passes round-robin over all competitors; a competitor other than GD stops repeating
once its timed runs add up to `--repeat-budget` seconds (12), and the table gives the repeats
taken. A method whose run exceeds `--time-cap` seconds (45) is not run at tighter tolerances on
that flow; a scipy run is stopped at `--time-cap` seconds or `--eval-cap` evaluations (2e5).
"x GD" is the best time over the best time of the paper's GD in the same process.

Errors, against a reference (`--ref`, RKC at rtol 1e-8, atol 1e-10), whose tightness is shown by
a second run (`--check`, RKC at rtol 1e-9; at $\tau = 0.01$, where RKC at tight tolerances is
slow, Bosh3 at 1e-6 checked by Bosh3 at 1e-7, `--ref-override`): output-space path error
$\max_t (\frac1n \sum_i |\alpha h(w(t))_i - \alpha h(w_{ref}(t))_i|^2)^{1/2}$ on the training
inputs, over 41 log-spaced times (GD iterates 1..1e4, as the experiments save) and over 21
evenly spaced times; and the relative difference of the end-of-training test loss and of the best
test loss over the log-spaced times. Errors under 10x the reference's self-agreement are marked `~`.

Writes `stiff_<flow>.json` and `stiff_<flow>.png` (path error against evaluations and seconds)
to `--out`, and prints a table per flow and the summary against the issue's goals.

Run: `python benchmarks/bench_stiff.py [--flows lazy,tau10,tau1,tau0.1,tau0.01] [--out DIR]`.
"""

import argparse
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow import data as gdata
from gradflow.experiments import paper_init, paper_learning_rate, paper_problem, write_json

GD_STEPS = 10_000
SOLVERS: dict[str, Callable[[], Any]] = {
    "RKC": gf.RKC,
    "ROCK2": gf.ROCK2,
    "Tsit5": dfx.Tsit5,
    "Heun": dfx.Heun,
    "Bosh3": dfx.Bosh3,
    "auto": lambda: "auto",
}


class Flow:
    """A problem, its horizon and GD step, the save times, and the functions errors use."""

    def __init__(self, name, problem, eta, x_test, y_test, description):
        self.name, self.problem, self.description = name, problem, description
        self.eta = float(eta)
        self.t1 = GD_STEPS * self.eta
        iters = np.unique(np.geomspace(1, GD_STEPS, 41).round())
        t_log = iters * self.eta
        t_even = np.linspace(0.0, self.t1, 21)
        self.ts = np.unique(np.concatenate([t_log, t_even]))
        self.idx_log = np.searchsorted(self.ts, t_log)
        self.idx_even = np.searchsorted(self.ts, t_even)
        w0, self.unravel = ravel_pytree(problem.params0)
        self.w0 = np.asarray(w0)
        alpha = problem.alpha
        loss_test = gf.SquareLoss(y_test)

        @jax.jit
        def outputs(w_flat):
            return jax.vmap(lambda w: alpha * problem.h(self.unravel(w)))(w_flat)

        @jax.jit
        def test_loss(w_flat):
            def one(w):
                return loss_test(alpha * problem.apply(self.unravel(w), x_test))

            return jax.vmap(one)(w_flat)

        self.outputs, self.test_loss = outputs, test_loss

        def velocity(z):
            # dz/dt = -alpha grad F_alpha(w0 + z / alpha): the field gf.solve integrates.
            w = w0 + z / alpha
            return -alpha * jax.grad(lambda v: problem.objective(self.unravel(v)))(w)

        self.velocity = jax.jit(velocity)
        self.lambda_max = gf.stiffness(problem)

    def jacobian(self, block: int) -> Callable[[np.ndarray], np.ndarray]:
        """The exact Jacobian of the scaled field (minus the Hessian of F_alpha), one
        Jacobian-vector product per column, `block` columns at a time (bounded memory)."""
        p = self.w0.size

        @jax.jit
        def jac(z):
            def column(i):
                e = jnp.zeros(p, z.dtype).at[i].set(1.0)
                return jax.jvp(self.velocity, (z,), (e,))[1]

            return jax.lax.map(column, jnp.arange(p), batch_size=block).T

        # Compiled here, outside the timing, without evaluating it (p products are expensive).
        compiled = jac.lower(jnp.zeros(p, self.w0.dtype)).compile()
        return lambda z: np.asarray(compiled(z))

    def flat(self, params_t) -> np.ndarray:
        return np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(params_t))


def fig1c_flow(tau: float) -> Flow:
    kd, kp = jax.random.split(jax.random.PRNGKey(0))
    data = gdata.teacher_student(kd, 1000, 1000, 100)
    problem = paper_problem(paper_init(kp, 50, 100, tau=tau), data.x_train, data.y_train, 1.0)
    step = min(10.0, 0.1 / tau**2)
    eta = paper_learning_rate(50, step)
    desc = (
        f"Fig. 1c ReLU, tau={tau:g}: d=100, n=1000, m=50, doubled init, 1e4 paper steps of "
        f"{step:g} (eta={eta:g}, t1={GD_STEPS * eta:g})"
    )
    return Flow(f"tau{tau:g}", problem, eta, data.x_test, data.y_test, desc)


def lazy_flow(target_stiffness: float) -> Flow:
    kx, kt, kp = jax.random.split(jax.random.PRNGKey(0), 3)
    x = gf.data.uniform_sphere(kx, 100, 5)
    y = gf.data.teacher_targets(kt, x)
    # The same teacher (same key) on 1 000 fresh inputs.
    x_test = gf.data.uniform_sphere(jax.random.PRNGKey(7), 1000, 5)
    y_test = gf.data.teacher_targets(kt, x_test)
    model = gf.models.TwoLayer(200, "tanh")
    problem = gf.Problem(model, model.init(kp, 5, doubled=True), x, gf.SquareLoss(y), alpha=100.0)
    t1 = target_stiffness / gf.stiffness(problem)
    desc = (
        f"lazy: TwoLayer(200, tanh), doubled init, alpha=100, n=100, d=5, T={t1:.4g} "
        f"(lambda_max(w0) T = {target_stiffness:g}), GD 1e4 steps of T/1e4"
    )
    return Flow("lazy", problem, t1 / GD_STEPS, x_test, y_test, desc)


class Competitor:
    """One method at one setting: `run(t1)` solves to `t1` (save times scaled) and returns
    (flat parameters at the save times or None, a dict of counts)."""

    def __init__(self, method, rtol, run, family):
        self.method, self.rtol, self.run, self.family = method, rtol, run, family
        self.times: list[float] = []
        self.result: dict[str, Any] | None = None
        self.skipped: str | None = None

    @property
    def label(self) -> str:
        return self.method if self.rtol is None else f"{self.method} rtol={self.rtol:g}"


def gf_run(flow: Flow, solver_name: str, rtol: float):
    def run(t1):
        sol = gf.solve(
            flow.problem,
            t1=t1,
            ts=flow.ts * (t1 / flow.t1),
            solver=SOLVERS[solver_name](),
            rtol=rtol,
            atol=rtol / 100,
            linearized=False,
            save_params=True,
            max_steps=10**6,
        )
        jax.block_until_ready(sol.params)
        st = {k: np.asarray(v).item() for k, v in sol.stats.items()}
        info = {
            "solver": sol.info.solver,
            "ok": bool(sol.succeeded),
            "message": "" if sol.succeeded else sol.message.split(".")[0],
            "grads": int(st["num_vector_field_evals"]),
            "jvps": int(st.get("num_jvp_evals", 0)),
            "steps": int(st["num_steps"]),
            "rejected": int(st.get("num_rejected_steps", 0)),
        }
        for key in ("stages_max", "stages_mean", "spectral_radius", "num_spectral_refreshes"):
            if key in st:
                info[key] = float(st[key])
        return (flow.flat(sol.params) if sol.succeeded else None), info

    return run


def gd_run(flow: Flow):
    def run(t1):
        ts = flow.ts
        if t1 < flow.t1:
            # The compile run: the same number of save times at the first iterates (one
            # program serves every number of steps).
            ts = flow.eta * np.arange(len(flow.ts))
            t1 = float(ts[-1])
        sol = gf.solve(
            flow.problem,
            t1=t1,
            ts=ts,
            solver=gf.GradientDescent(flow.eta),
            linearized=False,
            save_params=True,
            max_steps=10**6,
        )
        jax.block_until_ready(sol.params)
        info = {
            "solver": "GradientDescent",
            "ok": bool(sol.succeeded),
            "message": "" if sol.succeeded else sol.message.split(".")[0],
            "grads": int(sol.stats["num_vector_field_evals"]),
            "jvps": 0,
            "steps": int(sol.stats["num_steps"]),
        }
        return (flow.flat(sol.params) if sol.succeeded else None), info

    return run


class _Budget(Exception):
    pass


def scipy_run(flow: Flow, method: str, rtol: float, jac, time_cap: float, eval_cap: int):
    p = flow.w0.size

    def run(t1):
        count, start = [0, 0, 0.0], time.perf_counter()

        def f(t, z):
            del t
            count[0] += 1
            if count[0] + count[1] * p > eval_cap or time.perf_counter() - start > time_cap:
                raise _Budget
            return np.asarray(flow.velocity(z))

        kw = {}
        if jac is not None:

            def jacobian(t, z):
                del t
                count[1] += 1
                if time.perf_counter() - start > time_cap:
                    raise _Budget
                t_jac = time.perf_counter()
                out = jac(z)
                count[2] += time.perf_counter() - t_jac
                return out

            kw["jac"] = jacobian
        try:
            res = scipy.integrate.solve_ivp(
                f,
                (0.0, t1),
                np.zeros_like(flow.w0),
                method=method,
                t_eval=flow.ts * (t1 / flow.t1),
                rtol=rtol,
                atol=rtol / 100,
                **kw,
            )
        except _Budget:
            info = {"ok": False, "grads": count[0], "jvps": count[1] * p}
            info["message"] = (
                f"stopped at the cap ({time_cap:g} s or {eval_cap} evaluations) after "
                f"{count[0]} gradients and {count[1]} Jacobians"
            )
            return None, info
        info = {
            "solver": f"scipy {method}",
            "ok": bool(res.success),
            "message": "" if res.success else str(res.message),
            "grads": int(count[0]),
            "jvps": int(count[1]) * p,
            "jacobians": int(count[1]),
            "lu": int(getattr(res, "nlu", 0)),
            "jacobian_seconds": count[2],
        }
        if not res.success:
            return None, info
        return flow.w0[None] + res.y.T / float(flow.problem.alpha), info

    return run


def competitors(flow: Flow, args) -> list[Competitor]:
    out = [Competitor("GD", None, gd_run(flow), "GD")]
    for name in ("RKC", "ROCK2"):
        out += [Competitor(name, r, gf_run(flow, name, r), "stabilized") for r in args.stab_rtols]
    for rtol in args.auto_rtols:
        out.append(Competitor("auto", rtol, gf_run(flow, "auto", rtol), "auto"))
    for name in args.explicit:
        out += [Competitor(name, r, gf_run(flow, name, r), "explicit") for r in args.explicit_rtols]
    jac = flow.jacobian(args.jac_block)
    for method in args.scipy:
        j = jac if method in ("BDF", "LSODA", "Radau") else None
        for rtol in args.scipy_rtols if j is None else args.implicit_rtols:
            run = scipy_run(flow, method, rtol, j, args.time_cap, args.eval_cap)
            out.append(Competitor(f"scipy {method}", rtol, run, "scipy"))
    return out


def errors(flow: Flow, w: np.ndarray, ref: dict[str, np.ndarray]) -> dict[str, float]:
    out = np.asarray(flow.outputs(w))
    diff = (out - ref["out"]).reshape(out.shape[0], out.shape[1], -1)
    norms = np.sqrt(np.mean(np.sum(diff**2, -1), -1))
    test = np.asarray(flow.test_loss(w))
    end, best = test[-1], np.min(test[flow.idx_log])
    return {
        "path_error_log": float(np.max(norms[flow.idx_log])),
        "path_error_even": float(np.max(norms[flow.idx_even])),
        "final_error": float(norms[-1]),
        "end_test_loss": float(end),
        "best_test_loss": float(best),
        "end_test_rel": float(abs(end - ref["end"]) / ref["end"]),
        "best_test_rel": float(abs(best - ref["best"]) / ref["best"]),
    }


def reference(flow: Flow, args, log) -> tuple[dict[str, Any], dict[str, Any]]:
    runs = {}
    for key, (name, rtol) in (("ref", args.ref), ("check", args.check)):
        start = time.perf_counter()
        w, info = gf_run(flow, name, rtol)(flow.t1)
        info["seconds"] = time.perf_counter() - start
        if w is None:
            raise RuntimeError(f"the {key} run {name} rtol {rtol:g} failed: {info['message']}")
        runs[key] = (w, info)
        log(
            f"  {key}: {name} rtol {rtol:g} atol {rtol / 100:g}: {info['grads']} gradients, "
            f"{info['jvps']} jvps, {info['seconds']:.1f} s (compile included)"
        )
    w_ref = runs["ref"][0]
    test = np.asarray(flow.test_loss(w_ref))
    ref = {
        "out": np.asarray(flow.outputs(w_ref)),
        "end": float(test[-1]),
        "best": float(np.min(test[flow.idx_log])),
    }
    agree = errors(flow, runs["check"][0], ref)
    log(
        f"  reference self-agreement ({args.check[0]} {args.check[1]:g} vs {args.ref[0]} "
        f"{args.ref[1]:g}): path log {agree['path_error_log']:.2e}, even "
        f"{agree['path_error_even']:.2e}, end test loss rel {agree['end_test_rel']:.1e}, best "
        f"{agree['best_test_rel']:.1e}; end test loss {ref['end']:.6g}, best {ref['best']:.6g}"
    )
    z_end = float(flow.problem.alpha) * (w_ref[-1] - flow.w0)
    meta = {
        "ref": {"solver": args.ref[0], "rtol": args.ref[1], "atol": args.ref[1] / 100},
        "check": {"solver": args.check[0], "rtol": args.check[1], "atol": args.check[1] / 100},
        "ref_run": runs["ref"][1],
        "check_run": runs["check"][1],
        "self_agreement": agree,
        "end_test_loss": ref["end"],
        "best_test_loss": ref["best"],
        "max_abs_z_end": float(np.max(np.abs(z_end))),
        "rms_z_end": float(np.sqrt(np.mean(z_end**2))),
    }
    return ref, meta


def run_flow(flow: Flow, args, log) -> dict[str, Any]:
    log(
        f"== {flow.description}; {flow.w0.size} parameters; lambda_max(w0) = "
        f"{flow.lambda_max:.4g}, lambda_max(w0) * eta = {flow.lambda_max * flow.eta:.3g}, "
        f"lambda_max(w0) * t1 = {flow.lambda_max * flow.t1:.3g}"
    )
    ref, ref_meta = reference(flow, args, log)
    comps = competitors(flow, args)
    # Compile each program outside the timing, on a short horizon with the same save times.
    compiled = set()
    flow.velocity(np.zeros_like(flow.w0)).block_until_ready()
    for c in comps:
        if c.method in compiled or c.family == "scipy":
            continue
        compiled.add(c.method)
        start = time.perf_counter()
        c.run(flow.t1 / 100)
        log(f"  compile run {c.method}: {time.perf_counter() - start:.1f} s")
    over: set[str] = set()
    for rep in range(args.repeats):
        for c in comps:
            spent = sum(c.times) >= args.repeat_budget and c.family != "GD"
            if c.skipped or (rep > 0 and (c.result is None or spent)):
                continue
            if rep == 0 and c.method in over:
                c.skipped = f"not run: a looser rtol of {c.method} took over {args.time_cap:g} s"
                log(f"  {c.label}: {c.skipped}")
                continue
            start = time.perf_counter()
            w, info = c.run(flow.t1)
            seconds = time.perf_counter() - start
            if rep == 0:
                if w is None:
                    c.skipped = info["message"]
                    c.result = {**info, "stopped_after_seconds": seconds}
                    log(f"  {c.label}: FAILED or stopped: {info['message']}")
                    over.add(c.method)
                    continue
                c.result = {**info, **errors(flow, w, ref)}
                if seconds > args.time_cap:
                    over.add(c.method)
            c.times.append(seconds)
            if rep == 0:
                r = c.result
                log(
                    f"  {c.label:<22} {r['grads'] + r['jvps']:>9} evals {seconds:>8.2f} s  path "
                    f"log {r['path_error_log']:.2e} even {r['path_error_even']:.2e}"
                )
    gd = next(c for c in comps if c.method == "GD")
    gd_time = min(gd.times)
    rows = []
    for c in comps:
        row = {"method": c.method, "rtol": c.rtol, "family": c.family, "skipped": c.skipped}
        row.update(c.result or {})
        if c.times:
            row.update(
                evals=row["grads"] + row["jvps"],
                seconds=min(c.times),
                repeats=len(c.times),
                all_seconds=c.times,
                x_gd=min(c.times) / gd_time,
            )
        rows.append(row)
    return {
        "flow": flow.name,
        "description": flow.description,
        "num_params": int(flow.w0.size),
        "alpha": float(flow.problem.alpha),
        "eta": flow.eta,
        "t1": flow.t1,
        "lambda_max_w0": flow.lambda_max,
        "lambda_max_w0_times_eta": flow.lambda_max * flow.eta,
        "lambda_max_w0_times_t1": flow.lambda_max * flow.t1,
        "reference": ref_meta,
        "rows": rows,
        "summary": summarize(rows, args.targets),
    }


def _fmt(v, spec):
    return "-" if v is None or not np.isfinite(v) else format(v, spec)


def table(result: dict[str, Any]) -> str:
    res = 10 * result["reference"]["self_agreement"]["path_error_log"]
    head = (
        f"{'method':<12} {'rtol':>6} {'grads':>7} {'jvps':>6} {'evals':>7} {'rep':>3} "
        f"{'seconds':>8} {'x GD':>6} {'path log':>9} {'path even':>9} {'end test':>8} "
        f"{'best test':>9}  notes"
    )
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        rtol = "-" if r["rtol"] is None else f"{r['rtol']:g}"
        if "seconds" not in r:
            lines.append(f"{r['method']:<12} {rtol:>6}  {r['skipped']}")
            continue
        note = []
        if "stages_max" in r:
            note.append(f"stages mean {r['stages_mean']:.1f} max {r['stages_max']:.0f}")
        if r.get("rejected"):
            note.append(f"{r['rejected']} rejected of {r['steps']}")
        elif "steps" in r and r["family"] != "GD":
            note.append(f"{r['steps']} steps")
        if r.get("jacobians"):
            note.append(f"{r['jacobians']} Jacobians ({r['jacobian_seconds']:.1f} s), {r['lu']} LU")
        if r["family"] == "auto":
            note.append(f"-> {r['solver']}")
        mark = "~" if r["path_error_log"] < res else " "
        lines.append(
            f"{r['method']:<12} {rtol:>6} {r['grads']:>7} {r['jvps']:>6} {r['evals']:>7} "
            f"{r['repeats']:>3} {r['seconds']:>8.2f} {r['x_gd']:>6.3f} "
            f"{r['path_error_log']:>8.2e}{mark} {r['path_error_even']:>9.2e} "
            f"{r['end_test_rel']:>8.1e} {r['best_test_rel']:>9.1e}  {'; '.join(note)}"
        )
    return "\n".join(lines)


def cheapest(rows, families, target, key="evals", err="path_error_log"):
    ok = [
        r
        for r in rows
        if r["family"] in families and "seconds" in r and err in r
        if np.isfinite(r[err]) and r[err] <= target
    ]
    return min(ok, key=lambda r: r[key]) if ok else None


def summarize(rows: list[dict], targets: list[float]) -> dict[str, Any]:
    r"""At each path-error target (log-spaced times): the cheapest stabilized run (RKC, ROCK2,
    and `auto` where it chose a stabilized method) by evaluations, and its cost ratios against
    the paper's GD (whatever GD's error) and against the cheapest run of each other method
    reaching the same target (in seconds: the cheapest run in seconds of each)."""
    gd = next(r for r in rows if r["method"] == "GD")
    out = {}
    for target in targets:
        stab_rows = [
            r
            for r in rows
            if r["family"] == "stabilized"
            or (r["family"] == "auto" and r.get("solver") in ("RKC", "ROCK2"))
        ]
        best = cheapest(stab_rows, {"stabilized", "auto"}, target)
        fastest = cheapest(stab_rows, {"stabilized", "auto"}, target, key="seconds")
        entry: dict[str, Any] = {"cheapest_stabilized": None}
        if best is not None:
            entry["cheapest_stabilized"] = {
                k: best.get(k)
                for k in ("method", "rtol", "evals", "seconds", "path_error_log", "solver")
            }
            entry["fastest_stabilized"] = {
                k: fastest.get(k) for k in ("method", "rtol", "evals", "seconds", "path_error_log")
            }
            entry["gd_evals_over_stabilized"] = gd["evals"] / best["evals"]
            entry["gd_seconds_over_stabilized"] = gd["seconds"] / best["seconds"]
            entry["gd_seconds_over_fastest_stabilized"] = gd["seconds"] / fastest["seconds"]
            entry["gd_path_error_log"] = gd["path_error_log"]
            for m in sorted({r["method"] for r in rows if r["family"] in ("scipy", "explicit")}):
                other = cheapest(
                    [r for r in rows if r["method"] == m],
                    {"scipy", "explicit"},
                    target,
                    key="seconds",
                )
                entry[m] = (
                    None
                    if other is None
                    else {
                        "rtol": other["rtol"],
                        "evals": other["evals"],
                        "seconds": other["seconds"],
                        "path_error_log": other["path_error_log"],
                        "seconds_over_fastest_stabilized": other["seconds"] / fastest["seconds"],
                        "evals_over_cheapest_stabilized": other["evals"] / best["evals"],
                    }
                )
        out[f"{target:g}"] = entry
    return out


def summary_text(result: dict[str, Any]) -> str:
    lines = []
    for target, e in result["summary"].items():
        b = e["cheapest_stabilized"]
        if b is None:
            lines.append(f"  path error (log) <= {target}: no stabilized run reaches it")
            continue
        f = e["fastest_stabilized"]
        lines.append(
            f"  path error (log) <= {target}: cheapest stabilized {b['method']} rtol "
            f"{b['rtol']:g} ({b['evals']} evals, {b['seconds']:.2f} s, error "
            f"{b['path_error_log']:.2e}); GD/it: {e['gd_evals_over_stabilized']:.1f}x evals, "
            f"{e['gd_seconds_over_stabilized']:.1f}x seconds (fastest stabilized {f['method']} "
            f"rtol {f['rtol']:g}: {e['gd_seconds_over_fastest_stabilized']:.1f}x; GD's own error "
            f"{e['gd_path_error_log']:.1e})"
        )
        others = []
        for m, o in e.items():
            if isinstance(o, dict) and "seconds_over_fastest_stabilized" in o:
                others.append(
                    f"{m} (rtol {o['rtol']:g}) {o['seconds_over_fastest_stabilized']:.1f}x s, "
                    f"{o['evals_over_cheapest_stabilized']:.1f}x evals"
                )
            elif o is None and m not in ("cheapest_stabilized",):
                others.append(f"{m} does not reach it")
        lines.append("    others / stabilized at the same target: " + "; ".join(others))
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
    styles = {
        "RKC": ("tab:blue", "o-"),
        "ROCK2": ("tab:cyan", "D-"),
        "auto": ("tab:purple", "P-"),
        "Tsit5": ("tab:green", "^-"),
        "Heun": ("tab:olive", "v-"),
        "Bosh3": ("tab:pink", "<-"),
        "scipy RK45": ("tab:red", "s--"),
        "scipy BDF": ("tab:brown", "X--"),
        "scipy LSODA": ("tab:orange", ">--"),
    }
    rows = [r for r in result["rows"] if "seconds" in r]
    for col, cost in enumerate(("evals", "seconds")):
        ax = axes[col]
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [r for r in rows if r["method"] == method]
            if method == "GD":
                ax.plot(
                    pts[0][cost],
                    pts[0]["path_error_log"],
                    "*",
                    color="gold",
                    mec="k",
                    ms=20,
                    label="paper's GD (1e4 steps)",
                )
                continue
            color, marker = styles.get(method, ("0.3", "o-"))
            ax.loglog(
                [p[cost] for p in pts],
                [max(p["path_error_log"], 1e-16) for p in pts],
                marker,
                color=color,
                ms=6,
                lw=1.3,
                label=method,
            )
        ax.axhline(1e-3, color="k", ls="--", lw=1, label="error 1e-3")
        agree = result["reference"]["self_agreement"]["path_error_log"]
        ax.axhline(agree, color="0.5", ls=":", lw=1, label="reference self-agreement")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(
            "evaluations (gradients + Jacobian-vector products)"
            if col == 0
            else "wall time [s] (best of repeats)"
        )
        ax.set_ylabel("output path error, max over 41 log-spaced times")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=7, fontsize=8)
    fig.suptitle(result["description"], fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", default="tau10,tau1,tau0.1,lazy,tau0.01")
    parser.add_argument("--stab-rtols", default="1e-2,1e-3,1e-4,1e-5,1e-6")
    parser.add_argument("--explicit", default="Tsit5,Heun,Bosh3")
    parser.add_argument("--explicit-rtols", default="1e-2,1e-3,1e-4")
    parser.add_argument("--auto-rtols", default="1e-3,1e-4")
    parser.add_argument("--scipy", default="RK45,BDF,LSODA")
    parser.add_argument("--scipy-rtols", default="1e-3,1e-5", help="RK45's")
    parser.add_argument("--implicit-rtols", default="1e-3", help="BDF's and LSODA's")
    parser.add_argument("--ref", default="RKC:1e-8", help="solver:rtol of the reference")
    parser.add_argument("--check", default="RKC:1e-9", help="solver:rtol of its check")
    parser.add_argument(
        "--ref-override",
        default="tau0.01=Bosh3:1e-6/Bosh3:1e-7",
        help="FLOW=REF/CHECK,...: another reference where RKC at tight rtol is slow",
    )
    parser.add_argument("--lazy-stiffness", type=float, default=3e3)
    parser.add_argument("--targets", default="1e-2,1e-3,1e-4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeat-budget", type=float, default=12.0, help="seconds (not GD)")
    parser.add_argument("--time-cap", type=float, default=45.0)
    parser.add_argument("--eval-cap", type=int, default=200_000)
    parser.add_argument("--jac-block", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()

    def floats(s):
        return [float(v) for v in s.split(",") if v]

    def names(s):
        return [v for v in s.split(",") if v]

    args.stab_rtols, args.explicit_rtols = floats(args.stab_rtols), floats(args.explicit_rtols)
    args.auto_rtols, args.scipy_rtols = floats(args.auto_rtols), floats(args.scipy_rtols)
    args.implicit_rtols = floats(args.implicit_rtols)
    args.targets, args.explicit, args.scipy = (
        floats(args.targets),
        names(args.explicit),
        names(args.scipy),
    )

    def setting(s):
        name, rtol = s.split(":")
        return name, float(rtol)

    default_ref = (setting(args.ref), setting(args.check))
    overrides = {}
    for item in names(args.ref_override):
        flow_name, pair = item.split("=")
        overrides[flow_name] = tuple(setting(v) for v in pair.split("/"))
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    log(f"{platform.processor() or platform.machine()}, {jax.devices()}, jax {version('jax')}")
    results = {}
    for name in names(args.flows):
        start = time.perf_counter()
        flow = lazy_flow(args.lazy_stiffness) if name == "lazy" else fig1c_flow(float(name[3:]))
        args.ref, args.check = overrides.get(name, default_ref)
        result = run_flow(flow, args, log)
        result["flow_seconds"] = time.perf_counter() - start
        results[name] = result
        plot(result, args.out / f"stiff_{name}.png")
        log(f"\n{result['description']} ({result['flow_seconds']:.0f} s for this flow)\n")
        log(table(result))
        log("\n" + summary_text(result) + "\n")
        write_json(
            {
                **result,
                "environment": {
                    "platform": platform.platform(),
                    "jax": version("jax"),
                    "diffrax": version("diffrax"),
                    "scipy": version("scipy"),
                    "devices": str(jax.devices()),
                },
                "command": "python benchmarks/bench_stiff.py " + " ".join(sys.argv[1:]),
            },
            args.out / f"stiff_{name}.json",
        )


if __name__ == "__main__":
    main()
