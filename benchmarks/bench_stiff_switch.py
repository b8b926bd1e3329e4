r"""Where should `solver="auto"` switch to RKC? Evaluations and wall time of the explicit method
`auto` would otherwise pick against `gf.RKC()`, as the stiffness $\lambda_{\max}(w_0)\, t_1$ grows.

`gf.stiff_threshold(rtol)` decides: RKC when `gf.stiffness(problem) * t1` exceeds it.
Problems:

- `tanh a=100` and `tanh a=1`: the quick-start problem (centered `TwoLayer(200, "tanh",
  scaling="sqrt")`, n = 50 points on the sphere in d = 5, ReLU teacher), at $\alpha$ = 100 and 1;
  the explicit method is Tsit5 (smooth model);
- `relu tau=1`: the Fig. 1c ReLU flow at $\tau = 1$ made smaller (d = 100, m = 50, n = `--relu-n`,
  200); the explicit method is Bosh3 (kinks, `rtol < 5e-3`, as `auto` picks below the threshold).

For each, $t_1 = s / \lambda_{\max}(w_0)$ for $s$ in `--stiffness` (1 to 1e4; $\lambda_{\max}$ from
`gf.stiffness`), and each `--rtols` (atol = rtol / 100): one compile run per problem
and solver, then `--repeats` runs alternating the two solvers; best time kept. Evaluations =
`num_vector_field_evals` (+ `num_jvp_evals` of RKC's power iteration), rejected steps included.
The crossover is where evaluations (or seconds) of RKC over the explicit method's cross 1,
interpolated in log-log between grid points. A solver whose run exceeds `--time-cap` seconds is
not run at longer horizons for that problem and rtol. As a check that the two runs solve the same
flow, the output-space distance between their final outputs is recorded.

Writes `stiff_switch.png` and `stiff_switch.json` to `--out`.

Run: `python benchmarks/bench_stiff_switch.py [--rtols 1e-3,1e-6,1e-8] [--out DIR]`.
"""

import argparse
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import diffrax as dfx
import jax
import numpy as np

import gradflow as gf
from gradflow import data as gdata
from gradflow.experiments import paper_init, paper_problem, write_json


def tanh_problem(alpha: float) -> gf.Problem:
    kx, kt, kp = jax.random.split(jax.random.PRNGKey(0), 3)
    x = gf.data.uniform_sphere(kx, 50, 5)
    y = gf.data.teacher_targets(kt, x)
    model = gf.models.TwoLayer(200, "tanh", scaling="sqrt")
    return gf.Problem(model, model.init(kp, 5), x, gf.SquareLoss(y), alpha=alpha, center=True)


def relu_problem(n: int) -> gf.Problem:
    kd, kp = jax.random.split(jax.random.PRNGKey(0))
    data = gdata.teacher_student(kd, n, n, 100)
    return paper_problem(paper_init(kp, 50, 100, tau=1.0), data.x_train, data.y_train, 1.0)


def solve(problem, solver, t1, rtol):
    start = time.perf_counter()
    sol = gf.solve(
        problem,
        t1=t1,
        ts=np.linspace(0.0, t1, 11),
        solver=solver,
        rtol=rtol,
        atol=rtol / 100,
        linearized=False,
        save_params=True,
        max_steps=10**6,
    )
    jax.block_until_ready(sol.params)
    seconds = time.perf_counter() - start
    st = {k: np.asarray(v).item() for k, v in sol.stats.items()}
    last = jax.tree_util.tree_map(lambda v: v[-1], sol.params)
    return {
        "ok": bool(sol.succeeded),
        "evals": int(st["num_vector_field_evals"]) + int(st.get("num_jvp_evals", 0)),
        "grads": int(st["num_vector_field_evals"]),
        "jvps": int(st.get("num_jvp_evals", 0)),
        "steps": int(st["num_steps"]),
        "rejected": int(st.get("num_rejected_steps", 0)),
        "seconds": seconds,
        "out": np.asarray(problem.alpha * problem.h(last)),
    }


