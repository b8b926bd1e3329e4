"""The command line, the alpha sweep and the notebooks, as a user runs them."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_notebook, two_layer_problem

import gradflow as gf
from gradflow.cli import main
from gradflow.sweeps import _sweep

ROOT = Path(__file__).resolve().parents[1]


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "alpha-sweep" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["alpha-sweep", "--help"])
    assert "--alphas" in capsys.readouterr().out


def test_bad_option_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["alpha-sweep", "--alphas", "1,x"])
    assert exc.value.code == 2
    assert "expected comma-separated numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["alpha-sweep", "--width", "0"])
    assert "expected a positive integer" in capsys.readouterr().err
    assert main(["alpha-sweep", "--init", "doubled", "--width", "5", "--no-cache"]) == 2
    assert "Option `width` must be even for init=doubled" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["alpha-sweep", "--seed", "1.5"])
    assert "argument --seed: Option seed='1.5' is not a valid int" in capsys.readouterr().err


def test_option_arguments_of_any_declared_experiment(capsys):
    # Flags for each kind of option `gf.experiments.option` declares, with its checks.
    import argparse

    from gradflow.experiments._cli import add_option_arguments

    @dataclasses.dataclass(frozen=True)
    class Toy:
        names: tuple[str, ...] = gf.experiments.option(("a", "b"), "names", choices=("a", "b", "c"))
        flag: bool = gf.experiments.option(False, "a switch")
        width: int = gf.experiments.option(4, "an even width", even=True)
        limit: float | None = gf.experiments.option(None, "an optional limit")

    parser = argparse.ArgumentParser(prog="toy")
    add_option_arguments(parser, Toy)
    args = parser.parse_args([])
    assert (args.names, args.flag, args.width, args.limit) == (("a", "b"), False, 4, None)
    args = parser.parse_args(["--names", "c", "--flag", "yes", "--width", "6", "--limit", "0.5"])
    assert (args.names, args.flag, args.width, args.limit) == (("c",), True, 6, 0.5)
    for bad, message in [
        (["--width", "5"], "must be an even integer >= 2"),
        (["--names", "a,d"], "names"),
        (["--flag", "maybe"], "is not a valid bool"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
        assert message in capsys.readouterr().err, bad


def test_alpha_sweep_flags_are_the_experiments_options():
    # The command line is generated from the experiment's declared options: every option has
    # its flag, and the defaults parse to the experiment's own defaults.
    from gradflow.cli import build_parser

    args = build_parser().parse_args(["alpha-sweep"])
    default = gf.experiments.TwoLayerAlphaSweep()
    for f in dataclasses.fields(default):
        value = getattr(args, f.name)
        assert (tuple(value) if f.name == "alphas" else value) == getattr(default, f.name), f.name
    args = build_parser().parse_args(["alpha-sweep", "--fit-min", "3", "--init", "plain"])
    assert args.fit_min == 3.0 and args.init == "plain"


def test_alpha_sweep_command_writes_figure_and_json_and_resumes(tmp_path, capsys):
    argv = ["alpha-sweep", "--out", str(tmp_path), "--alphas", "10,100,1000", "--samples", "12",
            "--dim", "3", "--width", "20", "--t1", "3", "--no-cache", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    png, js = tmp_path / "alpha_sweep.png", tmp_path / "alpha_sweep.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    sweep = data["summary"]["sweep"]
    # Finite-horizon theorem, centered model: slopes -1, -2, -1 (tolerance 0.1).
    for name, slope in gf.PREDICTED_SLOPES.items():
        assert abs(sweep["fits"][name]["slope"] - slope) < 0.1
    assert sweep["errors"] == [None, None, None]
    assert data["environment"]["x64"] is True and data["experiment"] == "alpha-sweep"
    assert "slope of sup param_gap" in capsys.readouterr().out
    # An experiment like the others: every alpha is stored, a rerun reads them back, and other
    # options in the same folder are refused (exit 2, naming the option).
    assert main(argv) == 0
    assert "3 reused from" in capsys.readouterr().out
    again = json.loads(js.read_text())["summary"]["sweep"]
    assert again["sup"] == sweep["sup"]
    assert main([*argv[:-2], "--t1", "4", "--no-cache", "--no-progress"]) == 2
    assert "t1: stored 3.0, now 4.0" in capsys.readouterr().err


def test_failed_point_is_reported_and_others_kept(getkey, monkeypatch):
    problem = two_layer_problem(getkey(), n=8, d=3, m=8)
    real_solve = _sweep.solve

    def flaky(p, **kw):
        if float(p.alpha) == 100.0:
            raise FloatingPointError("injected failure")
        return real_solve(p, **kw)

    monkeypatch.setattr(_sweep, "solve", flaky)
    seen = []
    sweep = gf.sweep_alpha(
        problem, [10.0, 100.0, 1000.0], t1=1.0, callback=lambda i, a, s, e: seen.append((a, e))
    )
    assert sweep.errors[1] == "FloatingPointError: injected failure"
    assert sweep.errors[0] is None and sweep.errors[2] is None
    assert np.isnan(sweep.sup["param_gap"][1]) and np.all(np.isfinite(sweep.sup["param_gap"][::2]))
    assert sweep.fits["param_gap"].num_points == 2
    assert [a for a, _ in seen] == [10.0, 100.0, 1000.0]


def test_unsuccessful_solve_is_recorded(getkey):
    problem = two_layer_problem(getkey(), n=8, d=3, m=8)
    sweep = gf.sweep_alpha(problem, [1.0, 10.0], t1=50.0, max_steps=3)
    assert all("max_steps" in e for e in sweep.errors)
    assert all(f is None for f in sweep.fits.values())


def test_sweep_rejects_bad_alphas(getkey):
    problem = two_layer_problem(getkey(), n=8, d=3, m=8)
    with pytest.raises(ValueError, match="`alphas` must be a non-empty list of numbers > 0"):
        gf.sweep_alpha(problem, [1.0, -2.0], t1=1.0)


def test_data_generators(getkey):
    x = gf.data.uniform_sphere(getkey(), 500, 4)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-14)
    # Uniform on the sphere: E[x x^T] = I/d; sampling error ~ 1/sqrt(500), tolerance 0.05.
    np.testing.assert_allclose(np.asarray(x.T @ x) / 500, np.eye(4) / 4, atol=0.05)
    y = gf.data.teacher_targets(getkey(), x, width=3)
    assert y.shape == (500, 1) and float(np.min(y)) < 0 < float(np.max(y))
    with pytest.raises(ValueError, match="Unknown activation"):
        gf.data.teacher_targets(getkey(), x, activation="swish")


def test_quickstart_notebook_runs_and_asserts_its_claims():
    # The notebooks assert what they show; paper_figures runs in test_experiments.py and
    # theorems in check/test_checks.py and gd_vs_flow in test_edge_of_stability.py, beside the
    # tests that compile the same programs, and regimes in check/test_check_implicit_bias.py.
    run_notebook("quickstart.ipynb")
    names = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert names == [
        "gd_vs_flow.ipynb",
        "paper_figures.ipynb",
        "quickstart.ipynb",
        "regimes.ipynb",
        "theorems.ipynb",
    ]


def test_a_failing_notebook_cell_fails_the_run(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("assert x == 2, 'claim'")])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "bad.ipynb")
    with pytest.raises(AssertionError, match="bad.ipynb, code cell 2 failed") as exc:
        run_notebook(tmp_path / "bad.ipynb")
    assert "claim" in str(exc.value.__cause__)


def _quiet(*args):
    return [*args, "--no-cache", "--no-progress"]


def _forbid(monkeypatch, target, name):
    def called(*a, **k):
        raise AssertionError(f"{name} ran before the output folder was checked")

    monkeypatch.setattr(target, name, called)


def test_bad_output_folder_stops_every_command_before_computing(tmp_path, monkeypatch, capsys):
    import gradflow.experiments as ex

    _forbid(monkeypatch, gf, "sweep_alpha")
    _forbid(monkeypatch, gf.check, "run")
    _forbid(monkeypatch, ex, "run")
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    commands = [
        ["alpha-sweep", "--out", str(afile), "--no-cache"],
        ["check", "scale_criterion", "--out", str(afile), "--no-cache"],
        ["reproduce", "tau-sweep", "--quick", "--out", str(tmp_path / "results.txt" / "x")],
        ["alpha-sweep", "--out", str(afile / "sub"), "--no-cache"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "is a file" in err or "a part of that path is a file" in err, err
    assert afile.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused(tmp_path, monkeypatch, capsys):
    _forbid(monkeypatch, gf, "sweep_alpha")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["alpha-sweep", "--out", str(ro), "--no-cache"]) == 2
        assert "is not writable (Permission denied)" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("alphas", ["0,1", "1,nan", "-3", "1,inf"])
def test_non_positive_or_non_finite_alphas_are_refused_at_parse_time(alphas, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["alpha-sweep", "--alphas", alphas])
    assert exc.value.code == 2
    assert "expected comma-separated finite numbers > 0" in capsys.readouterr().err


def test_ctrl_c_is_one_line_exit_130_and_keeps_finished_points(tmp_path, monkeypatch, capsys):
    import gradflow.experiments as ex

    # Ctrl-C while the second point is measured, after the first was solved and stored.
    calls = []
    real = ex.Homogeneity.measure

    def first_then_interrupt(self, problem, solution, **point):
        calls.append(point)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, problem, solution, **point)

    monkeypatch.setattr(ex.Homogeneity, "measure", first_then_interrupt)
    rc = main(_quiet("reproduce", "homogeneity", "--quick", "--out", str(tmp_path)))
    assert rc == 130
    err = capsys.readouterr().err
    folder = tmp_path / "homogeneity"
    assert err.strip() == (
        f"gradflow reproduce: interrupted; finished points are kept in {folder}; rerun the same "
        "command to resume"
    )
    first = ex.point_key(tau=calls[0]["tau"], flow=calls[0]["flow"])
    assert first == "tau=0.3_flow=direct"
    assert [p.stem for p in (folder / "points").glob("*.json")] == [first]
    assert not list((folder / "locks").glob("*.json"))  # the folder is free for the rerun


def test_relu_note_and_why_no_slope_was_fitted(tmp_path, capsys):
    argv = ["alpha-sweep", "--out", str(tmp_path), "--alphas", "10,100", "--fit-min", "1e6"]
    argv += ["--samples", "8", "--dim", "3", "--width", "8", "--t1", "1", "--activation", "relu"]
    assert main(_quiet(*argv)) == 0
    out = capsys.readouterr().out
    assert "note: ReLU has a kink at 0" in out and "outside the finite-horizon theorem" in out
    assert (
        "no slopes fitted: a fit needs 2 successful alphas >= fit_min 1e+06, and 0 of the 2 "
        "alphas qualify (the largest alpha is 100); lower fit_min (--fit-min) or add larger "
        "alphas" in out
    )
    assert "slope of sup" not in out


_KILLED = """
import os, signal, sys
sys.argv = ["gradflow", "alpha-sweep", "--no-cache"]
import gradflow.cli as cli

