"""Fingerprints: a stored point is reused only for the same computation. A model edited in place
(same name, other body), a changed global it reads, or an edited `measure` is never resumed."""

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

N, D, M = 8, 3, 6
_X = np.asarray(gf.data.uniform_sphere(jax.random.PRNGKey(0), N, D))
_Y = np.asarray(gf.data.teacher_targets(jax.random.PRNGKey(1), _X))
TANH = "def apply(p, x):\n    return (jnp.tanh(x @ p['w']) @ p['a'])[:, None]\n"
OPTS = {"t1": 1.0, "ts": [0.0, 1.0], "linearized": False, "rtol": 1e-8}


def _notebook_cell(source: str) -> dict:
    """Run `source` as a notebook cell would: the same module namespace every time, so a
    function defined again keeps its module and qualified name."""
    namespace = {"__name__": "__main__", "jnp": jnp, "np": np}
    exec(textwrap.dedent(source), namespace)
    return namespace


def _params(seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"w": jax.random.normal(k1, (D, M)), "a": jax.random.normal(k2, (M,)) / M}


def _build_with(apply):
    def build(seed):
        return gf.Problem(apply, _params(seed), _X, gf.SquareLoss(_Y), alpha=1.0)

    return build


def test_model_edited_in_place_is_never_resumed(tmp_path):
    cell = "def apply(p, x):\n    return (jnp.{f}(x @ p['w']) @ p['a'])[:, None]\n"
    old = _notebook_cell(cell.format(f="tanh"))["apply"]
    new = _notebook_cell(cell.format(f="sin"))["apply"]
    assert (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)
    points = [{"seed": 0}, {"seed": 1}]
    first = gf.sweep(_build_with(old), points, store=tmp_path, **OPTS)
    assert not any(first.resumed)
    with pytest.raises(
        gf.StoreError,
        match=r"2 point\(s\) in .* another computation .*seed=0 \(differs in: apply\); "
        r"seed=1 \(differs in: apply\).*overwrite=True",
    ):
        gf.sweep(_build_with(new), points, store=tmp_path, **OPTS)
    again = gf.sweep(_build_with(new), points, store=tmp_path, overwrite=True, **OPTS)
    assert not any(again.resumed)
    # Ground truth: the edited model's own solve at a much tighter tolerance.
    for i, point in enumerate(points):
        ref = gf.solve(_build_with(new)(**point), ts=[0.0, 1.0], rtol=1e-12, atol=1e-14,
                       linearized=False)  # fmt: skip
        np.testing.assert_allclose(again.final("loss")[i], float(ref.loss[-1]), rtol=1e-6)
        assert abs(again.final("loss")[i] - first.final("loss")[i]) > 1e-4
    assert all(gf.sweep(_build_with(new), points, store=tmp_path, **OPTS).resumed)


def test_a_changed_global_the_model_reads_changes_its_fingerprint():
    cell = "SCALE = {c}\n" + TANH.replace("return (", "return SCALE * (")
    fps = [
        gf.problem_fingerprint(_build_with(_notebook_cell(cell.format(c=c))["apply"])(0))
        for c in (1.0, 1.0 + 2**-40, 1.0)
    ]
    assert fps[0]["apply"] != fps[1]["apply"]  # a change in the 13th digit is seen
    assert fps[0] == fps[2]
    assert fps[0]["params0"] == fps[1]["params0"] and fps[0]["loss"] == fps[1]["loss"]


def test_an_edited_loss_is_a_changed_loss():
    class Scaled(gf.SquareLoss):
        def __call__(self, outputs):
            return 2.0 * super().__call__(outputs)

    params = _params()
    apply = _notebook_cell(
        "def apply(p, x):\n    return (jnp.tanh(x @ p['w']) @ p['a'])[:, None]\n"
    )
    plain = gf.problem_fingerprint(gf.Problem(apply["apply"], params, _X, gf.SquareLoss(_Y)))
    scaled = gf.problem_fingerprint(gf.Problem(apply["apply"], params, _X, Scaled(_Y)))
    assert plain["loss"] != scaled["loss"] and plain["apply"] == scaled["apply"]


def test_an_edited_measure_is_never_resumed(tmp_path):
    # A measure in plain numpy (no jaxpr): hashed by its bytecode, constants and closure.
    cell = (
        "def measure(problem, solution, seed):\n"
        "    return {{'final_loss': np.asarray(solution.loss)[-1] * {c}}}\n"
    )
    old = _notebook_cell(cell.format(c=1.0))["measure"]
    new = _notebook_cell(cell.format(c=2.0))["measure"]
    apply = _notebook_cell(
        "def apply(p, x):\n    return (jnp.tanh(x @ p['w']) @ p['a'])[:, None]\n"
    )
    build, points = _build_with(apply["apply"]), [{"seed": 0}]
    first = gf.sweep(build, points, store=tmp_path, measure=old, **OPTS)
    with pytest.raises(gf.StoreError, match=r"seed=0 \(differs in: `measure`"):
        gf.sweep(build, points, store=tmp_path, measure=new, **OPTS)
    with pytest.raises(gf.StoreError, match=r"differs in: `measure`"):
        gf.sweep(build, points, store=tmp_path, **OPTS)  # no measure: another record
    again = gf.sweep(build, points, store=tmp_path, measure=new, overwrite=True, **OPTS)
    np.testing.assert_allclose(
        again.measures["final_loss"], 2.0 * first.measures["final_loss"], rtol=1e-12
    )
    assert all(gf.sweep(build, points, store=tmp_path, measure=new, **OPTS).resumed)


def test_a_point_stored_under_an_earlier_fingerprint_scheme_says_so(tmp_path):
    apply = _notebook_cell(
        "def apply(p, x):\n    return (jnp.tanh(x @ p['w']) @ p['a'])[:, None]\n"
    )
    build, points = _build_with(apply["apply"]), [{"seed": 0}]
    first = gf.sweep(build, points, store=tmp_path, **OPTS)
    path = tmp_path / "points" / f"{first.keys[0]}.json"
    body = json.loads(path.read_text())
    record = body["record"]
    del record["fingerprint"]["format"]
    record["fingerprint"]["problem"]["apply"] = "0" * 16
    _rewrite(path, body)
    with pytest.raises(gf.StoreError, match=r"fingerprint format \(stored before format 3"):
        gf.sweep(build, points, store=tmp_path, **OPTS)


def _rewrite(path, body):
    # Re-checksum the edited record as the store would, so only the fingerprint differs.
    from gradflow.sweeps._store import _content_hash

    body["sha256"] = _content_hash(body["record"])
    path.write_text(json.dumps(body))


_FINGERPRINT_SCRIPT = """
import json, jax, numpy as np
import gradflow as gf
x = np.asarray(gf.data.uniform_sphere(jax.random.PRNGKey(0), 8, 3))
y = np.asarray(gf.data.teacher_targets(jax.random.PRNGKey(1), x))
model = gf.models.TwoLayer(6, "relu")
params = model.init(jax.random.PRNGKey(2), 3, doubled=True, tau=0.5)
problem = gf.Problem(model, params, x, gf.SquareLoss(y), alpha=3.0, center=True)
print(json.dumps(gf.problem_fingerprint(problem)))
"""


def test_fingerprints_are_equal_in_two_processes():
    # The jaxpr text must hold no address, counter or other per-process state.
    outs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _FINGERPRINT_SCRIPT],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert outs[0] == outs[1]
    assert set(outs[0]) == {"apply", "params0", "inputs", "loss", "alpha", "center"}
