r"""The flow's limit (`gf.solve(..., t1=math.inf)`) against the exact implicit bias of the
diagonal net (Woodworth et al. 2020, Theorem 1; `gf.implicit_bias_limit`), over the init scale.

For a sparse and a dense teacher (n = 12 equations, d = 30 unknowns,
`gf.check.diagonal_regression`), depth 2 and 3, and a = 1e-3 ... 100: the solver `auto` chose,
whether the solve reached its stop (at the level or at the loss floor), the gradient
evaluations it took (with the Jacobian-vector products of a stabilized solver), the loss floor
at the stop and the relative error of the limit's beta, with the default options (`defaults`)
and with the implicit-bias check's (`check`: rtol 1e-9, atol 1e-11, 1e-12 at a > 1,
stop_loss 1e-16).
Issue 24's goals: error <= 1e-6 (depth 2), <= 1e-5 (depth 3), at most 2e4 evaluations per a,
the grid of one instance in under 2 minutes, compilation included.

Run: `python benchmarks/bench_implicit_bias.py [--teachers sparse,dense] [--settings
defaults,check] [--max-steps 30000]`; one teacher per process times its grid with its own
compilations.
"""

import argparse
import math
import time

import jax
import numpy as np

import gradflow as gf

SETTINGS = {
    "defaults": {},
    "check": {"rtol": 1e-9, "atol": 1e-11, "stop_loss": 1e-16, "lazy_atol": 1e-12},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", default="sparse,dense")
    parser.add_argument("--settings", default="defaults,check")
    parser.add_argument("--max-steps", type=int, default=30_000)
    args = parser.parse_args()
    print(
        "teacher  settings depth        a  solver  reached  evaluations  floor    error    seconds"
    )
    for teacher in args.teachers.split(","):
        spec = gf.check.diagonal_regression(teacher)
        x = np.asarray(spec.problem.inputs)
        y = np.asarray(spec.problem.loss.targets[:, 0])
        for setting in args.settings.split(","):
            start_grid = time.perf_counter()
            for depth in (2, 3):
                net = gf.models.DiagonalDifferenceNet(depth)
                for a in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
                    start = time.perf_counter()
                    params = net.init(x.shape[1], tau=a)
                    options = dict(SETTINGS[setting])
                    # The check's atol at a > 1 (see `check_implicit_bias`).
                    lazy_atol = options.pop("lazy_atol", None)
                    if lazy_atol is not None and a > 1:
                        options["atol"] = lazy_atol
                    problem = gf.Problem(net, params, spec.problem.inputs, spec.problem.loss)
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
                        f"{teacher:8s} {setting:8s} {depth:5d} {a:8.0e}  {sol.info.solver:7s} "
                        f"{str(bool(sol.succeeded)):7s} {evals:12d}  "
                        f"{float(sol.stats['stop_floor']):7.1e}  {error:7.1e} "
                        f"{time.perf_counter() - start:8.1f}",
                        flush=True,
                    )
            print(
                f"{teacher} {setting}: the grid in {time.perf_counter() - start_grid:.1f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
