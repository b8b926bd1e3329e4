r"""Wall time of one sweep over the scale $\alpha$ with `gradflow.solve`, and a check that the
sweep compiles once.

A centered tanh two-layer net (`gf.models.TwoLayer`, `center=True`) is fitted with the square loss
to the outputs of a random teacher network; for each $\alpha$ in `logspace(0, 4, 9)` the joint flow
(`linearized=True`, the default) is integrated to `t1 = 10` with Tsit5 and `rtol = 1e-8`. Since
`alpha` is an array leaf of the `gf.Problem`, `problem.with_alpha(a)` must not trigger a
recompilation: every XLA compilation in the process is counted through `jax.monitoring`, per solve.

Reported: the first (cold) solve, which includes tracing and compilation; each later solve; the
total; a second, warm pass over the same alphas, whose first entry gives the compile time as
`cold - warm`; the steps per solve. As a reference for the cost per vector-field evaluation, one
jitted `jax.lax.fori_loop` of Euler steps on the same joint system (one gradient of $F_\alpha$ and
one of $\bar F_\alpha$ per step) is timed in the same process.

Run: `python benchmarks/bench_sweep.py [--json out.json]`.
"""

import argparse
import json
import os
import platform
import time
from collections import Counter
from importlib.metadata import version
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _baselines import joint_euler_fori

import gradflow as gf

# The event jax records once per XLA compilation (jax._src.dispatch.BACKEND_COMPILE_EVENT).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Counts XLA compilations in this process, by function name."""

    def __init__(self):
        self.names: Counter[str] = Counter()
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        del duration
        if event == _COMPILE_EVENT:
            self.names[str(kwargs.get("fun_name", "?"))] += 1

    @property
    def total(self) -> int:
        return sum(self.names.values())


def make_problem(n: int, d: int, m: int, teacher_width: int, seed: int) -> gf.Problem:
    """A centered tanh student of width `m` and square loss on a tanh teacher's outputs."""
    kx, kt, ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (n, d))
    teacher = gf.models.TwoLayer(teacher_width, "tanh")
    y = teacher(teacher.init(kt, d), x)
    student = gf.models.TwoLayer(m, "tanh")
    return gf.Problem(student, student.init(ks, d), x, gf.SquareLoss(y), center=True)