def crossover(s: np.ndarray, ratio: np.ndarray) -> float | None:
    """The stiffness at which `ratio` (RKC over explicit) first falls below 1 and stays there,
    interpolated in log-log; 0 if RKC is cheaper everywhere, None if never."""
    ok = np.isfinite(ratio)
    s, ratio = s[ok], ratio[ok]
    if len(s) == 0:
        return None
    below = ratio < 1
    if below.all():
        return 0.0
    if not below[-1]:
        return None
    k = int(np.max(np.nonzero(~below)[0]))  # the last grid point where RKC costs more
    ls, lr = np.log(s[k : k + 2]), np.log(ratio[k : k + 2])
    return float(np.exp(ls[0] + (0 - lr[0]) * (ls[1] - ls[0]) / (lr[1] - lr[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtols", default="1e-3,1e-6,1e-8")
    parser.add_argument("--stiffness", default=",".join(f"{v:g}" for v in np.logspace(0, 4, 9)))
    parser.add_argument("--relu-n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeat-budget", type=float, default=10.0)
    parser.add_argument("--time-cap", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    rtols = [float(v) for v in args.rtols.split(",")]
    grid = np.array([float(v) for v in args.stiffness.split(",")])
    args.out.mkdir(parents=True, exist_ok=True)
    problems = {
        "tanh a=100": (tanh_problem(100.0), dfx.Tsit5),
        "tanh a=1": (tanh_problem(1.0), dfx.Tsit5),
        f"relu tau=1 n={args.relu_n}": (relu_problem(args.relu_n), dfx.Bosh3),
    }
    print(f"{platform.processor() or platform.machine()}, {jax.devices()}", flush=True)
    results: dict[str, Any] = {}
    head = (
        f"{'problem':<18} {'rtol':>6} {'lam*t1':>8} {'explicit':>8} {'evals':>8} {'s':>7} "
        f"{'RKC evals':>9} {'s':>7} {'evals RKC/ex':>12} {'s RKC/ex':>8} {'out diff':>9}"
    )
    for pname, (problem, explicit) in problems.items():
        lam = gf.stiffness(problem)
        print(f"\n{pname}: lambda_max(w0) = {lam:.4g}\n{head}", flush=True)
        solvers = {explicit.__name__: explicit, "RKC": gf.RKC}
        for make in solvers.values():  # compile (one program per solver and problem)
            solve(problem, make(), 1.0 / lam, 1e-3)
        results[pname] = {"lambda_max_w0": lam, "explicit": explicit.__name__, "rtols": {}}
        for rtol in rtols:
            rows, capped = [], set()
            for s in grid:
                t1 = float(s / lam)
                best: dict[str, dict] = {}
                for rep in range(args.repeats):
                    for name, make in solvers.items():
                        if name in capped and rep == 0:
                            continue
                        prev = best.get(name)
                        if rep > 0 and (prev is None or prev["total"] >= args.repeat_budget):
                            continue
                        r = solve(problem, make(), t1, rtol)
                        if prev is None:
                            best[name] = {**r, "total": r["seconds"], "repeats": 1}
                            if r["seconds"] > args.time_cap:
                                capped.add(name)
                        else:
                            prev["total"] += r["seconds"]
                            prev["repeats"] += 1
                            prev["seconds"] = min(prev["seconds"], r["seconds"])
                ex, rk = best.get(explicit.__name__), best.get("RKC")
                row: dict[str, Any] = {"stiffness": float(s), "t1": t1}
                for key, r in (("explicit", ex), ("rkc", rk)):
                    row[key] = None if r is None else {k: v for k, v in r.items() if k != "out"}
                both = ex is not None and rk is not None and ex["ok"] and rk["ok"]
                if both:
                    diff = ex["out"] - rk["out"]
                    row["out_diff"] = float(
                        np.sqrt(np.mean(np.sum(diff.reshape(len(diff), -1) ** 2, -1)))
                    )
                    row["evals_ratio"] = rk["evals"] / ex["evals"]
                    row["seconds_ratio"] = rk["seconds"] / ex["seconds"]
                rows.append(row)

                def cell(r, key, spec):
                    if r is None:
                        return "capped"
                    return format(r[key], spec) if r["ok"] else "failed"

                print(
                    f"{pname:<18} {rtol:>6g} {s:>8.3g} {explicit.__name__:>8} "
                    f"{cell(ex, 'evals', 'd'):>8} {cell(ex, 'seconds', '.3f'):>7} "
                    f"{cell(rk, 'evals', 'd'):>9} {cell(rk, 'seconds', '.3f'):>7} "
                    f"{row.get('evals_ratio', np.nan):>12.3f} "
                    f"{row.get('seconds_ratio', np.nan):>8.3f} {row.get('out_diff', np.nan):>9.1e}",
                    flush=True,
                )
            s_arr = np.array([r["stiffness"] for r in rows])
            cross = {}
            for key in ("evals_ratio", "seconds_ratio"):
                ratio = np.array([r.get(key, np.nan) for r in rows])
                cross[key] = crossover(s_arr, ratio)
            print(
                f"  crossover (lambda_max t1 above which RKC is cheaper): evaluations "
                f"{cross['evals_ratio']}, seconds {cross['seconds_ratio']}",
                flush=True,
            )
            results[pname]["rtols"][f"{rtol:g}"] = {"rows": rows, "crossover": cross}
    write_json(
        {
            "problems": results,
            "stiff_threshold_now": {f"{r:g}": gf.stiff_threshold(r) for r in rtols},
            "environment": {
                "platform": platform.platform(),
                "jax": version("jax"),
                "diffrax": version("diffrax"),
                "devices": str(jax.devices()),
            },
            "command": "python benchmarks/bench_stiff_switch.py " + " ".join(sys.argv[1:]),
        },
        args.out / "stiff_switch.json",
    )
    plot(results, rtols, args.out / "stiff_switch.png")


def plot(results: dict[str, Any], rtols: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rtols), figsize=(5 * len(rtols), 4.8), layout="constrained")
    axes = np.atleast_1d(axes)
    colors = iter(["tab:blue", "tab:green", "tab:red", "tab:purple"])
    for pname, res in results.items():
        color = next(colors)
        for ax, rtol in zip(axes, rtols):
            entry = res["rtols"][f"{rtol:g}"]
            for key, style, label in (
                ("explicit", "--", res["explicit"]),
                ("rkc", "-", "RKC"),
            ):
                pts = [r for r in entry["rows"] if r[key] is not None and r[key]["ok"]]
                ax.loglog(
                    [r["stiffness"] for r in pts],
                    [r[key]["evals"] for r in pts],
                    style,
                    marker="o" if key == "rkc" else "s",
                    ms=4,
                    color=color,
                    label=f"{pname}: {label}",
                )
            c = entry["crossover"]["evals_ratio"]
            if c:
                ax.axvline(c, color=color, ls=":", lw=1.5)
    for ax, rtol in zip(axes, rtols):
        ax.axvline(
            gf.stiff_threshold(rtol), color="k", ls="-.", lw=1, label="stiff_threshold(rtol) now"
        )
        ax.set_title(f"rtol = {rtol:g} (atol = rtol/100); dotted: crossovers")
        ax.set_xlabel(r"$\lambda_{\max}(w_0)\, t_1$")
        ax.set_ylabel("evaluations (gradients + jvps)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
