"""The command line, the alpha sweep and the notebooks, as a user runs them."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import two_layer_problem

import gradflow as gf
from gradflow import _sweep
from gradflow.cli import main

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
    assert "needs an even --width" in capsys.readouterr().err


def test_alpha_sweep_command_writes_figure_and_json(tmp_path, capsys):
    rc = main(
        [
            "alpha-sweep",
            "--out",
            str(tmp_path),
            "--alphas",
            "10,100,1000",
            "--samples",
            "12",
            "--dim",
            "3",
            "--width",
            "20",
            "--t1",
            "3",
            "--no-cache",
            "--no-progress",
        ]
    )
    assert rc == 0
    png, js = tmp_path / "alpha_sweep.png", tmp_path / "alpha_sweep.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    fits = data["sweep"]["fits"]
    # Finite-horizon theorem, centered model: slopes -1, -2, -1 (tolerance 0.1).
    for name, slope in gf.PREDICTED_SLOPES.items():
        assert abs(fits[name]["slope"] - slope) < 0.1
    assert data["sweep"]["errors"] == [None, None, None]
    assert data["environment"]["x64"] is True
    assert "slope of sup param_gap" in capsys.readouterr().out


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


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_notebook_runs(name):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
