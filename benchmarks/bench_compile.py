r"""Compile time and run time of `gf.solve` under XLA's CPU compile settings.

XLA's CPU backend emits each fused kernel either with its MLIR-based fusion emitters (its
default) or with its classic emitters (`XLA_FLAGS=--xla_cpu_use_fusion_emitters=false`), and
JAX's `jax_disable_most_optimizations` (`JAX_DISABLE_MOST_OPTIMIZATIONS=1`) compiles with LLVM
at -O0 and its expensive passes off; `XLA_FLAGS=--xla_backend_optimization_level=1` keeps LLVM's
optimizations at a lower level than the default. The test suite uses the classic emitters at
-O0, and at level 1 for its tests marked `optimized` (`tests/conftest.py`). This script
measures what each costs or saves against the default. Each setting runs in a fresh
subprocess of this script, and within it:

- `compile`: the first `gf.solve` of a problem, tracing, lowering and compiling included,
  summed over `--shapes` problems of new shapes (each a new program; JAX's own start-up is
  done before, on another shape), for three solvers:
  Tsit5 on the joint flow, the auto choice, and gradient descent;
- `run`: the same solves again, warm (compiled programs reused), for a small net and for a
  larger one whose run time dominates (`TwoLayer(2000, "tanh")`, n = 200, d = 20, T = 20).

The results of every setting must agree with the default's to float64 rounding (checked
here: relative difference of the final losses below 1e-9). Printed: each setting's seconds and
its ratio to the default.

Run: `python benchmarks/bench_compile.py [--shapes 4] [--repeats 3]`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

FLAG = "--xla_cpu_use_fusion_emitters"


def _problem(n, d, m, seed=0):
    import jax

    import gradflow as gf

    kx, kt, kp = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = gf.data.uniform_sphere(kx, n, d)
    y = gf.data.teacher_targets(kt, x)
    model = gf.models.TwoLayer(m, "tanh")
    return gf.Problem(model, model.init(kp, d), x, gf.SquareLoss(y), alpha=10.0, center=True)


def _measure(shapes: int, repeats: int) -> dict:
    import diffrax as dfx
    import jax

    import gradflow as gf

    solvers = {
        "tsit5": dict(solver=dfx.Tsit5()),
        "auto": dict(),
        "gd": dict(solver=gf.GradientDescent(0.05)),
    }

    def solve(problem, t1, options):
        sol = gf.solve(problem, t1=t1, **options)
        jax.block_until_ready(sol.loss)
        return float(sol.loss[-1])

    out = {"compile": {}, "run_small": {}, "run_large": {}, "losses": {}}
    solve(_problem(10, 3, 8), 1.0, solvers["tsit5"])  # one-time start-up, not timed
    problems = [_problem(20 + i, 4, 50) for i in range(shapes)]
    for name, options in solvers.items():
        start = time.perf_counter()
        out["losses"][name] = [solve(p, 5.0, options) for p in problems]
        out["compile"][name] = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(repeats):
            for p in problems:
                solve(p, 5.0, options)
        out["run_small"][name] = (time.perf_counter() - start) / (repeats * shapes)
    large = _problem(200, 20, 2000)
    for name in ("tsit5", "gd"):
        out["losses"][f"large_{name}"] = [solve(large, 20.0, solvers[name])]  # compile
        start = time.perf_counter()
        for _ in range(repeats):
            solve(large, 20.0, solvers[name])
        out["run_large"][name] = (time.perf_counter() - start) / repeats
    return out


# name -> (XLA_FLAGS added, JAX_DISABLE_MOST_OPTIMIZATIONS); the first is the baseline.
SETTINGS = {
    "fusion": (f"{FLAG}=true", "0"),
    "classic": (f"{FLAG}=false", "0"),
    "classic -O0": (f"{FLAG}=false", "1"),
    "classic O1": (f"{FLAG}=false --xla_backend_optimization_level=1", "0"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=4, help="new-shape problems per solver")
    parser.add_argument("--repeats", type=int, default=3, help="warm repeats of each solve")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.shapes, args.repeats)))
        return
    results = {}
    for name, (flag, less_optimized) in SETTINGS.items():
        env = {
            **os.environ,
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip(),
            "JAX_DISABLE_MOST_OPTIMIZATIONS": less_optimized,
        }
        cmd = [sys.executable, __file__, "--child"]
        cmd += ["--shapes", str(args.shapes), "--repeats", str(args.repeats)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"the run with the setting {name!r} failed:\n{done.stderr}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    base_name, *others = SETTINGS
    base = results[base_name]
    for name in others:
        worst = max(
            abs(a - b) / abs(b)
            for k in base["losses"]
            for a, b in zip(results[name]["losses"][k], base["losses"][k])
        )
        print(f"final losses, {name} against {base_name}: max relative difference {worst:.1e}")
        if worst > 1e-9:
            sys.exit(f"{name} and {base_name} disagree beyond float64 rounding")
    header = "".join(f" {n:>12} {'ratio':>6}" for n in others)
    print(f"{'':34} {base_name + ' (default)':>17}{header}")
    for part, unit in (("compile", "s"), ("run_small", "s/solve"), ("run_large", "s/solve")):
        for solver, value in base[part].items():
            row = "".join(
                f" {results[n][part][solver]:12.4f} {results[n][part][solver] / value:6.2f}"
                for n in others
            )
            print(f"{part + ' ' + solver + ' (' + unit + ')':34} {value:17.4f}{row}")


if __name__ == "__main__":
    main()
