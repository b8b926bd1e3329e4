"""The `gradflow` command line."""

import argparse
import sys
import time
from pathlib import Path

from gradflow._cli_util import (
    UsageError,
    enable_compilation_cache,
    line_buffered_stdout,
    positive_float,
    positive_floats,
    positive_int,
    writable_folder,
)
from gradflow.check._cli import add_parser as _add_check_parser
from gradflow.experiments._cli import add_parser as _add_reproduce_parser

_DEFAULT_ALPHAS = "1,3,10,30,100,300,1000,3000,10000"


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
            "anything is computed)."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument(
        "--out", type=Path, default=Path("gradflow-out"), help="output folder (created if missing)"
    )
    p.add_argument(
        "--alphas",
        type=positive_floats,
        default=_DEFAULT_ALPHAS,
        help="comma-separated scales alpha, each a finite number > 0",
    )
    p.add_argument(
        "--fit-min",
        type=float,
        default=10.0,
        help="fit the slopes only over the alphas >= this (the theorem is asymptotic in alpha); "
        "needs at least 2 of them",
    )
    p.add_argument("--samples", type=positive_int, default=50, help="training points n")
    p.add_argument("--dim", type=positive_int, default=5, help="input dimension d")
    p.add_argument("--width", type=positive_int, default=200, help="hidden width m (neurons)")
    p.add_argument(
        "--activation",
        choices=["tanh", "softplus", "relu", "quadratic"],
        default="tanh",
        help="the neurons' nonlinearity sigma; relu has a kink at 0, outside the theorem's "
        "hypotheses (smooth h)",
    )
    p.add_argument(
        "--scaling",
        choices=["sqrt", "mean_field"],
        default="sqrt",
        help="output scale s(m): sqrt is 1/sqrt(m) (lazy as m grows), mean_field is 1/m",
    )
    p.add_argument(
        "--init",
        choices=["centered", "doubled", "plain"],
        default="centered",
        help="how h(w0) = 0 is obtained: subtract h(w0) (centered), pairs of opposite neurons "
        "(doubled), or not at all (plain: the lazy bounds then fail)",
    )
    p.add_argument(
        "--t1", type=positive_float, default=10.0, help="time horizon T of the flows (flow time)"
    )
    p.add_argument(
        "--rtol",
        type=positive_float,
        default=1e-8,
        help="relative tolerance of the adaptive ODE solver (per step, on the scaled state)",
    )
    p.add_argument(
        "--atol", type=positive_float, default=1e-10, help="absolute tolerance of the ODE solver"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="PRNG seed of the inputs, the teacher and the initialization",
    )
    p.add_argument("--no-cache", action="store_true", help="disable the compilation cache")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(
        func=_run_alpha_sweep,
        on_interrupt=lambda a: "nothing was written (the alpha sweep does not resume)",
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
    if args.init == "doubled" and args.width % 2:
        print(
            f"gradflow: error: --init doubled needs an even --width; got {args.width}",
            file=sys.stderr,
        )
        return 2
    writable_folder(args.out)
    cache = enable_compilation_cache(args.no_cache)
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from gradflow import data, models
    from gradflow._diagnostics import scale_criterion
    from gradflow._io import environment, write_json
    from gradflow._losses import SquareLoss
    from gradflow._problem import Problem
    from gradflow._sweep import PREDICTED_SLOPES, sweep_alpha
    from gradflow.plot import plot_alpha_sweep

    start = time.perf_counter()
    kx, kt, kp = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    x = data.uniform_sphere(kx, args.samples, args.dim)
    y = data.teacher_targets(kt, x, activation="relu")
    model = models.TwoLayer(args.width, args.activation, args.scaling)
    params = model.init(kp, args.dim, doubled=args.init == "doubled")
    problem = Problem(model, params, x, SquareLoss(y), alpha=1.0, center=args.init == "centered")
    bar = tqdm(total=len(args.alphas), desc="alpha sweep", unit="solve", disable=args.no_progress)

    def callback(i, alpha, sol, err):
        bar.set_postfix_str(f"alpha={alpha:g}" + (" FAILED" if err else ""))
        bar.update(1)

    sweep = sweep_alpha(
        problem,
        args.alphas,
        t1=args.t1,
        fit_min=args.fit_min,
        rtol=args.rtol,
        atol=args.atol,
        callback=callback,
    )
    bar.close()
    fig, ax = plt.subplots(figsize=(7.5, 5.2), constrained_layout=True)
    plot_alpha_sweep(
        sweep,
        ax,
        title=f"Two-layer {args.activation} net (n={args.samples}, d={args.dim}, "
        f"m={args.width}, {args.init} init), horizon T={args.t1:g}",
    )
    png = args.out / "alpha_sweep.png"
    fig.savefig(png, dpi=130)
    plt.close(fig)
    crit = scale_criterion(problem)
    result = {
        "command": "alpha-sweep",
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("func", "on_interrupt")
        },
        "num_params": problem.num_params,
        "scale_criterion_at_alpha_1": crit,
        "sweep": sweep,
        "wall_seconds": time.perf_counter() - start,
        "compilation_cache": cache,
        "environment": environment(),
    }
    js = write_json(result, args.out / "alpha_sweep.json")
    print(f"{'alpha':>10} {'sup|w-w0|':>12} {'sup|w-wbar|':>12} {'sup out gap':>12}  status")
    for i, a in enumerate(sweep.alphas):
        status = "ok" if sweep.errors[i] is None else f"FAILED: {sweep.errors[i]}"
        print(
            f"{a:>10.4g} {sweep.sup['param_distance'][i]:>12.4e} "
            f"{sweep.sup['param_gap'][i]:>12.4e} {sweep.sup['output_gap'][i]:>12.4e}  {status}"
        )
    if args.activation == "relu":
        print(
            "note: ReLU has a kink at 0, so h is not differentiable with a Lipschitz Dh: this "
            "model is outside the finite-horizon theorem's hypotheses, and its slopes need not "
            "match the theory's"
        )
    if all(fit is None for fit in sweep.fits.values()):
        usable = [a for a, e in zip(sweep.alphas, sweep.errors) if e is None and a >= args.fit_min]
        print(
            f"no slopes fitted: a fit needs 2 successful alphas >= --fit-min {args.fit_min:g}, "
            f"and {len(usable)} of the {len(sweep.alphas)} alphas qualify"
            + ("" if usable else f" (the largest alpha is {max(sweep.alphas):g})")
            + "; lower --fit-min or add larger alphas"
        )
    for k, fit in sweep.fits.items():
        if fit is not None:
            print(
                f"slope of sup {k:<15} {fit.slope:+.4f}  (95% CI [{fit.ci[0]:+.4f}, "
                f"{fit.ci[1]:+.4f}], theory {PREDICTED_SLOPES[k]:+.0f}, "
                f"alpha >= {args.fit_min:g})"
            )
    print(f"wrote {png} and {js} in {time.perf_counter() - start:.1f} s")
    return 0 if all(e is None for e in sweep.errors) else 1


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
