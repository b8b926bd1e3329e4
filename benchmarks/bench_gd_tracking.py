"""Tracking gradient descent: GD's output path distance to the gradient flow and to its
modified flow on a smooth net of Fig. 1c's sizes, at steps eta * lambda_max(w0) = 0.1, 0.3,
0.5 and 0.9, each reference shown tight (two tolerances agree to a tenth of the smallest gap).

    python benchmarks/bench_gd_tracking.py [--steps 0.1,0.3,0.5,0.9] [--num-steps 200]
        [--d 100 --n 1000 --m 50] [--activation tanh] [--orders 1,2] [--json PATH]

The path distance is the largest output distance over GD's saved iterates from the 10th on
(`GDFlowDistance.path_distance(first=10)`); the goal is the modified flow at least 10x closer
than the flow at 0.1, 0.3 and 0.5. The modified flows are the first-order equation
(`modified_order=1`, GD to O(eta^2): the ratio to the plain flow's O(eta) gap falls like
1/eta) and the second-order one (`modified_order=2`, GD to O(eta^3)).
"""

import argparse
import json
import time

import jax
import numpy as np

import gradflow as gf

jax.config.update("jax_enable_x64", True)


def distances(problem, a, b):
    # GD's metric (`gd_flow_distance`): the empirical norm of alpha (h(a_k) - h(b_k)).
    def one(p, q):
        return gf.empirical_norm(problem.alpha * (problem.h(p) - problem.h(q)))

    return np.asarray(jax.vmap(one)(a, b))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", default="0.1,0.3,0.5,0.9")
    p.add_argument("--num-steps", type=int, default=200)
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--m", type=int, default=50)
    p.add_argument("--activation", default="tanh")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--first", type=int, default=10)
    p.add_argument("--orders", default="1,2", help="orders of the modified equation")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    orders = [int(o) for o in args.orders.split(",")]
    kd, kp = jax.random.split(jax.random.PRNGKey(0))
    data = gf.data.teacher_student(kd, args.n, 10, args.d)
    model = gf.models.TwoLayer(args.m, args.activation)
    problem = gf.Problem(model, model.init(kp, args.d), data.x_train, gf.SquareLoss(data.y_train))
    lam0 = float(gf.sharpness(problem))
    print(f"{args.activation} net, d={args.d} n={args.n} m={args.m}: lambda_max(w0) = {lam0:.6g}")
    rows = []
    for c in (float(s) for s in args.steps.split(",")):
        eta = c / lam0
        t0 = time.perf_counter()
        plain = gf.gd_flow_distance(problem, eta, args.num_steps, rtol=args.rtol)
        its = np.asarray(plain.iterations)
        kw = dict(t1=args.num_steps * eta, ts=np.asarray(plain.ts), linearized=False)
        gd = gf.solve(problem, solver=gf.GradientDescent(eta), save_params=True, **kw)

        def modified(r, order):
            return gf.solve(
                problem,
                rtol=r,
                atol=r / 100,
                modified_step=eta,
                modified_order=order,
                save_params=True,
                throw=True,
                **kw,
            )

        late = its >= args.first
        flow_path = plain.path_distance(args.first)
        row = {
            "eta_lambda0": c,
            "learning_rate": eta,
            "max_eta_sharpness": float(np.nanmax(np.asarray(plain.eta_sharpness))),
            "flow_path_distance": flow_path,
            "flow_reference_tightness": plain.tightness,
            "flow_reference_tight": plain.reference_tight,
            "modified": {},
        }
        for order in orders:
            loose, tight = modified(args.rtol, order), modified(args.rtol / 100, order)
            mod = distances(problem, gd.params, tight.params)
            mod_ref = distances(problem, loose.params, tight.params)
            mod_path = float(np.max(mod[late]))
            row["modified"][str(order)] = {
                "path_distance": mod_path,
                "ratio": flow_path / mod_path,
                "reference_error": float(np.max(mod_ref)),
                "smallest_gap": float(np.min(mod[its > 0])),
                "reference_tight": bool(np.max(mod_ref) <= 0.1 * np.min(mod[its > 0])),
            }
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        parts = [
            f"order {o}: {m['path_distance']:.3e}, ratio {m['ratio']:.1f}, reference "
            f"{'tight' if m['reference_tight'] else 'NOT tight'} ({m['reference_error']:.1e} vs "
            f"smallest gap {m['smallest_gap']:.1e})"
            for o, m in row["modified"].items()
        ]
        print(
            f"eta*lambda0 = {c:g}: max eta*lambda {row['max_eta_sharpness']:.3f}; path distance "
            f"(k >= {args.first}) flow {flow_path:.3e} (reference tight: "
            f"{plain.reference_tight}, {plain.tightness:.3g}); modified flow "
            + "; ".join(parts)
            + f"; {row['seconds']:.0f} s",
            flush=True,
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
