"""The paper's gradient-descent runs audited against their flows, at the experiments' sizes.

For `tau-sweep` (Fig. 1c) at the taus given, `trajectories` (Fig. 1a/b) and `width` (Fig. 2) at
the widths given: the first trial's gradient descent, then the audit its experiment records
(`gd_audit`: eta * lambda_max at the saved iterates, GD's output distance to the gradient flow
and to the modified flow at the saved times), each timed, the flows checked by a second pair
of solves at `--rtol-check`. One JSON record per run with `--json PATH`.

    python benchmarks/bench_gd_audit.py --experiment tau-sweep --taus 0.01,0.1,1,3,10
    python benchmarks/bench_gd_audit.py --experiment trajectories
    python benchmarks/bench_gd_audit.py --experiment width --widths 8,64 --scalings sqrt
"""

import argparse
import json
import time

import jax
import numpy as np

import gradflow as gf
from gradflow._gd_flow import audit_gd
from gradflow.experiments import TauSweep, Trajectories, WidthSweep
from gradflow.experiments._two_layer import _train_options

jax.config.update("jax_enable_x64", True)


def runs(args):
    """(label, problem, test data, step, num_steps, num_saves) of each GD run audited."""
    if args.experiment == "tau-sweep":
        exp = TauSweep(**({"num_steps": args.num_steps} if args.num_steps else {}))
        key = jax.random.fold_in(jax.random.PRNGKey(exp.seed), 0)
        for tau in args.taus:
            problem, data = exp._trial(key, tau)
            yield f"tau={tau:g}", problem, data, exp.step(tau), exp.num_steps, exp.num_saves
    elif args.experiment == "trajectories":
        exp = Trajectories(**({"num_steps": args.num_steps} if args.num_steps else {}))
        data = exp._data()
        for tau in exp.taus:
            problem = exp.build(tau=tau, method="gd")
            yield f"tau={tau:g}", problem, data, exp.step, exp.num_steps, exp.num_saves
    else:
        exp = WidthSweep(**({"num_steps": args.num_steps} if args.num_steps else {}))
        key = jax.random.fold_in(jax.random.PRNGKey(exp.seed), 0)
        for scaling in args.scalings:
            for width in args.widths:
                s, step = exp.output_scale_and_step(scaling, width)
                kd, kp = jax.random.split(key)
                data = gf.data.teacher_student(
                    kd, exp.n_train, exp.n_test, exp.dim, output_scale=exp.teacher_scale
                )
                params = gf.experiments.paper_init(
                    jax.random.fold_in(kp, width), width, exp.dim, doubled=False
                )
                problem = gf.experiments.paper_problem(params, data.x_train, data.y_train, s)
                label = f"{scaling} m={width}"
                yield label, problem, data, step, exp.num_steps, exp.num_saves


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", choices=("tau-sweep", "trajectories", "width"))
    p.add_argument("--taus", default="0.01,0.1,1,3,10")
    p.add_argument("--widths", default="8,64")
    p.add_argument("--scalings", default="sqrt,mean_field")
    p.add_argument("--num-steps", type=int, default=None, help="default: the experiment's")
    p.add_argument("--rtol", type=float, default=None, help="default: the experiment's")
    p.add_argument("--rtol-check", type=float, default=None, help="default: rtol / 10")
    p.add_argument("--no-check", action="store_true", help="no second pair of flow solves")
    p.add_argument("--max-steps", type=int, default=None, help="default: the experiment's")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    args.taus = [float(t) for t in args.taus.split(",")]
    args.widths = [int(m) for m in args.widths.split(",")]
    args.scalings = args.scalings.split(",")
    defaults = {"tau-sweep": TauSweep, "width": WidthSweep}.get(args.experiment)
    if args.experiment == "trajectories":
        rtol, max_steps = Trajectories().rtol, 4_000_000
    else:
        rtol, max_steps = defaults().audit_rtol, defaults().audit_max_steps
    rtol = args.rtol or rtol
    max_steps = args.max_steps or max_steps
    check = args.rtol_check or rtol / 10
    out = []
    for label, problem, data, step, num_steps, num_saves in runs(args):
        width = problem.params0["a"].shape[-2]
        iters, kw = _train_options(width, step, num_steps, num_saves, None, 0.0)
        t0 = time.perf_counter()
        gd = gf.solve(problem, **kw)
        jax.block_until_ready(gd.params)
        t_gd = time.perf_counter() - t0
        t0 = time.perf_counter()
        audit = audit_gd(
            problem,
            gd.params,
            iters,
            kw["solver"].learning_rate,
            rtol=rtol,
            max_steps=max_steps,
            test=(data.x_test, data.y_test),
        )
        t_audit = time.perf_counter() - t0
        t0 = time.perf_counter()
        checked = (
            audit
            if args.no_check
            else audit_gd(
                problem,
                gd.params,
                iters,
                kw["solver"].learning_rate,
                rtol=check,
                max_steps=max_steps,
                test=(data.x_test, data.y_test),
            )
        )
        t_check = time.perf_counter() - t0
        d = audit.to_dict()
        dc = checked.to_dict()
        # The audit's flows against the tighter pair, at every save both reached.
        ref = max(
            float(np.nanmax(np.abs(np.asarray(audit.flow_distance - checked.flow_distance)))),
            float(
                np.nanmax(np.abs(np.asarray(audit.modified_distance - checked.modified_distance)))
            ),
        )
        row = {
            "run": label,
            "learning_rate": audit.learning_rate,
            "seconds_gd_one_trial": t_gd,
            "seconds_audit": t_audit,
            "seconds_check": t_check,
            "audit": d,
            "check": {
                k: dc[k]
                for k in (
                    "flow_distance",
                    "modified_distance",
                    "flow_result",
                    "modified_result",
                    "rtol",
                )
            },
            "distance_change_at_check": ref,
        }
        out.append(row)
        its = np.asarray(audit.iterations)
        d = {k: float("nan") if v is None else v for k, v in d.items()}
        note = "not checked" if args.no_check else f"distances move {ref:.2g} at rtol {check:g}"
        print(
            f"{label}: eta={audit.learning_rate:.4g} eta*lmax max {d['max_eta_sharpness']:.3g} "
            f"final {d['final_eta_sharpness']:.3g} EoS {d['edge_of_stability']} | max dist "
            f"flow {d['max_flow_distance']:.3g} modified {d['max_modified_distance']:.3g} "
            f"(x |y| {d['target_norm']:.3g}) | test end GD/flow/mod {d['test_loss_end']} | "
            f"results {d['flow_result']}, {d['modified_result']} / check {dc['flow_result']}, "
            f"{dc['modified_result']}; {note} | GD {gd.result} | "
            f"GD {t_gd:.1f}s audit {t_audit:.1f}s check {t_check:.1f}s",
            flush=True,
        )
        ratio = np.asarray(audit.flow_distance) / np.asarray(audit.modified_distance)
        for i in np.unique(np.linspace(1, len(its) - 1, 12).round().astype(int)):
            print(
                f"   k={its[i]:>6d} eta*lmax {float(audit.eta_sharpness[i]):.3f} "
                f"flow {float(audit.flow_distance[i]):.3e} "
                f"modified {float(audit.modified_distance[i]):.3e} ratio {ratio[i]:.3g}",
                flush=True,
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