def timed_solve(
    problem: gf.Problem, alpha: float, counter: CompileCounter, **kwargs: Any
) -> dict[str, Any]:
    """Solve at `alpha`; wall time, compilations, solver statistics and a few end values."""
    before = Counter(counter.names)
    t0 = time.perf_counter()
    sol = gf.solve(problem.with_alpha(alpha), **kwargs)
    jax.block_until_ready(sol)
    wall = time.perf_counter() - t0
    return {
        "alpha": alpha,
        "wall_s": wall,
        "compilations": counter.total - before.total(),
        "compiled": dict(counter.names - before),
        "succeeded": sol.succeeded,
        "num_steps": int(sol.stats["num_steps"]),
        "num_accepted_steps": int(sol.stats["num_accepted_steps"]),
        "num_rejected_steps": int(sol.stats["num_rejected_steps"]),
        "num_vector_field_evals": int(sol.stats["num_vector_field_evals"]),
        "final_loss": float(sol.loss[-1]),
        "max_output_gap": float(jnp.max(sol.output_gap)),
        "final_param_distance": float(sol.param_distance[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50, help="samples (default 50)")
    parser.add_argument("--d", type=int, default=5, help="input dimension (default 5)")
    parser.add_argument("--m", type=int, default=200, help="student width (default 200)")
    parser.add_argument("--teacher-width", type=int, default=5, help="teacher width (default 5)")
    parser.add_argument("--log10-alpha", type=float, nargs=2, default=(0.0, 4.0), metavar="A")
    parser.add_argument("--num-alphas", type=int, default=9, help="alphas (default 9)")
    parser.add_argument("--t1", type=float, default=10.0, help="final time (default 10)")
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--atol", type=float, default=1e-10)
    parser.add_argument("--fori-steps", type=int, default=2000, help="steps of the reference loop")
    parser.add_argument("--repeats", type=int, default=10, help="runs of the reference loop (10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()

    counter = CompileCounter()
    problem = make_problem(args.n, args.d, args.m, args.teacher_width, args.seed)
    alphas = np.logspace(*args.log10_alpha, args.num_alphas)
    solve_kwargs = dict(t1=args.t1, rtol=args.rtol, atol=args.atol)
    print(
        f"centered TwoLayer({args.m}, 'tanh'), n={args.n}, d={args.d}, {problem.num_params} "
        f"parameters, {problem.dtype}; Tsit5, t1={args.t1}, rtol={args.rtol}, atol={args.atol}, "
        f"linearized=True; {jax.devices()[0].platform}, {os.cpu_count()} cores"
    )

    sweep_start = time.perf_counter()
    first = [timed_solve(problem, float(a), counter, **solve_kwargs) for a in alphas]
    sweep_total = time.perf_counter() - sweep_start
    second = [timed_solve(problem, float(a), counter, **solve_kwargs) for a in alphas]

    header = (
        f"{'alpha':>9} {'pass 1 s':>9} {'pass 2 s':>9} {'compiles':>8} {'steps':>6} "
        f"{'rejected':>8} {'evals':>6} {'ok':>3} {'final loss':>11} {'max out gap':>11}"
    )
    print(header)
    print("-" * len(header))
    for r1, r2 in zip(first, second):
        print(
            f"{r1['alpha']:>9.3g} {r1['wall_s']:>9.3f} {r2['wall_s']:>9.3f} "
            f"{r1['compilations'] + r2['compilations']:>8d} {r1['num_steps']:>6d} "
            f"{r1['num_rejected_steps']:>8d} {r1['num_vector_field_evals']:>6d} "
            f"{'yes' if r1['succeeded'] else 'NO':>3} {r1['final_loss']:>11.3e} "
            f"{r1['max_output_gap']:>11.3e}"
        )

    cold = first[0]["wall_s"]
    warm_runs = first[1:] + second
    warm_median = float(np.median([r["wall_s"] for r in warm_runs]))
    later_compiles = sum(r["compilations"] for r in warm_runs)
    evals = np.array([r["num_vector_field_evals"] for r in first])
    per_eval_solve = min(r["wall_s"] / r["num_vector_field_evals"] for r in warm_runs)

    loop = joint_euler_fori(args.fori_steps, 1e-3)
    jax.block_until_ready(loop(problem))
    loop_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(loop(problem))
        loop_times.append(time.perf_counter() - t0)
    per_eval_fori = min(loop_times) / args.fori_steps

    # The same alphas through gf.sweep_alpha (the one runner, gf.sweep, with batch_size=1),
    # warm, against the warm loop of gf.solve above: what the runner adds per point.
    before = counter.total
    runner_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        swept = gf.sweep_alpha(problem, alphas, **solve_kwargs)
        runner_times.append(time.perf_counter() - t0)
    runner = min(runner_times)
    loop_warm = sum(r["wall_s"] for r in second)
    same = max(
        abs(swept.sup["output_gap"][i] - r["max_output_gap"]) / r["max_output_gap"]
        for i, r in enumerate(first)
    )
    print(f"\nsweep of {len(alphas)} solves (pass 1): {sweep_total:.2f} s")
    print(
        f"cold solve (alpha={alphas[0]:.3g}): {cold:.2f} s; "
        f"warm re-solve: {second[0]['wall_s']:.3f} s"
    )
    print(f"compile + trace estimate (cold - warm): {cold - second[0]['wall_s']:.2f} s")
    print(f"warm solves: median {warm_median:.3f} s; warm / cold = {warm_median / cold:.4f}")
    print(
        f"compilations: {first[0]['compilations']} in the first solve, {later_compiles} in the "
        f"{len(warm_runs)} later ones"
    )
    print(
        f"gf.sweep_alpha, warm (best of 3): {runner:.3f} s for {len(alphas)} alphas, against "
        f"{loop_warm:.3f} s for the warm loop of gf.solve: ratio {runner / loop_warm:.2f}; "
        f"{counter.total - before} compilations; its sup output gaps equal the loop's to "
        f"{same:.1e} (relative)"
    )
    print(f"  first solve compiled: {first[0]['compiled']}")
    for r in warm_runs:
        if r["compilations"]:
            print(f"  RECOMPILED at alpha={r['alpha']:.3g}: {r['compiled']}")
    print(
        f"steps per solve: {min(r['num_steps'] for r in first)} to "
        f"{max(r['num_steps'] for r in first)}; vector-field evaluations: {evals.min()} to "
        f"{evals.max()}"
    )
    print(
        f"per evaluation (best): warm gf.solve (all costs) {1e6 * per_eval_solve:.1f} us, "
        f"jitted fori joint Euler step {1e6 * per_eval_fori:.1f} us, ratio "
        f"{per_eval_solve / per_eval_fori:.2f}"
    )

    if args.json:
        out = {
            "benchmark": "bench_sweep",
            "config": vars(args),
            "num_params": problem.num_params,
            "platform": jax.devices()[0].platform,
            "cpu_count": os.cpu_count(),
            "versions": {
                name: version(name) for name in ("jax", "jaxlib", "diffrax", "equinox", "gradflow")
            }
            | {"python": platform.python_version()},
            "sweep_total_s": sweep_total,
            "sweep_alpha_warm_s": runner,
            "solve_loop_warm_s": loop_warm,
            "cold_s": cold,
            "compile_estimate_s": cold - second[0]["wall_s"],
            "warm_median_s": warm_median,
            "warm_over_cold": warm_median / cold,
            "compilations_first_solve": first[0]["compilations"],
            "compilations_later_solves": later_compiles,
            "per_eval_solve_s": per_eval_solve,
            "per_eval_fori_s": per_eval_fori,
            "pass1": first,
            "pass2": second,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
