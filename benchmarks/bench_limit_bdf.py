r"""The diagonal nets' flows to their limits with a BDF method that reuses its Jacobian
(scipy's `solve_ivp(method="BDF")`, variable order 1-5, called directly), against
`gf.solve(..., t1=math.inf, solver=gf.Tsit5ThenRKC())`. (`"auto"` takes `gf.BDF`, the same
scipy method run by `gf.solve`, for these flows: `bench_implicit_bias.py` measures it.)

The same instances, scales, tolerances and stop as `gradflow check implicit_bias` (rtol 1e-9,
atol 1e-11 and 1e-12 at a > 1, stop where the loss is 1e-16 of its initial value, located
by scipy's event root finding), from u = v = a at alpha = 1. The vector field is gf's
objective's gradient, compiled by JAX, and the Jacobian its dense Hessian
(`jax.jacfwd` of the gradient: p = 2d = 60 Hessian-vector products, so a Jacobian counts as 60
evaluations). Printed per point: the evaluations of each (gradients, plus 60 per Jacobian for
BDF; gradients and RKC's products for gf), the Jacobians BDF computed, the stop time, and the
relative error of the limit's beta against `gf.implicit_bias_limit`. Tsit5ThenRKC's depth-3
solves at a <= 1e-2 take 10-20 s each and 2-3 million evaluations.

Run: `python benchmarks/bench_limit_bdf.py [--teachers sparse,dense] [--depths 2,3]
[--scales 1e-3,1e-2,0.1,1,10,100] [--skip-gf]` (`--skip-gf`: BDF only).
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.integrate import solve_ivp

import gradflow as gf

RTOL, ATOL, LAZY_ATOL, STOP = 1e-9, 1e-11, 1e-12, 1e-16


def bdf_limit(problem):
    w0, unravel = ravel_pytree(problem.params0)

    def objective(w):
        return problem.objective(unravel(w))

    field = jax.jit(lambda w: -jax.grad(objective)(w))
    jacobian = jax.jit(jax.jacfwd(lambda w: -jax.grad(objective)(w)))
    loss = jax.jit(objective)
    initial = float(loss(w0))

    def stop(t, w):
        return float(loss(w)) / initial - STOP

    stop.terminal = True
    return field, jacobian, stop, w0, unravel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", default="sparse,dense")
    parser.add_argument("--depths", default="2,3")
    parser.add_argument("--scales", default="1e-3,1e-2,0.1,1,10,100")
    parser.add_argument("--skip-gf", action="store_true")
    args = parser.parse_args()
    print("teacher depth      a | BDF: evaluations jacobians  stop time  error  seconds"
          " | gf: solver evaluations error seconds")  # fmt: skip
    for teacher in args.teachers.split(","):
        spec = gf.check.diagonal_regression(teacher)
        x = np.asarray(spec.problem.inputs)
        y = np.asarray(spec.problem.loss.targets[:, 0])
        for depth in (int(d) for d in args.depths.split(",")):
            net = gf.models.DiagonalDifferenceNet(depth)
            for a in (float(v) for v in args.scales.split(",")):
                problem = gf.Problem(net, net.init(x.shape[1], tau=a), spec.problem.inputs,
                                     spec.problem.loss)  # fmt: skip
                ref = np.asarray(gf.implicit_bias_limit(x, y, a, depth=depth).beta)
                atol = LAZY_ATOL if a > 1 else ATOL
                field, jacobian, stop, w0, unravel = bdf_limit(problem)
                p = w0.size
                start = time.perf_counter()
                run = solve_ivp(lambda t, w: np.asarray(field(w)), (0.0, 1e15), np.asarray(w0),
                                method="BDF", jac=lambda t, w: np.asarray(jacobian(w)),
                                rtol=RTOL, atol=atol, events=stop)  # fmt: skip
                seconds = time.perf_counter() - start
                beta = np.asarray(net.beta(unravel(jnp.asarray(run.y[:, -1]))))
                error = np.linalg.norm(beta - ref) / np.linalg.norm(ref)
                reached = run.status == 1
                line = (
                    f"{teacher:7s} {depth:5d} {a:6.0e} | {run.nfev + p * run.njev:10d} "
                    f"{run.njev:9d} {run.t[-1]:10.3g} {error if reached else math.nan:7.1e} "
                    f"{seconds:7.1f}"
                )
                if not args.skip_gf:
                    start = time.perf_counter()
                    sol = gf.solve(problem, t1=math.inf, linearized=False, save_params=True,
                                   rtol=RTOL, atol=atol, stop_loss=STOP, max_steps=30_000,
                                   solver=gf.Tsit5ThenRKC())  # fmt: skip
                    evals = int(sol.stats["num_vector_field_evals"])
                    evals += int(sol.stats.get("num_jvp_evals", 0))
                    gf_error = math.nan
                    if sol.succeeded:
                        last = jax.tree_util.tree_map(lambda v: v[-1], sol.params)
                        gf_beta = np.asarray(net.beta(last))
                        gf_error = np.linalg.norm(gf_beta - ref) / np.linalg.norm(ref)
                    line += (
                        f" | {sol.info.solver} {evals:9d} {gf_error:7.1e} "
                        f"{time.perf_counter() - start:6.1f}"
                    )
                print(line, flush=True)


if __name__ == "__main__":
    main()
