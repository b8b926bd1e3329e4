r"""Batched flows: the trials of one point solved in lockstep (`vmap`) or one by one (`loop`).

For each $\tau$ in `--taus`, one point of `gradflow reproduce tau-sweep --set method=flow` at the
paper's sizes (d = 100, n = 1000, m = 50, `--trials` trials, the GD horizon of 1e4 steps of
$\min(10, 0.1/\tau^2)$, `solver="auto"` at `--flow-rtol / max(1, tau)`) is computed through the
experiment's own code (`TauSweep.run_point`) with `trial_batching="vmap"` (one program vmapped
over the trials: every trial steps until the slowest one finishes, with the batch's largest
stage count) and `trial_batching="loop"` (one solve per trial, each with its own `auto` choice).
Each is run once to compile, then `--repeats` times alternating; the best time counts.
Reported: seconds, their ratio vmap / loop, the mean and largest gradient evaluations per trial
(the loop's are each trial's own; under vmap every trial is charged the batch's), and the largest
relative difference of the trials' end-of-training test losses between the two (both are the
same flow to the tolerance).

Run: `python benchmarks/bench_trial_batching.py [--taus 0.01,0.1,1,10] [--trials 10] [--json PATH]`.
"""

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from gradflow import experiments as ex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taus", default="0.01,0.1,1,10", help="comma-separated init scales")
    parser.add_argument("--trials", type=int, default=10, help="trials per point")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each batching")
    parser.add_argument("--flow-rtol", type=float, default=1e-2, help="the flows' rtol at tau <= 1")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()}")
    base = ex.TauSweep(trials=args.trials, method="flow", flow_rtol=args.flow_rtol)
    rows = []
    print(
        f"{'tau':>6} {'vmap s':>8} {'loop s':>8} {'ratio':>6} {'vmap evals':>11} "
        f"{'loop evals':>11} {'loop max':>9} {'test diff':>9}  solvers (loop)"
    )
    for tau in (float(t) for t in args.taus.split(",")):
        runs = {b: base.replace(trial_batching=b) for b in ("vmap", "loop")}
        out, best = {}, {b: np.inf for b in runs}
        for b, e in runs.items():
            out[b] = e.run_point(tau=tau)  # compile
        for _ in range(args.repeats):
            for b, e in runs.items():
                start = time.perf_counter()
                out[b] = e.run_point(tau=tau)
                best[b] = min(best[b], time.perf_counter() - start)
        v, lo = (np.asarray(out[b]["test_loss_end"], float) for b in ("vmap", "loop"))
        row = {
            "tau": tau,
            "vmap_seconds": best["vmap"],
            "loop_seconds": best["loop"],
            "vmap_over_loop": best["vmap"] / best["loop"],
            "vmap_evaluations_mean": float(np.mean(out["vmap"]["evaluations"])),
            "loop_evaluations_mean": float(np.mean(out["loop"]["evaluations"])),
            "loop_evaluations_max": int(np.max(out["loop"]["evaluations"])),
            "test_end_max_relative_difference": float(np.nanmax(np.abs(lo / v - 1))),
            "loop_solvers": out["loop"]["flow"]["solver"],
        }
        rows.append(row)
        print(
            f"{tau:6g} {row['vmap_seconds']:8.1f} {row['loop_seconds']:8.1f} "
            f"{row['vmap_over_loop']:6.2f} {row['vmap_evaluations_mean']:11.0f} "
            f"{row['loop_evaluations_mean']:11.0f} {row['loop_evaluations_max']:9d} "
            f"{row['test_end_max_relative_difference']:9.1e}  {row['loop_solvers']}",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
