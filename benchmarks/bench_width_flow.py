r"""Fig. 2 points as gradient flows against the paper's GD: which method runs the full figure.

For each scaling and width in `--widths`, trial 0 of `gradflow reproduce width` at the paper's
sizes (d = 100, n = n_test = 1000, teacher x100, 2.5e4 steps of $1/m$ with $1/\sqrt m$ and
$0.05/m$ with $1/m$) is built through the experiment's own code and solved in one process:

- the paper's GD (`gf.GradientDescent(eta)`, 2.5e4 steps);
- the gradient flow over the same horizon with the solver `solver="auto"` picks for it (RKC: the
  flows are stiff) at each of `--rtols` (`atol = rtol / 100`);
- a reference flow (`--ref-solver`, Bosh3) at `--check-rtol`, whose tightness is shown by a second
  one at `--ref-rtol`.

Metric: the output path error on the training inputs, relative to the targets,
$\max_t \|\alpha h(w(t)) - \alpha h(w_{ref}(t))\|_F / \|y\|_F$ with the empirical norm, over
the experiment's 60 log-spaced save times (GD iterates 1 to 2.5e4); and the relative difference of
the end-of-training test loss. Each run is compiled on a horizon 1/100 as long, then timed once.
"x GD" is GD's time over the run's. A flow qualifies for the figure where its path error is at
most `--goal` (1e-3) and it is faster than GD.

Run: `python benchmarks/bench_width_flow.py [--widths 128,512] [--scalings sqrt,mean_field]
[--rtols 1e-3,1e-4] [--json PATH]`.
"""

import argparse
import json
import time
from pathlib import Path

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf
from gradflow import data as gdata, experiments as ex
from gradflow.experiments import (
    log_spaced_steps,
    paper_init,
    paper_learning_rate,
    paper_problem,
)


def build(exp: ex.WidthSweep, scaling: str, width: int):
    output_scale, step = exp.output_scale_and_step(scaling, width)
    key = jax.random.fold_in(jax.random.PRNGKey(exp.seed), 0)
    kd, kp = jax.random.split(key)
    data = gdata.teacher_student(
        kd, exp.n_train, exp.n_test, exp.dim, output_scale=exp.teacher_scale
    )
    params = paper_init(jax.random.fold_in(kp, width), width, exp.dim, doubled=False)
    problem = paper_problem(params, data.x_train, data.y_train, output_scale)
    eta = paper_learning_rate(width, step)
    return problem, data, eta


def run(problem, data, eta, num_steps, num_saves, solver, rtol):
    iters = log_spaced_steps(num_steps, num_saves)
    kw = (
        {"solver": gf.GradientDescent(eta)}
        if solver is None
        else {"solver": solver, "rtol": rtol, "atol": rtol / 100, "max_steps": 1_000_000}
    )

    def go(steps, ts):
        sol = gf.solve(
            problem, t1=steps * eta, ts=ts * eta, linearized=False, save_params=True, **kw
        )
        jax.block_until_ready(sol.loss)
        return sol

    short = max(1, num_steps // 100)
    go(short, log_spaced_steps(short, num_saves))  # compile
    start = time.perf_counter()
    sol = go(num_steps, iters)
    seconds = time.perf_counter() - start
    outs = jax.vmap(lambda p: problem.predict(p, problem.inputs))(sol.params)
    test = jax.vmap(lambda p: gf.SquareLoss(data.y_test)(problem.predict(p, data.x_test)))(
        sol.params
    )
    evals = int(sol.stats.get("num_vector_field_evals", sol.stats["num_steps"])) + int(
        sol.stats.get("num_jvp_evals", 0)
    )
    return {
        "seconds": seconds,
        "evaluations": evals,
        "outputs": np.asarray(outs),
        "test_end": float(test[-1]),
        "result": sol.message or "successful",
    }


def path_error(a, b, scale):
    diff = jax.vmap(gf.empirical_norm)(jnp.asarray(a) - jnp.asarray(b))
    return float(jnp.max(diff)) / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="128,512")
    parser.add_argument("--scalings", default="sqrt,mean_field")
    parser.add_argument("--rtols", default="1e-3,1e-4")
    parser.add_argument("--ref-rtol", type=float, default=1e-6)
    parser.add_argument("--check-rtol", type=float, default=1e-7)
    parser.add_argument(
        "--ref-solver",
        default="Bosh3",
        help="diffrax solver of the reference and its check (explicit: stable at the accuracy "
        "asked; RKC at tight tolerances rejects many steps at the kinks)",
    )
    parser.add_argument("--goal", type=float, default=1e-3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    exp = ex.WidthSweep()
    rows = []
    print(
        f"{'scaling':>10} {'m':>4} {'method':>12} {'seconds':>8} {'x GD':>6} {'evals':>7} "
        f"{'path err':>9} {'test end':>10} {'d test':>9}"
    )
    for scaling in args.scalings.split(","):
        for width in (int(m) for m in args.widths.split(",")):
            problem, data, eta = build(exp, scaling, width)
            t1 = exp.num_steps * eta
            solver = getattr(dfx, args.ref_solver)()
            flow = {"solver": args.ref_solver}
            ref = run(problem, data, eta, exp.num_steps, exp.num_saves, solver, args.ref_rtol)
            chk = run(problem, data, eta, exp.num_steps, exp.num_saves, solver, args.check_rtol)
            scale = float(gf.empirical_norm(problem.loss.targets))
            tight = path_error(ref["outputs"], chk["outputs"], scale)
            runs = {"GD": run(problem, data, eta, exp.num_steps, exp.num_saves, None, 0.0)}
            for r in (float(x) for x in args.rtols.split(",")):
                s = gf.choose_solver(problem, r, t1)
                runs[f"{type(s).__name__} {r:g}"] = run(
                    problem, data, eta, exp.num_steps, exp.num_saves, s, r
                )
            gd_seconds = runs["GD"]["seconds"]
            for name, out in runs.items():
                err = path_error(out["outputs"], chk["outputs"], scale)
                row = {
                    "scaling": scaling,
                    "width": width,
                    "method": name,
                    "seconds": out["seconds"],
                    "speedup_vs_gd": gd_seconds / out["seconds"],
                    "evaluations": out["evaluations"],
                    "path_error_relative": err,
                    "test_end": out["test_end"],
                    "test_end_relative_difference": out["test_end"] / chk["test_end"] - 1,
                    "result": out["result"],
                    "qualifies": bool(
                        name != "GD" and err <= args.goal and out["seconds"] < gd_seconds
                    ),
                }
                rows.append(row)
                print(
                    f"{scaling:>10} {width:>4} {name:>12} {out['seconds']:>8.2f} "
                    f"{row['speedup_vs_gd']:>6.2f} {out['evaluations']:>7d} {err:>9.2e} "
                    f"{out['test_end']:>10.5g} {row['test_end_relative_difference']:>9.1e}",
                    flush=True,
                )
            rows.append(
                {
                    "scaling": scaling,
                    "width": width,
                    "reference": f"{flow['solver']} {args.check_rtol:g}",
                    "reference_check": f"{flow['solver']} {args.ref_rtol:g}",
                    "reference_agreement": tight,
                    "seconds_reference": ref["seconds"],
                    "seconds_check": chk["seconds"],
                }
            )
            print(
                f"{scaling:>10} {width:>4}  reference {flow['solver']} {args.check_rtol:g}: agrees "
                f"with {args.ref_rtol:g} to {tight:.1e} (relative path error)",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps({"goal": args.goal, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
