"""The store's edge: solutions as JSON records and back, in the format stored points have."""

import json
from pathlib import Path

import diffrax as dfx
import numpy as np
import pytest
from helpers import two_layer_problem

import gradflow as gf
from gradflow.sweeps._records import info_from_record, solution_from_record, solution_record

# Solutions as gradflow 3d461dd wrote them (`Solution.to_dict`, what a stored point holds), of
# a tanh net TwoLayer(4) with 12 parameters (a ReLU one for "controller") at ts = [0, 0.5, 1].
OLD = json.loads((Path(__file__).parent / "solutions_3d461dd.json").read_text())
# The options each was solved with.
OLD_OPTIONS = {
    "auto": gf.SolveOptions(ts=[0.0, 0.5, 1.0]),
    "given": gf.SolveOptions(
        ts=[0.0, 0.5, 1.0], solver=dfx.Tsit5(), rtol=1e-6, atol=1e-9, linearized=False
    ),
    "gradient_descent": gf.SolveOptions(ts=[0.0, 0.5, 1.0], solver=gf.GradientDescent(0.25)),
    "controller": gf.SolveOptions(
        ts=[0.0, 0.5, 1.0],
        stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-4),
        linearized=False,
    ),
    "constant": gf.SolveOptions(
        ts=[0.0, 0.5, 1.0], solver=dfx.Euler(), dt0=0.125, linearized=False
    ),
    "failed": gf.SolveOptions(ts=[0.0, 0.5, 1.0], max_steps=2),
    "batch": gf.SolveOptions(ts=[0.0, 0.5, 1.0]),
}


@pytest.mark.parametrize("name", sorted(OLD_OPTIONS))
def test_records_written_by_earlier_versions_read_back_identically(name):
    record = OLD[name]
    sol = solution_from_record(record, OLD_OPTIONS[name])
    # Written again: the same JSON, key for key and in the same order.
    again = json.loads(json.dumps(solution_record(sol), allow_nan=False))
    assert again == record and list(again) == list(record)
    info = sol.info
    for key in ("solver", "solver_choice", "rtol", "atol", "t1", "dtype", "linearized"):
        assert getattr(info, key) == record[key], key
    assert info.center is record["center"] and info.num_params == record["num_params"] == 12
    assert sol.succeeded is record["succeeded"]
    np.testing.assert_array_equal(sol.loss, [np.nan if v is None else v for v in record["loss"]])
    if record["solver_choice"] == "given":
        assert info.choice is None and info.options == OLD_OPTIONS[name]
        assert "solver_reason" not in record and info.solver_reason is None
    else:
        # The solver auto chose is the one the options now hold.
        assert info.options == OLD_OPTIONS[name].replace(solver=info.choice.solver)
        assert type(info.choice.solver).__name__ == record["solver"]
        assert info.stiffness == record["stiffness"] == info.choice.stiffness
        assert info.solver_reason == record["solver_reason"]


def test_the_batch_mark_reads_back_typed():
    # What used to be only a suffix of the reason is the choice's `estimated_from`.
    batch = solution_from_record(OLD["batch"], OLD_OPTIONS["batch"]).info
    single = solution_from_record(OLD["auto"], OLD_OPTIONS["auto"]).info
    assert batch.choice.estimated_from is gf.StiffnessSource.batch
    assert single.choice.estimated_from is gf.StiffnessSource.problem
    assert batch.choice.reason == single.choice.reason == single.solver_reason
    assert batch.solver_reason == single.solver_reason + " (the batch's stiffest point)"
    assert batch != single and hash(batch.options) == hash(single.options)


def test_solution_record_is_json_ready(getkey):
    problem = two_layer_problem(getkey(), n=6, d=3, m=8, alpha=10.0)
    # save_params: the program of `test_kernel_drift_against_materialized_jacobians`.
    sol = gf.solve(problem, t1=1.0, ts=[0.0, 1.0], save_params=True)
    d = json.loads(json.dumps(solution_record(sol), allow_nan=False))
    assert d["succeeded"] and d["solver"] == "Tsit5" and d["alpha"] == 10.0
    assert d["param_gap"][0] == 0.0 and d["param_gap"][1] > 0
    again = solution_from_record(d, gf.SolveOptions(1.0, [0.0, 1.0], save_params=True))
    assert again.info == sol.info and hash(again.info) == hash(sol.info)


def _info_keys(name):
    return {k: v for k, v in OLD[name].items() if k in _INFO}


_INFO = ["solver", "solver_choice", "rtol", "atol", "t1", "dtype", "linearized", "center"]
_INFO += ["num_params", "solver_reason", "stiffness"]


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("given", {"rtol": -1e-8}, r"it records rtol=-1e-08; the options give rtol=1e-06"),
        ("given", {"t1": None}, r"it records t1=None; the options give t1=1.0"),
        ("given", {"linearized": "yes"}, r"it records linearized='yes'"),
        ("given", {"solver": "Heun"}, r"it records solver='Heun'; the options give solver='Tsit5'"),
        ("given", {"solver_choice": "chosen"}, r"solver_choice='chosen'; the options give"),
        ("given", {"solver_reason": "why"}, r"it records solver_reason='why'; the options give"),
        ("auto", {"solver_reason": None}, r"an 'auto' choice without its reason"),
        ("auto", {"stiffness": "high"}, r"stiffness='high'; a stiffness is a number or None"),
        ("auto", {"solver": "Dopri8"}, r"'auto' choice of 'Dopri8', which 'auto' never chooses"),
        ("gradient_descent", {"atol": 1e-10}, r"it records atol=1e-10; the options give atol=None"),
    ],
)
def test_a_record_the_options_do_not_reproduce_is_refused(name, change, message):
    with pytest.raises(ValueError, match=message):
        info_from_record({**_info_keys(name), **change}, OLD_OPTIONS[name])


def test_a_record_with_unknown_or_missing_keys_is_refused():
    good = _info_keys("given")
    assert info_from_record(good, OLD_OPTIONS["given"]).solver == "Tsit5"
    with pytest.raises(ValueError, match=r"`record` holds unknown key\(s\) \['seed'\]"):
        info_from_record({**good, "seed": 0}, OLD_OPTIONS["given"])
    partial = {k: v for k, v in good.items() if k not in ("t1", "dtype")}
    with pytest.raises(ValueError, match=r"`record` lacks the key\(s\) \['t1', 'dtype'\]"):
        info_from_record(partial, OLD_OPTIONS["given"])
    with pytest.raises(ValueError, match="`record` must be a mapping"):
        info_from_record([("solver", "Tsit5")], OLD_OPTIONS["given"])
    # An auto choice read with options that give a solver, and the reverse.
    with pytest.raises(ValueError, match=r"an 'auto' choice of Tsit5, but the options give"):
        info_from_record(_info_keys("auto"), OLD_OPTIONS["given"])
    with pytest.raises(ValueError, match=r"the solver Tsit5 given \('given'\), but the options"):
        info_from_record(good, OLD_OPTIONS["auto"])
