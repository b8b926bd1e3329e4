r"""A sweep over (tau, seed) as a loop of `gf.solve` and as one batched `gf.sweep`.

Problem: a `TwoLayer(200, "tanh")` net with the doubled init times $\tau$ (n = 50, d = 5, square
loss on a ReLU teacher), the joint flow (`linearized=True`) to T = 10 at rtol 1e-8, for
$\tau \in$ `--taus` and seeds `0..--seeds-1`. Timed, each after a warm-up that compiles it:

- `loop`: one `gf.solve` per point (one compiled program, called once per point);
- `gf.sweep`: all points in one vmapped call (`batch_size` = all points) on `--devices` devices.

Every XLA compilation is counted through `jax.monitoring`. With `--devices N > 1` the script
re-runs itself with `XLA_FLAGS=--xla_force_host_platform_device_count=N` (CPU "devices" share
the machine's cores, so this checks the sharding, not a speed-up).

Run: `python benchmarks/bench_batched_sweep.py [--taus 0.5,1,2] [--seeds 8] [--devices 1]`.
"""

import argparse
import os
import subprocess
import sys
import time
from collections import Counter

import jax
import numpy as np

import gradflow as gf

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
COMPILES: Counter[str] = Counter()


def _listen(event: str, duration: float, **kwargs) -> None:
    del duration
    if event == _COMPILE_EVENT:
        COMPILES[str(kwargs.get("fun_name", "?"))] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taus", default="0.5,1,2")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--devices", type=int, default=1)
    args = parser.parse_args()
    if args.devices > len(jax.devices()):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices}")
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
    jax.monitoring.register_event_duration_secs_listener(_listen)
    kx, kt = jax.random.split(jax.random.PRNGKey(0))
    x = gf.data.uniform_sphere(kx, 50, 5)
    y = gf.data.teacher_targets(kt, x, activation="relu")
    model = gf.models.TwoLayer(200, "tanh")

    def build(tau, seed):
        params = model.init(jax.random.PRNGKey(seed), 5, doubled=True, tau=tau)
        return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=1.0)

    points = [{"tau": float(t), "seed": s} for t in args.taus.split(",") for s in range(args.seeds)]
    ts = np.linspace(0.0, 10.0, 11)
    problems = [build(**p) for p in points]

    def loop():
        return [float(gf.solve(p, t1=10.0, ts=ts).loss[-1]) for p in problems]

    devices = jax.devices()[: args.devices]

    def batched():
        sw = gf.sweep(build, points, t1=10.0, ts=ts, devices=devices)
        return sw.final("loss").tolist()

    print(f"{len(points)} points, {len(devices)} device(s): {devices}")
    for name, fn in (("loop of gf.solve", loop), ("gf.sweep (one batch)", batched)):
        COMPILES.clear()
        start = time.perf_counter()
        first = fn()
        cold = time.perf_counter() - start
        compiles = sum(COMPILES.values())
        COMPILES.clear()
        start = time.perf_counter()
        again = fn()
        warm = time.perf_counter() - start
        print(
            f"{name:<22} cold {cold:6.2f} s ({compiles} compilations)  warm {warm:6.2f} s "
            f"({sum(COMPILES.values())} compilations)  mean final loss {np.mean(again):.6e}"
        )
        assert np.allclose(first, again, rtol=1e-12)


if __name__ == "__main__":
    main()
