"""A sweep across two processes through jax.distributed (CPU, local coordinator): the combined
result, and a rerun after one process was killed mid-run."""

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow import experiments as ex
from gradflow.cli import main

N, D, M = 6, 2, 4
POINTS = [{"tau": t, "seed": s} for t in (0.5, 1.0, 2.0) for s in (0, 1)]
OPTS = {"t1": 1.0, "ts": [0.5, 1.0], "batch_size": 1, "linearized": False}


def build(tau, seed):
    model = gf.models.TwoLayer(M, "tanh")
    x = gf.data.uniform_sphere(jax.random.PRNGKey(100), N, D)
    y = gf.data.teacher_targets(jax.random.PRNGKey(101), x)
    params = model.init(jax.random.PRNGKey(seed), D, doubled=True, tau=tau)
    return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=1.0)


_PROCESS = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    port, index, store, mode = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    import jax
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, index)
    sys.path.insert(0, sys.argv[5])
    import gradflow as gf
    import test_distributed as t

    mine0 = [gf.sweeps._sweep._point_key(p) for i, p in enumerate(t.POINTS) if i % 2 == 0]

    def die_after_first_batch(records):
        if mode == "die" and index == 1:
            # Killed mid-run, once process 0's share is stored: a deterministic crash.
            while not all((store / "points" / f"{k}.json").exists() for k in mine0):
                time.sleep(0.05)
            os._exit(3)

    sw = gf.sweep(t.build, t.POINTS, store=store, callback=die_after_first_batch, **t.OPTS)
    print(json.dumps({"loss": sw.final("loss").tolist(),
                      "param_distance": sw.sup("param_distance").tolist()}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _launch(store: Path, mode: str) -> list[subprocess.Popen]:
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    here = str(Path(__file__).parent)
    return [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, str(port), str(i), str(store), mode, here],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]


def _digests(store: Path) -> dict[str, str]:
    return {
        p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in (store / "points").glob("*")
    }


def test_two_processes_combine_and_a_killed_process_redoes_only_its_points(tmp_path):
    store = tmp_path / "store"
    p0, p1 = _launch(store, "die")
    try:
        _, err1 = p1.communicate(timeout=180)
        assert p1.returncode == 3, err1[-3000:]
    finally:
        p0.kill()  # waiting at the final barrier for the dead process
        p0.communicate()
        p1.kill()
    keys = [gf.sweeps._sweep._point_key(p) for p in POINTS]
    before = _digests(store)
    # Process 0 (points 0, 2, 4) finished; process 1 (points 1, 3, 5) stored its first only.
    assert sorted(before) == sorted([keys[0], keys[2], keys[4], keys[1]])

    p0, p1 = _launch(store, "ok")
    (out0, err0), (out1, err1) = p0.communicate(timeout=180), p1.communicate(timeout=180)
    assert p0.returncode == 0 and p1.returncode == 0, (err0[-3000:], err1[-3000:])
    after = _digests(store)
    recomputed = sorted(k for k in after if before.get(k) != after[k])
    assert recomputed == sorted([keys[3], keys[5]])  # only the killed process's unfinished ones
    for k in (keys[3], keys[5]):
        record = json.loads((store / "points" / f"{k}.json").read_text())["record"]
        assert record["process"] == {"index": 1, "count": 2}
    assert "stale lock of a finished process" in err0 + err1  # the killed run's locks
    assert not list((store / "locks").glob("*.json"))  # released by both at the end

    # Every process returns the whole sweep; ground truth: the same sweep in one process.
    # Same per-point program (batches of 1), so agreement is to the solver tolerance (rtol
    # 1e-8) at worst; checked at 1e-7 relative.
    single = gf.sweep(build, POINTS, **OPTS)
    for out in (out0, out1):
        combined = json.loads(out.strip().splitlines()[-1])
        np.testing.assert_allclose(combined["loss"], single.final("loss"), rtol=1e-7)
        np.testing.assert_allclose(
            combined["param_distance"], single.sup("param_distance"), rtol=1e-7
        )


def test_process_split_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"A sweep across 2 processes needs `store=`"):
        gf.sweep(build, POINTS, process_index=0, process_count=2, **OPTS)
    with pytest.raises(ValueError, match=r"`process_index` must be an integer in \[0, 2\)"):
        gf.sweep(build, POINTS, store=tmp_path, process_index=2, process_count=2, **OPTS)


def test_a_share_without_jax_distributed_reports_the_others_as_not_computed(tmp_path):
    # A SLURM-array-like task: process 1 of 2 alone, then one process assembles everything.
    part = gf.sweep(build, POINTS[:2], store=tmp_path, process_index=1, process_count=2, **OPTS)
    assert part.errors[1] is None and part.is_(gf.SweepStatus.elsewhere).tolist() == [True, False]
    assert part.errors[0].startswith("not computed here: point of process 0 of 2")
    assert np.isnan(part.final("loss")[0]) and np.isfinite(part.final("loss")[1])
    whole = gf.sweep(build, POINTS[:2], store=tmp_path, **OPTS)
    assert whole.resumed.tolist() == [False, True]
    ref = gf.solve(build(**POINTS[0]), t1=1.0, ts=[0.5, 1.0], rtol=1e-12, atol=1e-14,
                   linearized=False)  # fmt: skip
    np.testing.assert_allclose(whole.final("loss")[0], ref.loss[-1], rtol=1e-7)


