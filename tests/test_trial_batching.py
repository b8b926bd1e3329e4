"""How a point's flow trials are solved: in lockstep (`vmap`) or one by one (`loop`)."""

import diffrax as dfx
import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow import experiments as ex
from gradflow.experiments._two_layer import (
    _test_loss,
    _train_options,
    train_trials,
    trial_batching,
)


def _point(batching: str, rtol: float = 1e-3):
    exp = ex.TauSweep.quick().replace(
        log10_tau_min=1.0, log10_tau_max=1.0, method="flow", flow_rtol=rtol
    )
    return exp, exp.replace(trial_batching=batching).train(tau=10.0)


def test_loop_and_vmap_solve_the_same_flows_each_trial_at_its_own_cost():
    # Both solve each trial's flow at rtol 1e-3 / tau (RKC). Against a third solve of each
    # trial at rtol 1e-9 (Tsit5, alone), both are within 3e-4 relative in the end-of-training
    # and best test losses (measured: 1.1e-4 and 5e-5).
    exp, loop = _point("loop")
    _, vmap = _point("vmap")
    assert loop["flow"]["batching"] == "loop" and vmap["flow"]["batching"] == "vmap"
    assert loop["flow"]["solver"] == vmap["flow"]["solver"] == "RKC"
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.PRNGKey(exp.seed), k))(
        np.arange(exp.trials)
    )
    iters, kw = _train_options(exp.width, exp.step(10.0), exp.num_steps, exp.num_saves, "x", 1)
    for i in range(exp.trials):
        problem, d = exp._trial(keys[i], 10.0)
        kw.update(solver=dfx.Tsit5(), rtol=1e-9, atol=1e-11)
        sol = gf.solve(problem, **kw)
        test = np.asarray(_test_loss(problem, sol.params, d.x_test, d.y_test))
        for rec in (loop, vmap):
            assert rec["test_loss_end"][i] == pytest.approx(test[-1], rel=3e-4)
            assert rec["test_loss_best"][i] == pytest.approx(test.min(), rel=3e-4)
    # Each trial's adaptive steps are its own under vmap too (diffrax's vmapped loop leaves a
    # finished trial as it is): the two agree far below the tolerance (measured 4e-12).
    np.testing.assert_allclose(loop["test_loss_end"], vmap["test_loss_end"], rtol=1e-9)
    # One by one, no trial pays for another's steps: under vmap every trial is charged at
    # least as much as alone.
    assert np.all(np.asarray(loop["evaluations"]) <= np.asarray(vmap["evaluations"]))


def test_batching_is_checked_where_it_enters_and_auto_is_loop_on_cpu():
    with pytest.raises(ValueError, match="`batching` must be 'auto', 'vmap' or 'loop'"):
        train_trials(
            lambda key: None,
            np.zeros((1, 2), np.uint32),
            step=0.1,
            num_steps=10,
            num_saves=5,
            method="flow",
            rtol=1e-3,
            batching="lockstep",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="Option `trial_batching` must be"):
        ex.TauSweep.quick().replace(trial_batching="lockstep").validate()
    assert trial_batching("vmap") == "vmap" and trial_batching("loop") == "loop"
    assert trial_batching("auto") == ("loop" if jax.default_backend() == "cpu" else "vmap")
