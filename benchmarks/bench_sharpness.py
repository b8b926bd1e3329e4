r"""What `gf.sharpness` costs and how close it is, and what one `gf.gd_flow_distance` call costs.

1. The cap `max_iters`: one estimate (two starts) at $w_0$ of a two-layer net, timed (best of
   `--repeats` after a compiling call) for several caps. Every Lanczos step solves the
   tridiagonal eigenproblem at the cap's size, so above some cap that, not the Hessian-vector
   products, sets the cost.
2. Accuracy: the default estimate against numpy's top eigenvalue of the dense Hessian
   (`jax.hessian`) at GD iterates of that net, with the products each took.
3. `gf.gd_flow_distance` on that net at $\eta\,\lambda_{\max}(w_0) = 0.5$: the whole call
   (compiled, then again) and its parts (GD, each flow solve, the sharpness along GD with the
   iterates one at a time, 8 at a time and all at once).

Run: `python benchmarks/bench_sharpness.py [--n 300 --d 30 --m 50] [--activation tanh]`
(about 5 minutes on 2 busy cores).
"""

import argparse
import json
import time

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

import gradflow as gf


def problem_of(args) -> gf.Problem:
    kx, kt, kp = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    x = jax.random.normal(kx, (args.n, args.d))
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = np.tanh(np.asarray(x) @ np.asarray(jax.random.normal(kt, (args.d, 1))))
    model = gf.models.TwoLayer(args.m, args.activation)
    return gf.Problem(
        model, model.init(kp, args.d, 1), x, gf.SquareLoss(y), alpha=args.alpha, center=True
    )


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--d", type=int, default=30)
    parser.add_argument("--m", type=int, default=50)
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--caps", default="32,48,50,64,100")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-steps", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    problem = problem_of(args)
    out = {"num_params": problem.num_params, "device": jax.devices()[0].device_kind}
    print(
        f"TwoLayer({args.m}, {args.activation}), n = {args.n}, d = {args.d}: "
        f"{problem.num_params} parameters, alpha = {args.alpha}"
    )

    print("\n1. one estimate at w0 (two starts) against the cap")
    print(f"{'max_iters':>9} {'products':>9} {'best time':>10}")
    out["caps"] = []
    for cap in (int(c) for c in args.caps.split(",")):

        def run(cap=cap):
            return gf.sharpness(problem, max_iters=cap).value.block_until_ready()

        seconds = best_time(run, args.repeats)
        steps = int(gf.sharpness(problem, max_iters=cap).steps)
        print(f"{cap:>9} {steps:>9} {seconds * 1e3:>8.1f} ms")
        out["caps"].append({"max_iters": cap, "steps": steps, "seconds": seconds})

    lam0 = float(gf.sharpness(problem))
    eta = 0.5 / lam0
    its = np.unique(np.geomspace(1, args.num_steps, 8).round().astype(int))
    its = np.concatenate([[0], its])
    gd = gf.solve(
        problem,
        ts=eta * its,
        solver=gf.GradientDescent(eta),
        linearized=False,
        save_params=True,
    )
    est = gf.sharpness_along(problem, gd.params)
    w0, unravel = ravel_pytree(problem.params0)
    hess = jax.jit(jax.hessian(lambda v: problem.objective(unravel(v))))
    print("\n2. the default estimate against the dense Hessian at GD iterates")
    print(f"{'k':>5} {'lambda_max':>12} {'lambda_min':>12} {'rel. error':>11} {'products':>9}")
    out["accuracy"] = []
    for i, k in enumerate(its):
        w = ravel_pytree(jax.tree_util.tree_map(lambda x: x[i], gd.params))[0]
        eigs = np.linalg.eigvalsh(np.asarray(hess(w)))
        rel = abs(float(est.value[i]) - eigs[-1]) / abs(eigs[-1])
        print(f"{k:>5} {eigs[-1]:>12.6g} {eigs[0]:>12.6g} {rel:>11.2e} {int(est.steps[i]):>9}")
        out["accuracy"].append(
            {"k": int(k), "lambda_max": eigs[-1], "lambda_min": eigs[0], "rel_error": rel}
        )

    print(
        f"\n3. gd_flow_distance at eta * lambda_max(w0) = 0.5, {args.num_steps} steps, 101 iterates"
    )
    parts = {}
    start = time.perf_counter()
    res = gf.gd_flow_distance(problem, eta, args.num_steps)
    parts["first call (compiles)"] = time.perf_counter() - start
    start = time.perf_counter()
    res = gf.gd_flow_distance(problem, eta, args.num_steps)
    parts["second call"] = time.perf_counter() - start
    ts = res.ts
    t1 = args.num_steps * eta

    def gd_solve():
        return gf.solve(
            problem,
            t1=t1,
            ts=ts,
            solver=gf.GradientDescent(eta),
            linearized=False,
            save_params=True,
        ).loss.block_until_ready()

    def flow_solve(r):
        return gf.solve(
            problem, t1=t1, ts=ts, rtol=r, atol=r / 100, linearized=False, save_params=True
        ).loss.block_until_ready()

    params = gf.solve(
        problem, t1=t1, ts=ts, solver=gf.GradientDescent(eta), linearized=False, save_params=True
    ).params
    parts["  GD"] = best_time(gd_solve, 3)
    parts["  flow, rtol 1e-8"] = best_time(lambda: flow_solve(1e-8), 3)
    parts["  flow, rtol 1e-10"] = best_time(lambda: flow_solve(1e-10), 3)
    for batch in (1, 8, None):

        def along(b=batch):
            return gf.sharpness_along(problem, params, batch_size=b).value.block_until_ready()

        parts[f"  sharpness along GD, batch_size={batch}"] = best_time(along, 3)
    for name, seconds in parts.items():
        print(f"{name:<40} {seconds:8.3f} s")
    print(res)
    out["gd_flow_distance"] = {"seconds": parts, "result": res.to_dict()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
