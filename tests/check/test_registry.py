"""The theorem registry: each check module declares its theorem as one record, the registry is the
tuple of those records, and the names, the problems of each size, the research options, `run`
and `gradflow check` are all read from it; a new check module joins it with one line."""

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradflow as gf
import theory

CHECK = Path(gf.check.__file__).parent


def test_the_registry_is_the_records_of_the_check_modules():
    names = tuple(t.name for t in gf.check.REGISTRY)
    assert gf.check.THEOREMS == names and set(names) <= set(theory.STATEMENTS)
    assert gf.check.THEOREMS == (
        "next_to_lazy",
        "finite_horizon",
        "over_parameterized",
        "under_parameterized",
        "scale_criterion",
        "off_training_set",
        "implicit_bias",
    )
    assert gf.check.RESEARCH_THEOREMS == ("next_to_lazy", "finite_horizon", "scale_criterion")
    assert gf.check.RESEARCH_THEOREMS == tuple(
        t.name for t in gf.check.REGISTRY if t.research is not None
    )
    for record in gf.check.REGISTRY:
        assert isinstance(record, gf.check.Theorem)
        # The record lives beside its check, which is the public function of that name.
        module = sys.modules[record.check.__module__]
        assert module.THEOREM is record
        assert getattr(gf.check, record.check.__name__) is record.check
        # Its statement is the one of `theory` under the theorem's name.
        assert record.statement() is theory.STATEMENTS[record.name]()
        assert record.statement().name == record.name
        # The figure: the rates, bounds and curves, except the implicit bias's transition.
        special = {"implicit_bias": gf.check.plot_implicit_bias}
        assert record.plot is special.get(record.name, gf.check.plot_check)
    scale = gf.check.REGISTRY[gf.check.THEOREMS.index("scale_criterion")]
    assert scale.extras == (gf.check.check_width_law,)


