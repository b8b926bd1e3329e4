r"""Cost of one vector-field evaluation inside `gradflow.solve`, against a bare jitted gradient.

The flow $w' = -\nabla F_\alpha(w)$ costs one gradient per vector-field evaluation, so a solve with
`linearized=False` should cost little more per evaluation than `jax.grad` itself. The baselines run
in the same process on the same `gf.Problem`:

- `jit(grad), Python loop`: `jax.jit(jax.grad(problem.objective))` called from Python, with one
  `block_until_ready` per call (so it includes the dispatch cost of each call);
- `fori(grad)`: the Euler iteration $w \leftarrow w - \eta \nabla F_\alpha(w)$ inside one jitted
  `jax.lax.fori_loop` (no Python dispatch): the work of an Euler solve without a solver. This is the
  reference for the ratios;
- `diffrax Euler (hand-written)`: `diffrax.diffeqsolve` on the same field, saving only `y(t1)`,
  which separates the cost of diffrax's step loop from gradflow's own;
- `fori(grad + linear grad)`: the reference for the joint flow (`linearized=True`), whose field
  costs one gradient of $F_\alpha$ plus one JVP and one VJP of the linear model; the linear model
  is built once by `jax.linearize` outside the loop, as gradflow does.

Each case runs once (compiling it), then `--repeats` times round-robin over the cases, so that a
burst of load from other processes hits all cases alike. The table shows the best and the median
time per evaluation, and the ratio of best times against the matching `fori` reference.

Run: `python benchmarks/bench_overhead.py [--n 200 --d 100 --m 500 --json out.json]`.
"""

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, NamedTuple

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from _baselines import joint_euler_fori

import gradflow as gf


class Case(NamedTuple):
    """One timed workload: `run()` does `evals` gradient or vector-field evaluations; its time
    per evaluation is compared with that of the case named `reference`."""

    name: str
    run: Callable[[], Any]
    evals: int
    reference: str | None


def make_problem(n: int, d: int, m: int, activation: str, alpha: float, seed: int) -> gf.Problem:
    """A two-layer net on Gaussian inputs; square loss on a smooth single-index target."""
    kx, kw, kt = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, (n, d))
    direction = jax.random.normal(kt, (d,)) / np.sqrt(d)
    y = jnp.tanh(2.0 * x @ direction)[:, None]
    model = gf.models.TwoLayer(m, activation)
    return gf.Problem(model, model.init(kw, d), x, gf.SquareLoss(y), alpha=alpha)


def grad_python_loop(problem: gf.Problem, steps: int) -> Callable[[], Any]:
    """`steps` calls of the jitted gradient from Python, each waited for."""
    grad = jax.jit(jax.grad(problem.objective))

    def run():
        out = None
        for _ in range(steps):
            out = jax.block_until_ready(grad(problem.params0))
        return out

    return run


def grad_fori(problem: gf.Problem, steps: int, eta: float) -> Callable[[], Any]:
    r"""`steps` Euler steps $w \leftarrow w - \eta \nabla F_\alpha(w)$ in one jitted loop."""

    @jax.jit
    def loop(problem: gf.Problem):
        def body(i, w):
            del i
            g = jax.grad(problem.objective)(w)
            return jax.tree_util.tree_map(lambda a, b: a - eta * b, w, g)

        return jax.lax.fori_loop(0, steps, body, problem.params0)

    return lambda: loop(problem)


def joint_grad_fori(problem: gf.Problem, steps: int, eta: float) -> Callable[[], Any]:
    r"""`steps` Euler steps on $(w, \bar w)$, each with one gradient of $F_\alpha$ and one of
    $\bar F_\alpha$ (a JVP and a VJP of the linear model, linearized once outside the loop)."""
    loop = joint_euler_fori(steps, eta)
    return lambda: loop(problem)


def diffrax_euler(problem: gf.Problem, steps: int, eta: float) -> Callable[[], Any]:
    """`steps` constant Euler steps of a hand-written `diffrax.diffeqsolve`, saving `y(t1)`."""

    @jax.jit
    def solve(problem: gf.Problem):
        def field(t, w, args):
            del t, args
            return jax.tree_util.tree_map(jnp.negative, jax.grad(problem.objective)(w))

        sol = dfx.diffeqsolve(
            dfx.ODETerm(field),
            dfx.Euler(),
            t0=0.0,
            t1=steps * eta,
            dt0=eta,
            y0=problem.params0,
            saveat=dfx.SaveAt(t1=True),
            max_steps=steps,
        )
        return sol.ys

    return lambda: solve(problem)


def gradflow_solve(problem: gf.Problem, expected_evals: int, **kwargs: Any) -> Callable[[], Any]:
    """One `gf.solve` call; checks that it succeeds with the expected number of evaluations."""

    def run():
        sol = gf.solve(problem, **kwargs)
        if not sol.succeeded:
            raise RuntimeError(f"gf.solve({kwargs}) failed: {sol.message}")
        evals = int(sol.stats["num_vector_field_evals"])
        if evals != expected_evals:
            raise RuntimeError(f"{evals} vector-field evaluations, expected {expected_evals}.")
        return sol

    return run


