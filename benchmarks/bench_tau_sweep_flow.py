r"""Fig. 1c as gradient flows against the paper's GD, tau by tau, in one process on one machine.

For each $\tau$ in `--taus` (`all`: the experiment's 33 values from $10^{-2.2}$ to 10), one point
of `gradflow reproduce tau-sweep` at the paper's sizes (d = 100, n = 1000, m = 50, `--trials`
trials, 1e4 steps of $\min(10, 0.1/\tau^2)$) is computed through the experiment's own code
(`TauSweep.run_point`) with `method="gd"` (the paper's gradient descent, the trials vmapped) and
right after it with `method="flow"` (the gradient flow over the same horizon, `solver="auto"` at
`--flow-rtol / max(1, tau)`, the experiment's default unless given; the trials solved as
`--batching` says). Running the two
methods back to back at each $\tau$ puts both under the same load.

With `--warmup` each method is run once to compile before the timed run (the time of a point);
without it the first $\tau$ of each method includes its compilation, as a command-line run does.
GD's audit is off unless `--audit` says otherwise, so that GD is timed alone. Reported per
$\tau$: seconds, mean gradient evaluations per trial (the flow's include its
Jacobian-vector products), the flow's solver and rtol, and the relative difference of the mean
end-of-training and best-along-training test losses (the figure's numbers); then the wall time
per band of $\tau$ (< 0.1, 0.1-1, > 1) and over all, GD / flow.

Run: `python benchmarks/bench_tau_sweep_flow.py [--taus all | 0.1,10] [--json PATH]`.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gradflow import experiments as ex

BANDS = (
    ("tau < 0.1", 0.0, 0.1),
    ("0.1 <= tau <= 1", 0.1, 1.0 + 1e-9),
    ("tau > 1", 1.0 + 1e-9, 1e9),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taus", default="0.1,10", help="comma-separated init scales, or all")
    parser.add_argument("--trials", type=int, default=10, help="trials per point")
    parser.add_argument("--flow-rtol", type=float, default=None, help="TauSweep's flow_rtol")
    parser.add_argument("--batching", default="auto", choices=("auto", "vmap", "loop"))
    parser.add_argument("--warmup", action="store_true", help="compile before timing")
    parser.add_argument(
        "--audit",
        default="off",
        choices=("off", "sharpness", "full"),
        help="the GD audit (off: time the paper's GD alone, as the flows are)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    exp = ex.TauSweep(trials=args.trials, trial_batching=args.batching, audit=args.audit)
    if args.flow_rtol is not None:
        exp = exp.replace(flow_rtol=args.flow_rtol)
    taus = exp.taus() if args.taus == "all" else [float(t) for t in args.taus.split(",")]
    runs = {m: exp.replace(method=m) for m in ("gd", "flow")}
    rows = []
    print(
        f"{'tau':>8} {'GD s':>7} {'flow s':>7} {'ratio':>6} {'GD ev':>6} {'flow ev':>7} "
        f"{'rtol':>7} {'solver':>7} {'end diff':>9} {'best diff':>9}"
    )
    for tau in (float(t) for t in taus):
        out, seconds = {}, {}
        for m, e in runs.items():
            if args.warmup:
                e.run_point(tau=tau)
            start = time.perf_counter()
            out[m] = e.run_point(tau=tau)
            seconds[m] = time.perf_counter() - start
        g, f = out["gd"], out["flow"]
        row = {
            "tau": tau,
            "gd_seconds": seconds["gd"],
            "flow_seconds": seconds["flow"],
            "gd_evaluations_mean": float(np.mean(g["evaluations"])),
            "flow_evaluations_mean": float(np.mean(f["evaluations"])),
            "flow": f["flow"],
            "gd_test_end_mean": float(np.nanmean(g["test_loss_end"])),
            "flow_test_end_mean": float(np.nanmean(f["test_loss_end"])),
            "gd_test_best_mean": float(np.nanmean(g["test_loss_best"])),
            "flow_test_best_mean": float(np.nanmean(f["test_loss_best"])),
        }
        row["end_difference"] = row["flow_test_end_mean"] / row["gd_test_end_mean"] - 1
        row["best_difference"] = row["flow_test_best_mean"] / row["gd_test_best_mean"] - 1
        rows.append(row)
        print(
            f"{tau:>8.4g} {seconds['gd']:>7.1f} {seconds['flow']:>7.1f} "
            f"{seconds['gd'] / seconds['flow']:>6.2f} {row['gd_evaluations_mean']:>6.0f} "
            f"{row['flow_evaluations_mean']:>7.0f} {f['flow']['rtol']:>7.1e} "
            f"{f['flow']['solver'][:7]:>7} {row['end_difference']:>9.1e} "
            f"{row['best_difference']:>9.1e}",
            flush=True,
        )
    bands = []
    for name, lo, hi in (*BANDS, ("all", 0.0, 1e9)):
        sel = [r for r in rows if lo <= r["tau"] < hi]
        if not sel:
            continue
        gd, flow = sum(r["gd_seconds"] for r in sel), sum(r["flow_seconds"] for r in sel)
        bands.append(
            {
                "band": name,
                "taus": len(sel),
                "gd_seconds": gd,
                "flow_seconds": flow,
                "gd_over_flow": gd / flow,
                "max_abs_end_difference": max(abs(r["end_difference"]) for r in sel),
                "max_abs_best_difference": max(abs(r["best_difference"]) for r in sel),
            }
        )
        b = bands[-1]
        print(
            f"{name:>16}: {len(sel)} taus, GD {gd:.0f} s, flow {flow:.0f} s, "
            f"GD / flow {gd / flow:.2f}x; figure's numbers within "
            f"{b['max_abs_end_difference']:.1e} (end), {b['max_abs_best_difference']:.1e} (best)"
        )
    if args.json is not None:
        config = {k: getattr(exp, k) for k in ("flow_rtol", "trials", "audit")}
        config["batching"] = args.batching
        payload = {"config": config, "rows": rows, "bands": bands}
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
