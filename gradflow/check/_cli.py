"""`gradflow check THEOREM|all`: run the theorem checks, print a table, write JSON and figures."""

import argparse
import sys
import time

from .._cli_util import (
    UsageError,
    add_output_arguments,
    enable_compilation_cache,
    writable_folder,
)

# The records are imported with the package (which `gradflow.cli` imports anyway): the parser
# and its help are built from them, and no model is built before the arguments are parsed.
from ._registry import REGISTRY
from ._theorem import Theorem

_COLUMNS = ("quantity", "prediction", "measurement", "margin")


def add_parser(subparsers, theorems: tuple[Theorem, ...] = REGISTRY) -> None:
    """Register the `check` subcommand, for the theorem checks `theorems` (their names, summaries,
    research sizes and extra checks come from their records)."""
    names = [t.name for t in theorems]
    research = [t.name for t in theorems if t.research is not None]
    extras = [f"{t.name}: {', '.join(e.__name__ for e in t.extras)}" for t in theorems if t.extras]
    p = subparsers.add_parser(
        "check",
        help="check the paper's theorems numerically (bounds, rates, constants)",
        description=(
            "Check each theorem of Chizat, Oyallon & Bach (2019), derived symbolically in "
            "`theory/`, on two non-convex toy problems (matrix factorization, a diagonal linear "
            "net), a two-layer net and a negative control with h(w0) != 0 (off_training_set: "
            "matrix completion with the unobserved entries held out, and held-out inputs for "
            "the others). Theorems: " + ", ".join(names) + ". Prints a table "
            "(theorem, problem, quantity, prediction, measurement, margin, verdict), writes "
            "check.json and one figure per check (measured quantities against alpha on log-log "
            "axes with fitted and predicted slopes; observed against bound over time). "
            "`all` takes about 4 min of CPU on 2 cores with the compilation cache warm (191 s "
            "wall and 218 s of CPU measured beside other jobs); --no-extras saves about 25 s. "
            "--size research runs the finite-horizon, next-to-lazy and scale-criterion checks "
            "on real-size nets instead: a two-layer tanh net (n=256, d=31, m=1024, p=32768, and "
            "its uncentered control) and a smooth VGG-style CNN on 128 digits (p=4802, 1280 "
            "outputs); see docs/theory.md for its time."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "theorem",
        choices=[*names, "all"],
        help="which theorem, or all: " + "; ".join(f"{t.name}: {t.summary}" for t in theorems),
    )
    add_output_arguments(
        p,
        "gradflow-out/check",
        "output folder (created if missing; checked writable before any check runs)",
        progress=False,
    )
    p.add_argument(
        "--no-extras",
        action="store_true",
        help="skip the theorems' checks on problems of their own ("
        + "; ".join(extras)
        + "; the two-layer width sweep of the scale criterion takes ~25 s)",
    )
    p.add_argument(
        "--size",
        choices=["default", "research"],
        default="default",
        help="problem size: default (small problems, all theorems) or research (real-size "
        f"nets; {', '.join(research)})",
    )
    p.add_argument("--no-plots", action="store_true", help="do not draw figures")
    p.set_defaults(
        func=_run,
        theorems=theorems,
        on_interrupt=lambda a: (
            f"the figures of the finished checks are in {a.out}; check.json was not written"
        ),
    )


def _run(args: argparse.Namespace) -> int:
    records = {t.name: t for t in args.theorems}
    research = [t.name for t in args.theorems if t.research is not None]
    if args.size == "research" and args.theorem not in (*research, "all"):
        raise UsageError(
            f"{args.theorem} has no research-size problems; --size research covers "
            f"{', '.join(research)} (or all of them with `all`); use --size default"
        )
    writable_folder(args.out)
    cache = enable_compilation_cache(args.no_cache)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import check
    from ..sweeps._io import environment, write_json

    start = time.perf_counter()
    names = list(records) if args.theorem == "all" else [args.theorem]
    if args.size == "research":
        skipped = [n for n in names if n not in research]
        names = [n for n in names if n in research]
        if skipped:
            print(
                f"size research: {', '.join(names)}; {', '.join(skipped)} have no research-size "
                "problems (run them with --size default)"
            )
    reports, figures = [], []
    # Under 120 columns: one heading per report, then its comparisons (check.json keeps every
    # column in full).
    widths = (42, 22, 26, 18)
    header = "  ".join(f"{c:<{w}}" for c, w in zip(_COLUMNS, widths)) + "  ok"
    print(header)
    print("-" * len(header))

    def show(report):
        print(f"{report.theorem} on {report.problem}: {report.verdict}")
        for q, pred, meas, margin, ok in report.rows():
            cells = (q, pred, meas, margin)
            print("  ".join(f"{c[:w]:<{w}}" for c, w in zip(cells, widths)) + f"  {ok}")
        for h in report.hypotheses:
            if not h.holds:
                print(f"  hypothesis fails: {h.statement} ({h.detail})")
        sys.stdout.flush()
        if not args.no_plots:
            fig = records[report.theorem].plot(report)
            path = args.out / f"{report.theorem}__{report.problem}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            figures.append(str(path))

    for name in names:
        reports.extend(
            check.run(records[name], size=args.size, extras=not args.no_extras, callback=show)
        )
    bad = [r for r in reports if not r.as_predicted]
    seconds = time.perf_counter() - start
    js = write_json(
        {
            "command": f"check {args.theorem}"
            + (" --size research" if args.size == "research" else ""),
            "size": args.size,
            "reports": reports,
            "figures": figures,
            "all_passed": not bad,
            "wall_seconds": seconds,
            "compilation_cache": cache,
            "environment": environment(),
        },
        args.out / "check.json",
    )
    print(
        f"\n{len(reports) - len(bad)}/{len(reports)} checks as predicted "
        f"(pass, or hypotheses fail with no decay); wrote {js} and {len(figures)} figures "
        f"in {seconds:.1f} s"
    )
    for r in bad:
        print(f"NOT AS PREDICTED: {r.theorem} on {r.problem}: {r.verdict}")
    return 0 if not bad else 1
