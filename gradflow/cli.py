"""The `gradflow` command line."""

import argparse
import dataclasses
import sys

from gradflow._cli_util import (
    UsageError,
    add_output_arguments,
    enable_compilation_cache,
    line_buffered_stdout,
    writable_folder,
)
from gradflow.check._cli import add_parser as _add_check_parser
from gradflow.experiments._cli import add_option_arguments, add_parser as _add_reproduce_parser
from gradflow.experiments.alpha_sweep import TwoLayerAlphaSweep


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser(
        "alpha-sweep",
        help="sweep the scale alpha on a two-layer net; plot the lazy-vs-linearized distances",
        description=(
            "Integrate the gradient flow of a two-layer network and of its linearization at "
            "each scale alpha, and plot sup_t ||w - w0||, ||w - wbar|| and ||alpha h(w) - alpha "
            "hbar(wbar)||_F against alpha on log-log axes with fitted slopes (finite-horizon "
            "theorem, for h(w0) = 0 and a smooth model: -1, -2, -1).\n\n"
            "Model: f(x) = s(m) sum_j b_j sigma(a_j . x), no biases, s(m) = 1/sqrt(m) or 1/m "
            "(--scaling). Data: SAMPLES inputs uniform on the unit sphere of R^DIM; targets "
            "y(x) = sum_{j<=3} b_j relu(a_j . x) from a random teacher of 3 ReLU neurons (unit "
            "a_j, b_j = +-1); all generated from --seed, nothing downloaded. Loss: square loss "
            "R(f) = 1/2 ||f - y||_F^2 with the empirical norm ||f||_F^2 = (1/n) sum_i |f_i|^2; "
            "objective F_alpha(w) = R(alpha h(w)) / alpha^2.\n\n"
            "Writes OUT/alpha_sweep.png and OUT/alpha_sweep.json (checked writable before "
            "anything is computed); each finished alpha is stored in OUT/points at once, so an "
            "interrupted sweep resumes where it stopped (the same as `gradflow reproduce "
            "alpha-sweep`)."
        ),
        formatter_class=_Formatter,
    )
    add_output_arguments(p, "gradflow-out", "output folder (created if missing)")
    # --alphas, --fit-min, --samples, ...: the options of the experiment, as declared there.
    add_option_arguments(p, TwoLayerAlphaSweep)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the points stored in --out for other options; without it they are refused",
    )
    p.set_defaults(
        func=_run_alpha_sweep,
        on_interrupt=lambda a: (
            f"the finished alphas are kept in {a.out}; rerun the same command to resume"
        ),
    )


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every help text; the description's paragraphs kept, each wrapped."""

    def _fill_text(self, text, width, indent):
        import textwrap

        return "\n\n".join(
            textwrap.fill(par, width, initial_indent=indent, subsequent_indent=indent)
            for par in text.split("\n\n")
        )


def _run_alpha_sweep(args: argparse.Namespace) -> int:
    # A thin alias of `gradflow reproduce alpha-sweep`, with one flag per option and --out as
    # the folder itself: the same experiment, checks, run and table.
    from gradflow.experiments import OptionError
    from gradflow.experiments._cli import execute

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(TwoLayerAlphaSweep)}
    try:
        # What argparse cannot check alone (a repeated alpha, an odd width for the doubled
        # init, sizes that cannot fit in memory), before any folder is made.
        experiment = TwoLayerAlphaSweep(**options)
        experiment.validate()
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    writable_folder(args.out)
    enable_compilation_cache(args.no_cache)
    return execute(
        experiment,
        args.out,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        command="alpha-sweep",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradflow",
        description=(
            "gradflow: training as a gradient flow. Integrates a model's flow and its "
            "linearization's flow together and measures how far apart they stay as the scale "
            "alpha grows (lazy training, Chizat, Oyallon & Bach 2019)."
        ),
    )
    from gradflow._version import __version__

    parser.add_argument("--version", action="version", version=f"gradflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_sweep_parser(sub)
    _add_reproduce_parser(sub)
    _add_check_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `gradflow` with `argv` (default `sys.argv[1:]`) and return the exit status: 0 done,
    1 some points failed, 2 a user error (one line on standard error, no traceback), 130
    interrupted (Ctrl-C; what is finished stays on disk)."""
    line_buffered_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"gradflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gradflow {args.command}: interrupted; {args.on_interrupt(args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
