r"""Fig. 1c points as gradient flows against the paper's GD, in one process on one machine.

For each $\tau$ in `--taus`, one point of `gradflow reproduce tau-sweep` at the paper's sizes
(d = 100, n = 1000, m = 50, 10 trials batched with `vmap`, 1e4 steps of
$\min(10, 0.1/\tau^2)$) is computed twice through the experiment's own code
(`TauSweep.run_point`): with `method="gd"` (the paper's gradient descent) and with
`method="flow"` (the gradient flow over the same horizon, `solver="auto"`, which picks RKC, at
`flow_rtol / max(1, tau)`). Each is run once to compile, then `--repeats` times alternating;
the best time counts. Reported: seconds, mean gradient evaluations per trial (the flow's
include its Jacobian-vector products), and the relative difference of the mean end-of-training
and best-along-training test losses (GD's discretization error; the flow's own error is below
5e-4 at these tolerances, `docs/performance.md`).

Run: `python benchmarks/bench_tau_sweep_flow.py [--taus 0.1,10] [--repeats 1] [--json PATH]`.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gradflow import experiments as ex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taus", default="0.1,10", help="comma-separated init scales")
    parser.add_argument("--trials", type=int, default=10, help="trials per point (batched)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each method")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    exp = ex.TauSweep(trials=args.trials)
    rows = []
    print(
        f"{'tau':>6} {'method':>6} {'seconds':>8} {'evals':>8} {'end test':>10} {'best test':>10}"
    )
    for tau in (float(t) for t in args.taus.split(",")):
        runs = {m: exp.replace(method=m) for m in ("gd", "flow")}
        out, best = {}, {m: np.inf for m in runs}
        for m, e in runs.items():
            out[m] = e.run_point(tau=tau)  # compile
        for _ in range(args.repeats):
            for m, e in runs.items():
                start = time.perf_counter()
                out[m] = e.run_point(tau=tau)
                best[m] = min(best[m], time.perf_counter() - start)
        for m in runs:
            rows.append(
                {
                    "tau": tau,
                    "method": m,
                    "seconds": best[m],
                    "evaluations_mean": float(np.mean(out[m]["evaluations"])),
                    "test_end_mean": float(np.nanmean(out[m]["test_loss_end"])),
                    "test_best_mean": float(np.nanmean(out[m]["test_loss_best"])),
                    "flow": out[m]["flow"],
                }
            )
            r = rows[-1]
            print(
                f"{tau:>6g} {m:>6} {r['seconds']:>8.2f} {r['evaluations_mean']:>8.0f} "
                f"{r['test_end_mean']:>10.4e} {r['test_best_mean']:>10.4e}"
            )
        g, f = rows[-2], rows[-1]
        print(
            f"{tau:>6g}  GD / flow: seconds {g['seconds'] / f['seconds']:.2f}x, evaluations "
            f"{g['evaluations_mean'] / f['evaluations_mean']:.2f}x; test loss differences "
            f"end {f['test_end_mean'] / g['test_end_mean'] - 1:.1e}, "
            f"best {f['test_best_mean'] / g['test_best_mean'] - 1:.1e}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