def killed_midway(args):
    print("row 1 of the table")
    os.kill(os.getpid(), signal.SIGKILL)

cli._run_alpha_sweep = killed_midway
cli.main(sys.argv[1:])
"""


def test_a_killed_runs_redirected_log_holds_what_was_printed(tmp_path):
    log = tmp_path / "log.txt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # the default
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-c", _KILLED], stdout=f, env=env, timeout=120)
    assert proc.returncode == -9
    assert log.read_text() == "row 1 of the table\n"


def test_help_states_meaning_default_and_unit_of_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["alpha-sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for opt in ("--activation", "--scaling", "--rtol", "--atol", "--seed", "--alphas", "--t1"):
        after = text.split(f"{opt} ")[-1]
        assert "(default:" in after.split(" --")[0], opt
    assert "(default: 1,3,10,30,100,300,1000,3000,10000)" in text
    assert "mean_field is 1/m" in text and "sqrt is 1/sqrt(m)" in text
    assert "square loss R(f) = 1/2 ||f - y||_F^2" in text and "3 ReLU neurons" in text
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    check_help = " ".join(capsys.readouterr().out.split())
    assert "about 4 min of CPU on 2 cores" in check_help and "--size research" in check_help
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    desc = capsys.readouterr().out.split("positional arguments")[0]
    assert max(len(line) for line in desc.splitlines()) <= 90
    assert main(["reproduce", "tau-sweep", "--set", "help=1"]) == 0
    out = capsys.readouterr().out
    assert "  lazy_step = 0.1  (float)\n      c in the GD step min(max_step, c / tau^2)" in out


def test_every_experiment_option_is_described():
    from gradflow.experiments import EXPERIMENTS

    for name, cls in EXPERIMENTS.items():
        fields = dataclasses.fields(cls)
        # Each option carries its meaning on its field (`gradflow.experiments.option`).
        assert all(len(f.metadata.get("help", "")) > 5 for f in fields), name
        text = cls.quick().describe_options()
        assert text.count("\n      ") == len(fields), name
        assert all(f"\n      {f.metadata['help']}" in text for f in fields), name


@pytest.mark.parametrize(
    "argv, repeat",
    [
        (["alpha-sweep", "--alphas", "10,10"], "`alphas` lists 10.0 twice"),
        (["alpha-sweep", "--alphas", "1,10,1e1"], "`alphas` lists 10.0 twice"),
        (["reproduce", "homogeneity", "--quick", "--set", "taus=0.3,3,0.3"], "0.3 twice"),
        (["reproduce", "width", "--quick", "--set", "widths=8,16,8,8"], "8 3 times"),
        (["reproduce", "trajectories", "--quick", "--set", "methods=gd,gd"], "'gd' twice"),
    ],
)
def test_a_repeated_sweep_value_is_one_line_exit_2(argv, repeat, tmp_path, monkeypatch, capsys):
    # Each value of a sweep is one point: a repeat is the user's error, named before anything
    # is computed or any folder made.
    import gradflow.experiments as ex

    _forbid(monkeypatch, ex, "run")
    assert main(_quiet(*argv, "--out", str(tmp_path / "out"))) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert repeat in err and "list each value once" in err, err
    assert not (tmp_path / "out").exists()


# A size per experiment whose arrays cannot fit in any machine's memory (at least 1 PiB).
_TOO_LARGE = [
    (["alpha-sweep", "--samples", "1000000000000"], "samples"),
    (["reproduce", "tau-sweep", "--quick", "--set", "n_train=1000000000000"], "n_train"),
    (["reproduce", "width", "--quick", "--set", "widths=8,1000000000000"], "widths"),
    (["reproduce", "trajectories", "--quick", "--set", "width=10000000000000"], "width"),
    (
        ["reproduce", "population-sgd", "--quick", "--set", "batch_size=10000000000000"],
        "batch_size",
    ),
    (["reproduce", "cnn", "--quick", "--set", "epochs=100000000000000"], "epochs"),
    (["reproduce", "cnn", "--quick", "--set", "stages=8,0,100000000000"], "stages"),
    (["reproduce", "tensor", "--quick", "--set", "dim=1000000"], "dim"),
    (["reproduce", "homogeneity", "--quick", "--set", "width=1000000000000"], "width"),
    (["reproduce", "regimes", "--quick", "--set", "n_trains=15,1000000000"], "n_trains"),
]


@pytest.mark.parametrize("argv, option", _TOO_LARGE, ids=[" ".join(a[:2]) for a, _ in _TOO_LARGE])
def test_sizes_that_cannot_fit_are_refused_with_the_memory_they_need(
    argv, option, tmp_path, monkeypatch, capsys
):
    # XLA aborts the process (SIGABRT) on an allocation it cannot make: such sizes are refused
    # where the options are checked, naming the option, the memory needed and the limit.
    import gradflow.experiments as ex

    _forbid(monkeypatch, ex, "run")
    assert main(_quiet(*argv, "--out", str(tmp_path / "out"))) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(
        rf"`{option}`=\S+ .*needs? at least \d+(\.\d+)? [PEZY]iB of memory.*this machine has "
        r"\d+(\.\d+)? [KMGT]iB",
        err,
    ), err
    assert re.search(rf"; lower .*\b{option}\b", err), err
    assert not (tmp_path / "out").exists()


def test_alpha_sweep_is_the_reproduce_experiment(tmp_path, capsys):
    # One implementation: the short command and `reproduce alpha-sweep` run the same
    # experiment and print the same table (numbers equal to the last digit).
    opts = {"alphas": "10,100", "samples": "8", "dim": "3", "width": "8", "t1": "1"}
    short = ["alpha-sweep", "--out", str(tmp_path / "a"), "--no-cache", "--no-progress"]
    for k, v in opts.items():
        short += [f"--{k.replace('_', '-')}", v]
    assert main(short) == 0
    table_short = capsys.readouterr().out.split("points computed")[0]
    full = ["reproduce", "alpha-sweep", "--out", str(tmp_path / "b"), "--no-cache", "--no-progress"]
    for k, v in opts.items():
        full += ["--set", f"{k}={v}"]
    assert main(full) == 0
    table_full = capsys.readouterr().out.split("points computed")[0]
    assert table_short == table_full and "slope of sup param_gap" in table_short
    assert max(len(line) for line in table_full.splitlines()) < 120


def test_reproduce_tables_fit_a_terminal():
    import gradflow.experiments as ex

    # Every experiment's table under 120 columns, from a summary with many columns (the JSON
    # keeps them all and the table names the ones it leaves out).
    rows = [{f"column_{j}": float(j) for j in range(20)} for _ in range(3)]
    for cls in ex.EXPERIMENTS.values():
        experiment = cls.quick()
        if type(experiment).report is not ex.AbstractExperiment.report:
            continue
        text = experiment.report({"rows": rows, "ratio": 1.5})
        assert max(len(line) for line in text.splitlines()) < 120, cls.name
        assert "more columns in" in text and "column_19" in text


def test_a_bug_after_the_run_shows_its_traceback_and_keeps_the_points(tmp_path, monkeypatch):
    # Only the user's errors are one line (exit 2); a ValueError from a bug in `summarize`
    # propagates with its traceback, and the finished points stay on disk for the rerun.
    from gradflow.experiments import TwoLayerAlphaSweep

    def broken(self, sweep):
        raise ValueError("a bug in summarize")

    monkeypatch.setattr(TwoLayerAlphaSweep, "summarize", broken)
    argv = ["alpha-sweep", "--out", str(tmp_path), "--alphas", "10,100", "--samples", "8",
            "--dim", "3", "--width", "8", "--t1", "1", "--no-cache", "--no-progress"]  # fmt: skip
    with pytest.raises(ValueError, match="a bug in summarize"):
        main(argv)
    assert len(list((tmp_path / "points").glob("*.json"))) == 2
