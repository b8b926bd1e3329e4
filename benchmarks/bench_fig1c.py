r"""The paper's Fig. 1c flows over their full horizon: `solver="auto"` against the paper's GD.

For each $\tau$ in `--log10-taus` (one trial each; the paper runs 33 values of $\tau$ x 10 trials),
the flow of the paper's two-layer ReLU net (d = 100, n = 1000, m = 50, doubled init times
$\tau$) is integrated over the paper's horizon, 1e4 steps of $\min(10, 0.1/\tau^2)$, by:

- the paper's gradient descent (`gf.GradientDescent`, 1e4 steps);
- `gf.solve(..., solver="auto")` at `--rtol` (Heun at the default 1e-2);
- a reference, `gf.solve` with Bosh3 at `--ref-rtol` (1e-4). On the first 1 000 steps at
  $\tau = 0.01$ this solver agrees with a Richardson-extrapolated fine-step GD to 1.1e-4 (the
  level of that reference's own error; `bench_work_precision.py --flows relu`).

Error: output-space distance $\|\alpha h(w(t)) - \alpha h(w_{ref}(t))\|_F$ at 41 times spaced
evenly in log time (GD iterates 1, ..., 1e4), max over them ("path") and at the end ("final").
Reported: seconds and gradient evaluations of each, the errors, and an extrapolation of the full
experiment's time (330 flows) from the mean time per flow over the measured $\tau$ values.

Run: `python benchmarks/bench_fig1c.py [--log10-taus -2,-1,0,1] [--json fig1c.json]`.
"""

import argparse
import json
import time
from pathlib import Path

import diffrax as dfx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow import data as gdata
from gradflow.experiments import paper_init, paper_learning_rate, paper_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log10-taus", default="-2,-1,0,1")
    parser.add_argument("--steps", type=int, default=10_000, help="paper GD steps")
    parser.add_argument("--rtol", type=float, default=1e-2)
    parser.add_argument("--ref-rtol", type=float, default=1e-4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    taus = [10.0 ** float(v) for v in args.log10_taus.split(",")]
    kd, kp = jax.random.split(jax.random.PRNGKey(0))
    data = gdata.teacher_student(kd, 1000, 1000, 100)
    rows = []
    hdr = f"{'tau':>7} {'method':<22} {'evals':>7} {'seconds':>8} {'path err':>9} {'final err':>9}"
    print(hdr)
    for tau in taus:
        params = paper_init(kp, 50, 100, tau=tau)
        problem = paper_problem(params, data.x_train, data.y_train, 1.0)
        step = min(10.0, 0.1 / tau**2)
        eta = paper_learning_rate(50, step)
        t1 = args.steps * eta
        iters = np.unique(np.geomspace(1, args.steps, 41).round())
        ts = iters * eta
        _, unravel = ravel_pytree(problem.params0)

        def outputs(sol, problem=problem):
            return np.asarray(jax.vmap(lambda p: problem.alpha * problem.h(p))(sol.params))

        runs = {
            "paper GD": lambda: gf.solve(
                problem,
                t1=t1,
                ts=ts,
                solver=gf.GradientDescent(eta),
                linearized=False,
                save_params=True,
            ),
            f"auto rtol={args.rtol:g}": lambda: gf.solve(
                problem,
                t1=t1,
                ts=ts,
                rtol=args.rtol,
                atol=args.rtol / 100,
                linearized=False,
                save_params=True,
                max_steps=1_000_000,
            ),
            f"Bosh3 rtol={args.ref_rtol:g} (ref)": lambda: gf.solve(
                problem,
                t1=t1,
                ts=ts,
                solver=dfx.Bosh3(),
                rtol=args.ref_rtol,
                atol=args.ref_rtol / 100,
                linearized=False,
                save_params=True,
                max_steps=1_000_000,
            ),
        }
        results = {}
        for name, fn in runs.items():
            if tau == taus[0]:
                fn()  # compile (shapes are shared by every tau)
            start = time.perf_counter()
            sol = fn()
            jax.block_until_ready(sol.params)
            seconds = time.perf_counter() - start
            results[name] = (sol, seconds, outputs(sol))
        ref = results[list(runs)[-1]][2]
        for name, (sol, seconds, out) in results.items():
            diff = out - ref
            err = np.sqrt(np.mean(np.sum(diff**2, -1), -1))
            evals = int(sol.stats.get("num_vector_field_evals", sol.stats["num_steps"]))
            row = {
                "tau": tau,
                "paper_step": step,
                "method": name,
                "solver": sol.info.solver,
                "succeeded": sol.succeeded,
                "evals": evals,
                "seconds": seconds,
                "path_error": float(np.max(err)),
                "final_error": float(err[-1]),
                "final_loss": float(sol.loss[-1]),
            }
            rows.append(row)
            print(
                f"{tau:>7.3g} {name:<22} {evals:>7} {seconds:>8.2f} {row['path_error']:>9.2e} "
                f"{row['final_error']:>9.2e}"
            )
    summary = {}
    for name in runs:
        secs = [r["seconds"] for r in rows if r["method"] == name]
        summary[name] = {"mean_seconds_per_flow": float(np.mean(secs)), "flows": len(secs)}
        summary[name]["extrapolated_330_flows_minutes"] = 330 * float(np.mean(secs)) / 60
    gd, auto = summary["paper GD"], summary[f"auto rtol={args.rtol:g}"]
    ratio = gd["mean_seconds_per_flow"] / auto["mean_seconds_per_flow"]
    print(
        f"mean per flow: paper GD {gd['mean_seconds_per_flow']:.2f} s, auto "
        f"{auto['mean_seconds_per_flow']:.2f} s (ratio {ratio:.2f}); 330 flows: "
        f"{gd['extrapolated_330_flows_minutes']:.1f} vs "
        f"{auto['extrapolated_330_flows_minutes']:.1f} min"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"rows": rows, "summary": summary, "gd_over_auto": ratio}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