def test_the_registry_holds_objects_not_names():
    # No module of gradflow.check resolves a function from a string.
    for path in sorted(CHECK.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert "importlib" not in imported, path.name
    registry = ast.parse((CHECK / "_registry.py").read_text())
    names = {
        n.func.id
        for n in ast.walk(registry)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    assert not names & {"getattr", "import_module", "__import__", "eval"}


def _report(theorem: str, problem: str, measured: float) -> "gf.check.CheckReport":
    return gf.check.CheckReport(
        theorem=theorem,
        problem=problem,
        description="a synthetic report",
        hypotheses=(gf.check.Hypothesis("none", True, ""),),
        constants=(gf.check.constant_check("one", 1.0, measured, 1e-12),),
    )


def _toy_record(calls: list) -> "gf.check.Theorem":
    # A record whose check does no computation: what `run` passes it is what is tested.
    problem = gf.check.matrix_factorization()
    small, large = (problem._replace(name=n) for n in ("small", "large"))

    def check(spec, *, value=1.0, scale=1.0):
        calls.append((spec.name, value, scale))
        return _report("toy", spec.name, value)

    return gf.check.Theorem(
        name="toy",
        statement=theory.finite_horizon,
        summary="a toy",
        check=check,
        problems=lambda: [small],
        research=gf.check.Research(
            problems=lambda: [small, large],
            settings={"scale": 2.0},
            problem_settings={"large": {"scale": 3.0, "value": 1.5}},
        ),
        extras=(lambda: _report("toy", "extra", 1.0),),
    )


def test_run_reads_the_theorem_from_its_record():
    calls = []
    toy = _toy_record(calls)
    seen = []
    reports = gf.check.run(toy, callback=seen.append)
    assert calls == [("small", 1.0, 1.0)]
    assert [r.problem for r in reports] == ["small", "extra"] and seen == reports
    assert [r.verdict for r in reports] == ["pass", "pass"]
    assert [r.problem for r in gf.check.run(toy, extras=False)] == ["small"]
    # Research size: the record's problems and settings, per-problem settings on top, and the
    # caller's keywords over both.
    calls.clear()
    reports = gf.check.run(toy, size="research", extras=False)
    assert calls == [("small", 1.0, 2.0), ("large", 1.5, 3.0)]
    assert [r.verdict for r in reports] == ["pass", "FAIL"]
    calls.clear()
    gf.check.run(toy, size="research", extras=False, scale=5.0)
    assert calls == [("small", 1.0, 5.0), ("large", 1.5, 5.0)]
    assert gf.check.research_settings(toy, "large") == {"scale": 3.0, "value": 1.5}
    assert gf.check.research_settings(toy) == {"scale": 2.0}
    assert [s.name for s in gf.check.default_problems(toy, size="research")] == [
        "small",
        "large",
    ]
    no_research = gf.check.Theorem(
        name="toy", statement=toy.statement, summary="", check=toy.check, problems=toy.problems
    )
    with pytest.raises(ValueError, match="The toy theorem has no research-size problems"):
        gf.check.run(no_research, size="research")
    with pytest.raises(ValueError, match=r"Unknown `size` 'huge'; choose one of"):
        gf.check.run(toy, size="huge")


def test_a_theorem_record_checks_its_fields():
    ok = dict(
        name="toy",
        statement=theory.finite_horizon,
        summary="",
        check=gf.check.check_finite_horizon,
        problems=list,
    )
    with pytest.raises(ValueError, match="`name` must be an identifier.*'toy check'"):
        gf.check.Theorem(**{**ok, "name": "toy check"})
    with pytest.raises(TypeError, match="`check` must be a function; got check='finite'"):
        gf.check.Theorem(**{**ok, "check": "finite"})
    with pytest.raises(TypeError, match="`extras` must be a tuple of functions"):
        gf.check.Theorem(**ok, extras=("check_width_law",))


# A check module of its own: a statement of `theory` (the scalar model's linearized flow), the
# check against it, its problem and its record. Copied into the package with one line of the
# registry, it is a theorem of `gradflow check`.
NEW_MODULE = '''
"""A toy theorem check: the scalar model's linearized loss against its closed form."""

import time

import jax.numpy as jnp
import numpy as np

from .._losses import SquareLoss
from .._problem import Problem
from ._base import Hypothesis, constant_check
from ._common import as_named, problem_report, solve_alphas
from ._problems import NamedProblem
from ._theorem import Theorem


def statement():
    from theory import Statement
    from theory.toy import alpha, scalar_model_flows, w0, y

    wbar = scalar_model_flows().wbar
    loss = (alpha * 2 * w0 * (wbar - w0) - y) ** 2 / 2
    return Statement("scalar_decay", "R(alpha hbar(wbar(t)))", ("h(w0) = 0",), (("loss", loss),))


def check_scalar_decay(spec, *, alphas=(10.0, 100.0), rtol=1e-10, atol=1e-12):
    start = time.perf_counter()
    spec = as_named(spec)
    problem = spec.problem
    ts = np.linspace(0.0, 1.0, 11)
    loss = statement().numeric("loss")
    w0, y = float(problem.params0[0]), float(problem.loss.targets[0, 0])
    family = solve_alphas(problem, alphas, ts, rtol=rtol, atol=atol)
    constants = [
        constant_check(
            f"max_t |linear loss - closed form|, alpha={a:g}",
            0.0,
            np.max(np.abs(s.linear_loss - loss(alpha=a, t=ts, w_0=w0, y=y))),
            1e-9,
        )
        for a, s in zip(alphas, family.solutions)
    ]
    hyps = (Hypothesis("h(w0) = 0", bool(problem.center), "centered"),)
    return problem_report("scalar_decay", spec, start, hypotheses=hyps, constants=constants)


def _apply(w, x):
    return w**2 * x


def _problems():
    problem = Problem(
        _apply, jnp.array([0.8]), jnp.ones((1, 1)), SquareLoss(jnp.full((1, 1), 0.5)), center=True
    )
    return [NamedProblem("scalar", "h(w) = w^2 - w0^2, w0 = 0.8, y = 0.5", problem)]


THEOREM = Theorem(
    name="scalar_decay",
    statement=statement,
    summary="the scalar model's linearized loss, in closed form",
    check=check_scalar_decay,
    problems=_problems,
)
'''

SCRIPT = """
import json, sys
import gradflow as gf
from gradflow.cli import main

assert gf.__file__.startswith(sys.argv[1]), gf.__file__
assert gf.check.THEOREMS[-1] == "scalar_decay"
assert "scalar_decay" not in gf.check.RESEARCH_THEOREMS
assert main(["check", "scalar_decay", "--no-cache", "--out", sys.argv[2]]) == 0
try:
    main(["check", "--help"])
except SystemExit:
    pass
"""


def test_a_new_check_module_joins_with_one_line(tmp_path):
    # The package copied, the new module written, and its record added to the tuple: the
    # theorem is in THEOREMS and `gradflow check NAME` runs it, with its table, JSON and figure.
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    root = CHECK.parents[1]
    for name in ("gradflow", "theory"):
        shutil.copytree(root / name, tree / name, ignore=ignore)
    check = tree / "gradflow" / "check"
    (check / "_scalar_decay.py").write_text(textwrap.dedent(NEW_MODULE))
    registry = (check / "_registry.py").read_text()
    anchor = "    _implicit_bias.THEOREM,\n"
    assert registry.count(anchor) == 1
    registry = registry.replace(anchor, anchor + "    _scalar_decay.THEOREM,\n")
    (check / "_registry.py").write_text("from . import _scalar_decay\n" + registry)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tree), str(out)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    help_text = " ".join(proc.stdout.split())
    assert "scalar_decay: the scalar model's linearized loss, in closed form" in help_text
    assert "scalar_decay on scalar: pass" in proc.stdout
    data = json.loads((out / "check.json").read_text())
    (report,) = data["reports"]
    assert report["theorem"] == "scalar_decay" and report["verdict"] == "pass"
    # Each closed-form comparison at its stated tolerance (1e-9, absolute on a loss of 0.125).
    assert [c["measured"] <= 1e-9 for c in report["constants"]] == [True, True]
    assert (out / "scalar_decay__scalar.png").stat().st_size > 10_000
