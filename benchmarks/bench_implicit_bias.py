r"""The flow's limit (`gf.solve(..., t1=math.inf)`) against the exact implicit bias of the
diagonal net (Woodworth et al. 2020, Theorem 1; `gf.implicit_bias_limit`), over the init scale.

For a sparse and a dense teacher (n = 12 equations, d = 30 unknowns), depth 2 and 3, and
a = 1e-3 ... 100: the solver `auto` chose, whether the solve reached its stop level, the
gradient evaluations it took (with the Jacobian-vector products of a stabilized solver), and
the relative error of the limit's beta, at the default stop level and at `stop_loss=1e-16`.
Issue 24's goals: error <= 1e-6 (depth 2), <= 1e-5 (depth 3), at most 2e4 evaluations per a.

Run: `python benchmarks/bench_implicit_bias.py [--max-steps 30000]` (about 3 minutes on 2 cores).
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf


def instance(teacher: str, n: int = 12, d: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    beta = np.zeros(d)
    beta[:3] = [1.0, -2.0, 1.5]
    if teacher == "dense":
        beta = 2 * rng.standard_normal(d) / np.sqrt(d)
    return x, x @ beta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=30_000)
    args = parser.parse_args()
    print("teacher depth        a  stop_loss  solver  reached  evaluations  error    seconds")
    for teacher in ("sparse", "dense"):
        x, y = instance(teacher)
        for depth in (2, 3):
            net = gf.models.DiagonalDifferenceNet(depth)
            for a in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
                for stop in (None, 1e-16):
                    start = time.perf_counter()
                    loss = gf.SquareLoss(jnp.asarray(y)[:, None])
                    params = net.init(x.shape[1], tau=a)
                    problem = gf.Problem(net, params, jnp.asarray(x), loss, alpha=1.0)
                    options = {} if stop is None else {"stop_loss": stop}
                    sol = gf.solve(problem, t1=math.inf, linearized=False, save_params=True,
                                   max_steps=args.max_steps, **options)  # fmt: skip
                    evals = int(sol.stats["num_vector_field_evals"])
                    evals += int(sol.stats.get("num_jvp_evals", 0))
                    error = float("nan")
                    if sol.succeeded:
                        last = jax.tree_util.tree_map(lambda p: p[-1], sol.params)
                        beta = np.asarray(net.beta(last))
                        ref = np.asarray(gf.implicit_bias_limit(x, y, a, depth=depth).beta)
                        error = float(np.linalg.norm(beta - ref) / np.linalg.norm(ref))
                    print(
                        f"{teacher:7s} {depth:5d} {a:8.0e} {str(stop):>10s} {sol.info.solver:7s} "
                        f"{str(bool(sol.succeeded)):7s} {evals:12d} {error:8.1e} "
                        f"{time.perf_counter() - start:8.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
