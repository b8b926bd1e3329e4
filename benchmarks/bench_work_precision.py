r"""Work-precision diagrams: output-space error against gradient evaluations and wall time.

Three flows, every competitor run in the same process on the same jitted gradient:

- `lazy`: a two-layer tanh net in the lazy regime, $\alpha = 100$ (doubled init, $h(w_0) = 0$),
  n = 100, d = 5, m = 200, horizon T = 100;
- `smooth`: the same family away from the lazy regime, $\alpha = 1$, m = 50, T = 100;
- `relu`: the paper's Fig. 1c flow (d = 100, n = 1000, m = 50, ReLU, doubled init times
  $\tau = 0.01$, paper step 10), on the first `--relu-steps` paper steps (default 1 000, i.e. paper
  time 1e4, where the loss falls from 6.2e-3 to 9e-6; the full experiment runs 1e4 steps).

Competitors:

- `gf.solve(..., linearized=False)` with each solver in `--solvers` (diffrax names, and `auto`, the
  default strategy), at relative tolerances `--rtols` (atol = rtol / 100);
- constant-step gradient descent (`gf.GradientDescent`, the paper's method) at several steps;
- `scipy.integrate.solve_ivp` with RK45, DOP853 and LSODA (LSODA gets the jitted Hessian as its
  Jacobian where the parameter count allows it) on the same jitted gradient, in the same scaled
  coordinates $z = \alpha (w - w_0)$ that `gf.solve` integrates, so tolerances mean the same thing.

Error is measured in output space: $\|\alpha h(w(t)) - \alpha h(w_{ref}(t))\|_F$ (empirical norm
on the training inputs), at the final time ("final") and as the maximum over 21 evenly spaced
times ("path"). The reference is, for `lazy` and `smooth`, `gf.solve` with Dopri8 at rtol 1e-12
(checked against Tsit5 at rtol 1e-12: the gap between the two is reported as the reference's own
error). For `relu` no adaptive solver gets a tight answer in reasonable time (kinks), so the
reference is Richardson extrapolation of gradient descent, $2 y_{\eta/2} - y_\eta$, at paper steps
1/20 and 1/40 (0.5 and 0.25); its error is estimated by the same extrapolation at steps 1 and 0.5.

Writes `work_precision_<flow>.png` (error vs evaluations and vs seconds, path and final) and
`work_precision_<flow>.json` (every point, the reference's error, and cost ratios at equal error).

Run: `python benchmarks/bench_work_precision.py [--flows lazy,smooth,relu] [--out DIR]`.
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
import numpy as np
import scipy.integrate
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow import data as gdata
from gradflow.experiments import paper_init, paper_learning_rate, paper_problem, write_json

SOLVERS: dict[str, Callable[[], Any]] = {
    "auto": lambda: "auto",
    "Heun": dfx.Heun,
    "Bosh3": dfx.Bosh3,
    "Tsit5": dfx.Tsit5,
    "Dopri5": dfx.Dopri5,
    "Dopri8": dfx.Dopri8,
}


class Flow:
    """A problem, its horizon, save times and the gradient-descent steps to try."""

    def __init__(self, name, problem, t1, gd_steps, description, paper_eta=None):
        self.name, self.problem, self.t1 = name, problem, float(t1)
        self.ts = np.linspace(0.0, self.t1, 21)
        self.gd_steps = list(gd_steps)
        self.description = description
        self.paper_eta = paper_eta
        w0, self.unravel = ravel_pytree(problem.params0)
        self.w0 = np.asarray(w0)
        alpha = problem.alpha

        @jax.jit
        def outputs(w_flat):
            # alpha h(w) at a batch of flat parameter vectors: the quantity errors are taken on.
            return jax.vmap(lambda w: alpha * problem.h(self.unravel(w)))(w_flat)

        self.outputs = outputs

        def velocity(z):
            # dz/dt = -alpha grad F_alpha(w0 + z / alpha): the field gf.solve integrates.
            w = w0 + z / alpha
            return -alpha * jax.grad(lambda v: problem.objective(self.unravel(v)))(w)

        self.velocity = jax.jit(velocity)
        self.jacobian = jax.jit(jax.jacfwd(velocity)) if w0.size <= 3000 else None

    def flat(self, params_t) -> np.ndarray:
        return np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(params_t))


def lazy_flow() -> Flow:
    kx, kt, kp = jax.random.split(jax.random.PRNGKey(0), 3)
    x = gf.data.uniform_sphere(kx, 100, 5)
    y = gf.data.teacher_targets(kt, x)
    model = gf.models.TwoLayer(200, "tanh")
    params = model.init(kp, 5, doubled=True)
    problem = gf.Problem(model, params, x, gf.SquareLoss(y), alpha=100.0)
    desc = "lazy: TwoLayer(200, tanh), doubled init, alpha=100, n=100, d=5, T=100"
    return Flow("lazy", problem, 100.0, [200 * 2**k for k in range(8)], desc)


def smooth_flow() -> Flow:
    kx, kt, kp = jax.random.split(jax.random.PRNGKey(1), 3)
    x = gf.data.uniform_sphere(kx, 100, 5)
    y = gf.data.teacher_targets(kt, x)
    model = gf.models.TwoLayer(50, "tanh")
    params = model.init(kp, 5, doubled=True)
    problem = gf.Problem(model, params, x, gf.SquareLoss(y), alpha=1.0)
    desc = "non-lazy smooth: TwoLayer(50, tanh), doubled init, alpha=1, n=100, d=5, T=100"
    return Flow("smooth", problem, 100.0, [200 * 2**k for k in range(8)], desc)


def relu_flow(paper_steps: int) -> Flow:
    kd, kp = jax.random.split(jax.random.PRNGKey(0))
    data = gdata.teacher_student(kd, 1000, 1000, 100)
    params = paper_init(kp, 50, 100, tau=0.01)
    problem = paper_problem(params, data.x_train, data.y_train, 1.0)
    eta = paper_learning_rate(50, 10.0)  # the paper's step 10, in gf time
    desc = (
        f"Fig. 1c ReLU: d=100, n=1000, m=50, tau=0.01, doubled init; first {paper_steps} paper "
        f"steps (paper time {10 * paper_steps:g})"
    )
    steps = [paper_steps // 2, paper_steps, 2 * paper_steps, 4 * paper_steps, 8 * paper_steps]
    return Flow("relu", problem, paper_steps * eta, steps, desc, paper_eta=eta)


def error(flow: Flow, out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    diff = np.asarray(out) - ref
    norms = np.sqrt(np.mean(np.sum(diff.reshape(diff.shape[0], diff.shape[1], -1) ** 2, -1), -1))
    if not np.all(np.isfinite(norms)):
        return float("nan"), float("nan")
    return float(np.max(norms)), float(norms[-1])


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        jax.block_until_ready(result)
        best = min(best, time.perf_counter() - start)
        if best > 2.0:
            break
    return result, best


def run_gf(flow: Flow, solver, rtol: float, max_steps: int):
    sol = gf.solve(
        flow.problem,
        t1=flow.t1,
        ts=flow.ts,
        solver=solver,
        rtol=rtol,
        atol=rtol / 100,
        linearized=False,
        save_params=True,
        max_steps=max_steps,
    )
    return sol


def gd_outputs(flow: Flow, num: int):
    sol = gf.solve(
        flow.problem,
        t1=flow.t1,
        ts=flow.ts,
        solver=gf.GradientDescent(flow.t1 / num),
        linearized=False,
        save_params=True,
        max_steps=max(num, 100_000),
    )
    return sol


def reference(flow: Flow, log) -> tuple[np.ndarray, float, str]:
    if flow.name != "relu":
        start = time.perf_counter()
        a = run_gf(flow, dfx.Dopri8(), 1e-12, 1_000_000)
        b = run_gf(flow, dfx.Tsit5(), 1e-12, 1_000_000)
        oa, ob = (np.asarray(flow.outputs(flow.flat(s.params))) for s in (a, b))
        err = error(flow, ob, oa)[0]
        how = "gf.solve Dopri8 rtol 1e-12, atol 1e-14 (vs Tsit5 rtol 1e-12: path error given)"
        log(f"  reference: {how}: {err:.2e} in {time.perf_counter() - start:.1f} s")
        return oa, err, how
    start = time.perf_counter()
    base = flow.t1 / flow.paper_eta  # number of paper steps
    outs = {}
    for factor in (10, 20, 40):
        sol = gd_outputs(flow, int(base * factor))
        outs[factor] = np.asarray(flow.outputs(flow.flat(sol.params)))
    fine = 2 * outs[40] - outs[20]
    coarse = 2 * outs[20] - outs[10]
    err = error(flow, coarse, fine)[0]
    how = (
        "Richardson extrapolation of gradient descent, 2 y(eta/40) - y(eta/20) (eta the paper "
        "step); error = path distance to 2 y(eta/20) - y(eta/10)"
    )
    log(f"  reference: {how}: {err:.2e} in {time.perf_counter() - start:.1f} s")
    return fine, err, how


def scipy_run(flow: Flow, method: str, rtol: float, max_evals: int, repeats: int):
    count = [0]

    def f(t, z):
        del t
        count[0] += 1
        if count[0] > max_evals:
            raise RuntimeError("evaluation budget")
        return np.asarray(flow.velocity(z))

    kw = {}
    if method == "LSODA":
        if flow.jacobian is None:
            return None
        kw["jac"] = lambda t, z: np.asarray(flow.jacobian(z))
    z0 = np.zeros_like(flow.w0)
    seconds = float("inf")
    for _ in range(repeats):
        count[0] = 0
        start = time.perf_counter()
        try:
            res = scipy.integrate.solve_ivp(
                f,
                (0.0, flow.t1),
                z0,
                method=method,
                t_eval=flow.ts,
                rtol=rtol,
                atol=rtol / 100,
                **kw,
            )
        except RuntimeError:
            return None
        seconds = min(seconds, time.perf_counter() - start)
        if seconds > 2.0:
            break
    if not res.success:
        return None
    w = flow.w0[None] + res.y.T / float(flow.problem.alpha)
    return np.asarray(flow.outputs(w)), count[0], seconds, int(getattr(res, "njev", 0))


def cost_at(points: list[dict], err_key: str, cost_key: str, target: float) -> float:
    """The cheapest run of a method whose error is <= target (inf if none reaches it)."""
    ok = [p[cost_key] for p in points if np.isfinite(p[err_key]) and p[err_key] <= target]
    return min(ok) if ok else float("inf")


def run_flow(flow: Flow, args, log) -> dict[str, Any]:
    log(f"== {flow.description}; {flow.w0.size} parameters")
    ref, ref_err, ref_how = reference(flow, log)
    methods: dict[str, list[dict]] = {}

    def add(method, **point):
        point["path_error"], point["final_error"] = error(flow, point.pop("out"), ref)
        methods.setdefault(method, []).append(point)
        log(
            f"  {method:<14} {point['setting']:<16} evals {point['evals']:>8} "
            f"{point['seconds']:>8.3f} s  path {point['path_error']:.2e} final "
            f"{point['final_error']:.2e}"
        )

    for name in args.solvers if flow.name != "relu" else args.relu_solvers:
        solver = SOLVERS[name]()
        rtols = args.rtols if flow.name != "relu" else args.relu_rtols
        warmed = set()
        for rtol in rtols:
            chosen = gf.choose_solver(flow.problem, rtol) if name == "auto" else solver
            if type(chosen).__name__ not in warmed:  # compile outside the timing
                warmed.add(type(chosen).__name__)
                run_gf(flow, solver, rtol, args.max_steps)
            sol, sec = timed(lambda: run_gf(flow, solver, rtol, args.max_steps), args.repeats)
            if not sol.succeeded:
                log(f"  {name} rtol {rtol:g}: {sol.message.split('.')[0]}")
                continue
            evals = int(sol.stats.get("num_vector_field_evals", -1))
            add(
                f"gf {name}",
                setting=f"rtol={rtol:g}",
                rtol=rtol,
                evals=evals,
                steps=int(sol.stats["num_steps"]),
                seconds=sec,
                solver=sol.info.solver,
                out=np.asarray(flow.outputs(flow.flat(sol.params))),
            )
    gd_outputs(flow, flow.gd_steps[0])  # compile
    for num in flow.gd_steps:
        sol, sec = timed(lambda: gd_outputs(flow, num), args.repeats)
        if not sol.succeeded:
            log(f"  GD {num} steps: {sol.message.split('.')[0]}")
            continue
        setting = f"{num} steps"
        if flow.paper_eta is not None:
            setting = f"paper step {10 * flow.t1 / flow.paper_eta / num:g}"
        add(
            "GD",
            setting=setting,
            steps=num,
            evals=num,
            seconds=sec,
            out=np.asarray(flow.outputs(flow.flat(sol.params))),
        )
    flow.velocity(np.zeros_like(flow.w0)).block_until_ready()  # compile outside the timing
    if flow.jacobian is not None and "LSODA" in args.scipy:
        flow.jacobian(np.zeros_like(flow.w0)).block_until_ready()
    for method in args.scipy:
        rtols = args.rtols if flow.name != "relu" else args.relu_rtols
        for rtol in rtols:
            r = scipy_run(flow, method, rtol, args.scipy_max_evals, args.repeats)
            if r is None:
                log(f"  scipy {method} rtol {rtol:g}: not run or over budget")
                continue
            out, evals, sec, njev = r
            add(
                f"scipy {method}",
                setting=f"rtol={rtol:g}",
                rtol=rtol,
                evals=evals,
                jacobians=njev,
                seconds=sec,
                out=out,
            )
    ratios = {}
    best_gf = [m for m in methods if m.startswith("gf ")]
    for err_key in ("path_error", "final_error"):
        for target in args.targets:
            row = {}
            for m, pts in methods.items():
                row[m] = {
                    "seconds": cost_at(pts, err_key, "seconds", target),
                    "evals": cost_at(pts, err_key, "evals", target),
                }
            auto = row.get("gf auto", {"seconds": np.inf, "evals": np.inf})
            best = min((row[m]["seconds"] for m in best_gf), default=np.inf)
            row["ratios"] = {
                "scipy RK45 seconds / gf auto seconds": row.get("scipy RK45", {}).get(
                    "seconds", np.inf
                )
                / auto["seconds"],
                "GD evals / gf auto evals": row.get("GD", {}).get("evals", np.inf) / auto["evals"],
                "GD seconds / gf auto seconds": row.get("GD", {}).get("seconds", np.inf)
                / auto["seconds"],
                "scipy RK45 seconds / best gf seconds": row.get("scipy RK45", {}).get(
                    "seconds", np.inf
                )
                / best,
            }
            ratios[f"{err_key}<={target:g}"] = row
            r = row["ratios"]
            log(
                f"  at {err_key} <= {target:g}: RK45/auto time "
                f"{r['scipy RK45 seconds / gf auto seconds']:.3g}, GD/auto evals "
                f"{r['GD evals / gf auto evals']:.3g}, GD/auto time "
                f"{r['GD seconds / gf auto seconds']:.3g}"
            )
    return {
        "description": flow.description,
        "num_params": int(flow.w0.size),
        "t1": flow.t1,
        "reference": {"how": ref_how, "path_error_estimate": ref_err},
        "methods": methods,
        "at_equal_error": ratios,
    }


def markdown(result: dict[str, Any], err_key: str = "path_error") -> str:
    """A Markdown table: the cheapest run of each method reaching each error target."""
    methods = [
        m
        for m in ("gf auto", "scipy RK45", "scipy DOP853", "scipy LSODA", "GD")
        if m in result["methods"]
    ]
    head = "| error <= | " + " | ".join(f"{m} evals / s" for m in methods)
    head += " | RK45 s / auto s | GD evals / auto evals |"
    lines = [head, "|" + "---|" * (len(methods) + 3)]
    for key, row in result["at_equal_error"].items():
        if not key.startswith(err_key):
            continue
        cells = []
        for m in methods:
            ev, sec = (np.inf if v is None else v for v in (row[m]["evals"], row[m]["seconds"]))
            cells.append("-" if not np.isfinite(ev) else f"{ev:.0f} / {sec:.3g}")
        r = row["ratios"]
        ratios = [r["scipy RK45 seconds / gf auto seconds"], r["GD evals / gf auto evals"]]
        ratios = [np.inf if v is None else v for v in ratios]
        lines.append(
            f"| {key.split('<=')[1]} | "
            + " | ".join(cells)
            + " | "
            + " | ".join("-" if not np.isfinite(v) else f"{v:.3g}" for v in ratios)
            + " |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 9.2), layout="constrained")
    styles = {
        "GD": ("k", "s-"),
        "scipy RK45": ("tab:red", "v--"),
        "scipy DOP853": ("tab:orange", "^--"),
        "scipy LSODA": ("tab:brown", "<--"),
    }
    palette = iter(["tab:blue", "tab:green", "tab:purple", "tab:cyan", "tab:olive", "tab:pink"])
    for method, pts in result["methods"].items():
        color, marker = styles.get(method, (None, "o-"))
        if color is None:
            color = next(palette)
        lw = 2.8 if method == "gf auto" else 1.4
        for row, err_key in enumerate(("path_error", "final_error")):
            for col, cost in enumerate(("evals", "seconds")):
                pts_ok = [p for p in pts if np.isfinite(p[err_key]) and p[cost] > 0]
                if not pts_ok:
                    continue
                # Points joined in the order of the setting (tolerance or step), loosest first.
                axes[row, col].loglog(
                    [p[cost] for p in pts_ok],
                    [max(p[err_key], 1e-16) for p in pts_ok],
                    marker,
                    color=color,
                    lw=lw,
                    ms=4,
                    label=method,
                )
    ref = result["reference"]["path_error_estimate"]
    paper = [p for p in result["methods"].get("GD", []) if p["setting"] == "paper step 10"]
    for row, err_key in enumerate(("path error (max over 21 times)", "final-time error")):
        for col, cost in enumerate(("gradient evaluations", "wall time [s]")):
            ax = axes[row, col]
            ax.axhline(ref, color="0.5", ls=":", lw=1, label="reference's own error (estimate)")
            if paper:
                key = "path_error" if row == 0 else "final_error"
                ax.plot(
                    paper[0]["evals" if col == 0 else "seconds"],
                    paper[0][key],
                    "*",
                    color="gold",
                    mec="k",
                    ms=16,
                    label="the paper's GD (step 10, 1 000 steps)",
                )
                ax.axhline(1e-3, color="tab:red", ls="-.", lw=0.8, label="goal: error 1e-3")
            ax.set_xlabel(cost)
            ax.set_ylabel(f"output-space {err_key}")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=8)
    fig.suptitle(f"Work-precision: {result['description']}", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", default="lazy,smooth,relu")
    parser.add_argument("--solvers", default="auto,Heun,Bosh3,Tsit5,Dopri8")
    parser.add_argument("--relu-solvers", default="auto,Heun,Bosh3,Tsit5")
    parser.add_argument("--scipy", default="RK45,DOP853,LSODA")
    parser.add_argument("--rtols", default="1e-3,1e-4,1e-5,1e-6,1e-7,1e-8,1e-9,1e-10")
    parser.add_argument("--relu-rtols", default="1e-2,3e-3,1e-3,1e-4")
    parser.add_argument("--relu-steps", type=int, default=1000)
    parser.add_argument("--targets", default="1e-2,1e-3,1e-4,1e-6,1e-8")
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--scipy-max-evals", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of, for runs < 2 s")
    parser.add_argument("--out", type=Path, default=Path("work-precision-out"))
    args = parser.parse_args()
    args.solvers = [s for s in args.solvers.split(",") if s]
    args.relu_solvers = [s for s in args.relu_solvers.split(",") if s]
    args.scipy = [s for s in args.scipy.split(",") if s]
    args.rtols = [float(v) for v in args.rtols.split(",")]
    args.relu_rtols = [float(v) for v in args.relu_rtols.split(",")]
    args.targets = [float(v) for v in args.targets.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    builders = {
        "lazy": lazy_flow,
        "smooth": smooth_flow,
        "relu": lambda: relu_flow(args.relu_steps),
    }
    results = {}
    for name in args.flows.split(","):
        flow = builders[name]()
        results[name] = run_flow(flow, args, log)
        plot(results[name], args.out / f"work_precision_{name}.png")
        for err_key in ("path_error", "final_error"):
            print(f"\n{name}, {err_key}: cheapest run reaching each error\n")
            print(markdown(results[name], err_key), flush=True)
        write_json(
            {
                "flow": name,
                **results[name],
                "environment": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "jax": version("jax"),
                    "diffrax": version("diffrax"),
                    "scipy": version("scipy"),
                    "devices": str(jax.devices()),
                },
                "command": "python benchmarks/bench_work_precision.py " + " ".join(sys.argv[1:]),
            },
            args.out / f"work_precision_{name}.json",
        )


if __name__ == "__main__":
    main()
