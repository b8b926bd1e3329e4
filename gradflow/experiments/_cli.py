"""`gradflow reproduce <name>`: one command per experiment of the paper."""

import argparse
import sys
import time

from ._base import OptionError


def add_parser(subparsers) -> None:
    """Register the `reproduce` subcommand on the `gradflow` parser's subparsers."""
    from .._cli_util import add_distributed_arguments, add_output_arguments
    from . import EXPERIMENTS

    lines = [f"  {name:<14} {cls.title}" for name, cls in EXPERIMENTS.items()]
    p = subparsers.add_parser(
        "reproduce",
        help="run one of the paper's experiments (figures + JSON, resumable)",
        description="\n".join(
            [
                "Reproduce one experiment of Chizat, Oyallon & Bach (2019) at the paper's",
                "sizes, or at small sizes with --quick (seconds).",
                "",
                "Each finished point is stored at once, with a checksum, in OUT/NAME/points/:",
                "rerunning the same command after an interruption resumes where it stopped,",
                "and a damaged point file is reported and recomputed. The summary goes to",
                "OUT/NAME/NAME.json and the figure to OUT/NAME/NAME.png. One run writes in a",
                "folder at a time; another configuration there is refused, naming the options",
                "that differ.",
                "",
                "`--set help=1` lists an experiment's options with their values and meaning.",
                "",
                "experiments:",
                *lines,
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=sorted(EXPERIMENTS), metavar="NAME", help="the experiment")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for tests)")
    add_output_arguments(
        p, "gradflow-out", "output folder; results go to OUT/NAME (default: gradflow-out)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="change one option of the experiment (repeatable), e.g. --set trials=3; "
        "`--set help=1` lists the options, their values and meaning",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard results stored in the folder for another configuration",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="rebuild a corrupted OUT/NAME/store.json, keeping every finished point whose "
        "checksum matches",
    )
    add_distributed_arguments(p)
    p.set_defaults(
        func=_run,
        on_interrupt=lambda a: (
            f"finished points are kept in {a.out / a.name}; rerun the same command to resume"
        ),
    )


def _fail(message: str, command: str = "reproduce") -> int:
    print(f"gradflow {command}: error: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    from gradflow._cli_util import enable_compilation_cache, start_distributed, writable_folder

    from . import EXPERIMENTS

    cls = EXPERIMENTS[args.name]
    experiment = cls.quick() if args.quick else cls()
    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            return _fail(f"--set expects OPTION=VALUE; got {item!r}")
        changes[key.strip()] = value
    if "help" in changes:
        print(experiment.describe_options())
        return 0
    try:
        experiment = experiment.replace(**changes)
    except OptionError as exc:
        return _fail(str(exc))
    out = writable_folder(args.out / experiment.name)
    start_distributed(args)
    enable_compilation_cache(args.no_cache)
    return execute(
        experiment, out, overwrite=args.overwrite, repair=args.repair, progress=not args.no_progress
    )


def execute(
    experiment,
    out,
    *,
    overwrite: bool,
    repair: bool = False,
    progress: bool = True,
    command: str = "reproduce",
) -> int:
    """Run `experiment` into the folder `out` and print its table and what was computed; the
    one path of `gradflow reproduce` and `gradflow alpha-sweep`. Returns the exit status: 0,
    1 (some points failed; the others are kept) or 2 (the user's error: an option, a store
    that refuses, an output folder; one line). Any other exception is a bug and shows its
    traceback; the finished points are on disk either way."""
    from ..sweeps._store import StoreError
    from . import run

    start = time.perf_counter()
    try:
        result = run(experiment, out, overwrite=overwrite, repair=repair, progress=progress)
    except (OptionError, StoreError, OSError) as exc:
        return _fail(str(exc), command)
    if result.files:
        print(experiment.report(result.summary))
    redone = [k for k in result.computed if k in set(result.corrupted)]
    print(
        f"{len(result.computed)} points computed"
        + (f" ({len(redone)} of them corrupted and recomputed)" if redone else "")
        + f", {len(result.reused)} reused from {out}"
        + (f"; wrote {', '.join(str(f) for f in result.files)}" if result.files else "")
        + f" in {time.perf_counter() - start:.1f} s"
    )
    if result.errors:
        for key, err in result.errors.items():
            print(f"FAILED {key}: {err}", file=sys.stderr)
        return 1
    return 0


def add_option_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--name` flag per option of the experiment class `cls` (underscores as dashes), with
    the option's default, help text and checks: its declared field is the one source of both
    the command line and `--set`. The values reach `args` under the option names."""
    import dataclasses
    import typing

    from .._cli_util import positive_float, positive_floats, positive_int

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, meta, default = hints[f.name], f.metadata, f.default
        kwargs: dict = {"default": default, "help": meta["help"], "dest": f.name}
        # The command line's own parsers (and messages) where they check all that is declared.
        plain = meta["positive"] and not meta["even"] and meta["within"] is None
        if typing.get_origin(hint) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif typing.get_origin(hint) is tuple:
            # A string default: argparse converts it (and shows it) as the user would type it.
            kwargs["default"] = ",".join(v if isinstance(v, str) else f"{v:g}" for v in default)
            if plain and typing.get_args(hint)[0] is float:
                kwargs["type"] = lambda text: tuple(positive_floats(text))
            else:
                kwargs["type"] = _option_parser(f, hint)
        elif plain and hint is int:
            kwargs["type"] = positive_int
        elif plain and hint is float:
            kwargs["type"] = positive_float
        else:
            kwargs["type"] = _option_parser(f, hint)
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _option_parser(f, hint):
    """Text to the value of option `f`, with the experiment's own conversion and checks."""
    from ._base import _check_option, _convert

    def parse(text: str):
        try:
            value = _convert(f.name, text, hint)
            _check_option(f.name, value, hint, f.metadata)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = f.name  # argparse names the type in its "invalid value" message
    return parse