def time_cases(cases: list[Case], repeats: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Wall times (seconds) of `repeats` round-robin runs of each case, after one first run that
    compiles it; also the time of that first run."""
    first = {}
    for case in cases:
        t0 = time.perf_counter()
        jax.block_until_ready(case.run())
        first[case.name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {case.name: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            t0 = time.perf_counter()
            jax.block_until_ready(case.run())
            times[case.name].append(time.perf_counter() - t0)
    return times, first


def build_cases(problem: gf.Problem, args: argparse.Namespace) -> list[Case]:
    """The baselines and the `gf.solve` configurations to time."""
    steps, eta = args.steps, args.eta
    t1 = steps * eta
    # Two save times: with a single one (`ts=[t1]`), XLA hoists diffrax's save function (a model
    # forward pass) out of the save loop into the step loop; that row shows the cost.
    ends = np.array([0.0, t1])
    euler = dict(t1=t1, solver=dfx.Euler(), stepsize_controller=dfx.ConstantStepSize(), dt0=eta)
    t1_tsit5 = args.tsit5_steps * eta
    tsit5 = dict(
        t1=t1_tsit5,
        ts=np.array([0.0, t1_tsit5]),
        solver=dfx.Tsit5(),
        stepsize_controller=dfx.ConstantStepSize(),
        dt0=eta,
    )
    gd = dict(t1=t1, ts=ends, solver=gf.GradientDescent(eta))
    ref, joint_ref = "fori(grad)", "fori(grad + linear grad)"
    # Tsit5 is first-same-as-last: 6 new evaluations per step, plus one at t0.
    tsit5_evals = 6 * args.tsit5_steps + 1
    solves = [
        ("gf.solve Euler, ts=[0, t1]", dict(euler, ts=ends), steps, ref),
        ("gf.solve Euler, ts=[t1]", dict(euler, ts=np.array([t1])), steps, ref),
        ("gf.solve Euler, default ts (101 saves)", euler, steps, ref),
        ("gf.solve Tsit5 (constant dt), ts=[0, t1]", tsit5, tsit5_evals, ref),
        ("gf.solve GradientDescent, ts=[0, t1]", gd, steps, ref),
    ]
    joint = [
        ("gf.solve Euler linearized=True, ts=[0, t1]", dict(euler, ts=ends), steps, joint_ref),
        (
            "gf.solve Euler linearized=True, ts=[t1]",
            dict(euler, ts=np.array([t1])),
            steps,
            joint_ref,
        ),
    ]
    cases = [
        Case(ref, grad_fori(problem, steps, eta), steps, None),
        Case("jit(grad), Python loop", grad_python_loop(problem, steps), steps, ref),
        Case("diffrax Euler (hand-written)", diffrax_euler(problem, steps, eta), steps, ref),
    ]
    for name, kwargs, evals, reference in solves:
        run = gradflow_solve(problem, evals, linearized=False, **kwargs)
        cases.append(Case(name + ", linearized=False", run, evals, reference))
    cases.append(Case(joint_ref, joint_grad_fori(problem, steps, eta), steps, None))
    for name, kwargs, evals, reference in joint:
        cases.append(
            Case(name, gradflow_solve(problem, evals, linearized=True, **kwargs), evals, reference)
        )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="samples (default 200)")
    parser.add_argument("--d", type=int, default=100, help="input dimension (default 100)")
    parser.add_argument("--m", type=int, default=500, help="width (default 500)")
    parser.add_argument("--activation", default="tanh", choices=["tanh", "relu", "softplus"])
    parser.add_argument("--alpha", type=float, default=1.0, help="scale alpha (default 1)")
    parser.add_argument("--steps", type=int, default=200, help="Euler/GD steps per run (200)")
    parser.add_argument("--tsit5-steps", type=int, default=40, help="Tsit5 steps per run (40)")
    parser.add_argument("--eta", type=float, default=1e-3, help="dt0 and learning rate (1e-3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per case (10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()

    problem = make_problem(args.n, args.d, args.m, args.activation, args.alpha, args.seed)
    cases = build_cases(problem, args)
    print(
        f"TwoLayer({args.m}, {args.activation!r}), n={args.n}, d={args.d}, n*m={args.n * args.m}, "
        f"{problem.num_params} parameters, {problem.dtype}; {jax.devices()[0].platform}, "
        f"{os.cpu_count()} cores; best and median of {args.repeats} runs"
    )
    times, first = time_cases(cases, args.repeats)

    best = {c.name: min(times[c.name]) / c.evals for c in cases}
    header = f"{'case':<58} {'evals':>5} {'best us':>8} {'median us':>9} {'ratio':>6}  vs"
    print(header)
    print("-" * len(header))
    rows = []
    for c in cases:
        median = float(np.median(times[c.name])) / c.evals
        ratio = best[c.name] / best[c.reference] if c.reference else 1.0
        print(
            f"{c.name:<58} {c.evals:>5} {1e6 * best[c.name]:>8.1f} {1e6 * median:>9.1f} "
            f"{ratio:>6.2f}  {c.reference or '-'}"
        )
        rows.append(
            {
                "case": c.name,
                "evals": c.evals,
                "best_s_per_eval": best[c.name],
                "median_s_per_eval": median,
                "reference": c.reference,
                "ratio_best": ratio,
                "first_call_s": first[c.name],
                "times_s": times[c.name],
            }
        )
    key = "gf.solve Euler, ts=[0, t1], linearized=False"
    target = best[key] / best["fori(grad)"]
    print(f"\n{key} / fori(grad) = {target:.2f} (target <= 1.3)")
    print("first call (compile + one run), s:")
    for c in cases:
        print(f"  {c.name:<58} {first[c.name]:6.2f}")

    if args.json:
        out = {
            "benchmark": "bench_overhead",
            "config": vars(args),
            "num_params": problem.num_params,
            "dtype": str(problem.dtype),
            "platform": jax.devices()[0].platform,
            "cpu_count": os.cpu_count(),
            "versions": {
                name: version(name) for name in ("jax", "jaxlib", "diffrax", "equinox", "gradflow")
            }
            | {"python": platform.python_version()},
            "target_ratio": target,
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