@dataclasses.dataclass(frozen=True)
class _Squares(ex.AbstractExperiment):
    """A toy experiment: point k computes k^2."""

    name: ClassVar[str] = "squares"
    title: ClassVar[str] = "squares"
    claim: ClassVar[str] = "k^2"
    options_help: ClassVar[dict[str, str]] = {"n": "number of points"}
    n: int = 5

    def points(self):
        return [(f"k={k}", {"k": k}) for k in range(self.n)]

    def build(self, *, k):
        return gf.Computation(self.square, k=k)

    def square(self, *, k):
        return {"square": k * k}

    def summarize(self, sweep):
        return {"squares": sorted(r["square"] for r in ex.outputs(sweep).values())}

    def plot(self, summary, folder):
        return []


def test_experiment_runner_splits_points_and_one_run_assembles_them(tmp_path):
    exp = _Squares()
    one = ex.run(exp, tmp_path, progress=False, process_index=1, process_count=2)
    assert one.computed == ["k=1", "k=3"]  # point i goes to process i mod 2
    zero = ex.run(exp, tmp_path, progress=False, process_index=0, process_count=2)
    assert zero.computed == ["k=0", "k=2", "k=4"]
    whole = ex.run(exp, tmp_path, progress=False)
    assert whole.computed == [] and whole.summary["squares"] == [0, 1, 4, 9, 16]


def test_experiment_points_resume_only_for_the_same_point(tmp_path, monkeypatch):
    # The experiments resume through the sweep's resume step: a stored record is reused only
    # if its fingerprint is the point's; one without a fingerprint is never reused.
    exp = _Squares(n=3)
    first = ex.run(exp, tmp_path, progress=False)
    assert first.computed == ["k=0", "k=1", "k=2"]
    with gf.ResultStore(tmp_path, exp.config()) as store:
        rec = store.get("k=2")
        store.put("k=2", {**rec, "fingerprint": {**rec["fingerprint"], "computation": "0" * 16}})
        bare = {k: v for k, v in store.get("k=1").items() if k != "fingerprint"}
        store.put("k=1", bare)
    with pytest.raises(gf.StoreError, match=r"2 point\(s\) .* another computation than `build` "
                       r"now returns: k=1 \(differs in: fingerprint \(none stored\)\); k=2 "
                       r"\(differs in: the computation \(its function's code"):  # fmt: skip
        ex.run(exp, tmp_path, progress=False)
    again = ex.run(exp, tmp_path, progress=False, overwrite=True)
    assert again.computed == ["k=1", "k=2"] and sorted(again.reused) == ["k=0"]
    # The computation's code is its identity: an edited function (same name) is never read
    # back for the old one, and other arguments neither.

    def square(self, *, k):
        return {"square": k**2 + 0}

    monkeypatch.setattr(_Squares, "square", square)
    with pytest.raises(gf.StoreError, match=r"3 point\(s\) .*k=0 \(differs in: the computation"):
        ex.run(exp, tmp_path, progress=False)
    assert ex.run(exp, tmp_path, progress=False, overwrite=True).summary["squares"] == [0, 1, 4]


def test_distributed_flags_are_checked_before_anything_runs(tmp_path, capsys):
    argv = ["reproduce", "tau-sweep", "--quick", "--out", str(tmp_path), "--no-cache"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--coordinator", "no-port"])
    assert exc.value.code == 2
    assert "expected HOST:PORT such as 127.0.0.1:12345" in capsys.readouterr().err
    assert main([*argv, "--coordinator", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "gradflow reproduce: error: --coordinator, --num-processes and --process-id go together "
        "(or use --distributed alone to let JAX detect SLURM)"
    )
    assert main([*argv, "--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"]) == 2
    assert "--process-id must be in [0, 2)" in capsys.readouterr().err


def test_two_processes_through_the_command_line_equal_one_process(tmp_path):
    # docs/distributed.md's command, run as a new user would: `gradflow reproduce tau-sweep
    # --quick` as two processes of one jax.distributed run on this machine, each computing
    # its share of the points into one store; process 0 writes the summary. It equals the
    # summary of one process (each point is the same program in both: rtol 1e-9).
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    argv = ["reproduce", "tau-sweep", "--quick", "--no-progress", "--no-cache"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gradflow.cli",
                *argv,
                "--out",
                str(tmp_path / "two"),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "2 points computed, 0 reused" in outs[0][0] and "2 points computed" in outs[1][0]
    two = json.loads((tmp_path / "two" / "tau-sweep" / "tau-sweep.json").read_text())
    assert two["processes"] == 2 and two["errors"] == {} and two["missing_points"] == []
    one = ex.run(ex.TauSweep.quick(), tmp_path / "one", progress=False)
    assert one.computed == ["tau=0.01", "tau=0.1", "tau=1", "tau=10"]
    rows_two, rows_one = two["summary"]["rows"], one.summary["rows"]
    assert [r["tau"] for r in rows_two] == [r["tau"] for r in rows_one]
    for a, b in zip(rows_two, rows_one):
        for name, value in b.items():
            if isinstance(value, float) and name != "seconds":
                np.testing.assert_allclose(a[name], value, rtol=1e-9, err_msg=name)
            elif name != "seconds":
                assert a[name] == value, name
