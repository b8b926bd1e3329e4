"""`gf.SolveOptions`: one immutable, hashable object, checked where it is built and replaced.
(Each argument's error message is asserted in `tests/test_errors.py`, for `solve` and for the
options alike.)"""

import dataclasses
import inspect

import diffrax as dfx
import numpy as np
import pytest

import gradflow as gf


def test_options_are_immutable_and_hashable():
    a = gf.SolveOptions(2.0, [0.0, 1.0, 2.0], rtol=1e-6)
    b = gf.SolveOptions(t1=2, ts=np.array([0, 1, 2]), rtol=np.float64(1e-6))
    # Checked values: Python numbers and a tuple of times, so equal options are equal.
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert type(b.t1) is float and b.ts == (0.0, 1.0, 2.0) and type(b.rtol) is float
    assert a != a.replace(rtol=1e-7) and a != a.replace(linearized=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.rtol = 1e-3
    # Solvers and controllers that hold arrays (RKC's power iteration) hash by their values.
    rkc = gf.SolveOptions(1.0, solver=gf.RKC(), stepsize_controller=dfx.PIDController(1e-3, 1e-6))
    same = gf.SolveOptions(1.0, solver=gf.RKC(), stepsize_controller=dfx.PIDController(1e-3, 1e-6))
    assert rkc == same and hash(rkc) == hash(same)
    assert rkc != rkc.replace(solver=gf.RKC(gf.PowerIteration(safety=1.5)))
    assert hash(gf.SolveOptions(1.0, solver=gf.GradientDescent(0.1))) != hash(
        gf.SolveOptions(1.0, solver=gf.GradientDescent(0.05))
    )


def test_defaults_are_stated_once():
    options = gf.SolveOptions(1.0)
    assert options.rtol == 1e-8 and options.atol == 1e-10 and options.solver == "auto"
    assert options.ts is None and options.max_steps is None and options.linearized
    assert gf.SolveOptions(1.0, solver=None).solver == "auto"
    # `solve` builds the options from its keywords and restates none of their defaults.
    defaults = {
        name: p.default
        for name, p in inspect.signature(gf.solve).parameters.items()
        if name not in ("problem", "t1", "ts", "options", "throw")
    }
    assert set(defaults) == {f.name for f in dataclasses.fields(gf.SolveOptions)} - {"t1", "ts"}
    assert len({id(v) for v in defaults.values()}) == 1
    assert repr(defaults["rtol"]) == "<the SolveOptions default>"


def test_horizon_from_save_times_and_gradient_descent_iterates():
    assert gf.SolveOptions(ts=[0.0, 0.5, 2.0]).t1 == 2.0
    # Gradient descent: t1 and ts placed on the iterates k * eta.
    gd = gf.SolveOptions(0.3 + 1e-12, [0.1, 0.2 + 1e-12], solver=gf.GradientDescent(0.1))
    assert gd.t1 == 3 * 0.1 and gd.ts == (1 * 0.1, 2 * 0.1)
    with pytest.raises(ValueError, match=r"`ts` must be iterates, multiples of learning_rate=0.1"):
        gf.SolveOptions(1.0, [0.15], solver=gf.GradientDescent(0.1))
    with pytest.raises(ValueError, match=r"got t1=0.0 \(ts\[-1\], as `t1` is not given\)"):
        gf.SolveOptions(ts=[0.0])


def test_replace_checks_again():
    options = gf.SolveOptions(1.0, [0.0, 0.5, 1.0])
    assert options.replace(rtol=1e-6).rtol == 1e-6 and options.rtol == 1e-8
    with pytest.raises(ValueError, match=r"`rtol` must be a finite number > 0; got rtol=-1.0"):
        options.replace(rtol=-1.0)
    with pytest.raises(ValueError, match=r"`t1` must be a whole number of steps of learning_rate"):
        options.replace(solver=gf.GradientDescent(0.3))
    with pytest.raises(ValueError, match=r"`solver=Euler\(\)` has no error estimate"):
        options.replace(solver=dfx.Euler())
    with pytest.raises(ValueError, match=r"`ts` must lie inside \[0, t1\]"):
        options.replace(t1=0.5)
    with pytest.raises(TypeError, match=r"`SolveOptions.replace` got unknown option\(s\) \['x'\]"):
        options.replace(x=1)
    # Another solver places the save times on its iterates.
    gd = options.replace(solver=gf.GradientDescent(0.25))
    assert gd.t1 == 1.0 and gd.ts == (0.0, 0.5, 1.0)
    assert gd == gf.SolveOptions(1.0, [0.0, 0.5, 1.0], solver=gf.GradientDescent(0.25))


def test_replacing_save_times_moves_a_horizon_that_ended_at_them():
    # A horizon that ended at the last save time (given or derived) follows new save times, as
    # if only `ts` had been given; a longer horizon is kept.
    derived = gf.SolveOptions(ts=[0.0, 1.0])
    assert derived.replace(ts=[0.0, 3.0]).t1 == 3.0
    assert derived.replace(ts=[0.0, 0.5]) == gf.SolveOptions(ts=[0.0, 0.5])
    longer = gf.SolveOptions(5.0, [0.0, 1.0])
    assert longer.replace(ts=[0.0, 2.0]).t1 == 5.0
    assert gf.SolveOptions(5.0).replace(ts=[1.0]).t1 == 5.0
    assert derived.replace(t1=4.0, ts=[2.0]) == gf.SolveOptions(4.0, [2.0])
