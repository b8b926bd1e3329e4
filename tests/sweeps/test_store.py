import json
import math
import os
import socket
import subprocess
import sys

import pytest

from gradflow.sweeps._store import ResultStore, StoreError, config_hash


def test_store_round_trip_and_resume(tmp_path):
    cfg = {"sizes": [1, 2], "rtol": 1e-8}
    store = ResultStore(tmp_path / "run", cfg)
    assert len(store) == 0 and store.get("a=1") is None
    store.put("a=1", {"loss": 0.5, "bad": math.nan})
    store.put("a=2", {"loss": 0.25})
    store.close()
    # A second process reopening the same folder with the same configuration sees both points.
    again = ResultStore(tmp_path / "run", dict(cfg))
    assert again.keys() == ["a=1", "a=2"]
    assert again.get("a=1") == {"loss": 0.5, "bad": None}
    assert "a=2" in again and "a=3" not in again
    assert dict(again.items())["a=2"]["loss"] == 0.25
    assert not list((tmp_path / "run" / "points").glob("*.tmp"))


def test_store_refuses_another_configuration_naming_the_keys(tmp_path):
    with ResultStore(tmp_path, {"n": 1, "solve": {"rtol": 1e-8, "atol": 1}}) as s:
        s.put("k", {"v": 1})
    with pytest.raises(
        StoreError,
        match=r"another configuration; 2 key\(s\) differ: n: stored 1, now 2; "
        r"solve.rtol: stored 1e-08, now 1e-06\. .*overwrite",
    ):
        ResultStore(tmp_path, {"n": 2, "solve": {"rtol": 1e-6, "atol": 1}})
    # The refused open lost nothing (and released its lock).
    with ResultStore(tmp_path, {"n": 1, "solve": {"rtol": 1e-8, "atol": 1}}) as s:
        assert s.get("k") == {"v": 1}
    fresh = ResultStore(tmp_path, {"n": 2}, overwrite=True)
    assert len(fresh) == 0
    assert json.loads((tmp_path / "store.json").read_text())["config"] == {"n": 2}


def test_store_key_validation_and_hash(tmp_path):
    store = ResultStore(tmp_path, {})
    with pytest.raises(ValueError, match="key '../x'"):
        store.put("../x", {})
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_corrupted_point_is_reported_set_aside_and_counts_as_missing(tmp_path, capsys):
    with ResultStore(tmp_path, {"n": 1}) as s:
        for k in ("a=1", "a=2", "a=3"):
            s.put(k, {"loss": 0.5, "k": k})
    points = tmp_path / "points"
    text = (points / "a=1.json").read_text()
    (points / "a=1.json").write_text(text[: len(text) // 2])  # truncated
    # Valid JSON, but a number changed by hand: only the checksum sees it.
    (points / "a=2.json").write_text(text.replace("a=1", "a=2").replace("0.5", "0.75"))
    with ResultStore(tmp_path, {"n": 1}) as s:
        assert "a=1" not in s and s.get("a=2") is None and s.get("a=3")["loss"] == 0.5
        assert s.corrupted == ["a=1", "a=2"] and s.keys() == ["a=3"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert f"{points / 'a=1.json'}: corrupted point (not valid JSON" in err[0]
    assert "does not match its checksum" in err[1] and "will be recomputed" in err[1]
    assert sorted(p.name for p in (tmp_path / "corrupted").iterdir()) == ["a=1.json", "a=2.json"]


def test_corrupted_store_json_is_reported_and_repair_keeps_good_points(tmp_path, capsys):
    with ResultStore(tmp_path, {"n": 1}) as s:
        s.put("good", {"v": 1})
    with ResultStore(tmp_path / "other", {"n": 2}) as s:
        s.put("foreign", {"v": 2})
    (tmp_path / "other" / "points" / "foreign.json").rename(tmp_path / "points" / "foreign.json")
    (tmp_path / "store.json").write_text('{"hash": "12')  # truncated
    with pytest.raises(StoreError, match=r"store.json is corrupted: it is not valid JSON.*repair"):
        ResultStore(tmp_path, {"n": 1})
    assert (tmp_path / "points" / "good.json").exists()  # nothing discarded by the refusal
    capsys.readouterr()
    with ResultStore(tmp_path, {"n": 1}, repair=True) as s:
        assert s.keys() == ["good"] and s.get("good") == {"v": 1}
        assert s.corrupted == ["foreign"]  # computed for {"n": 2}: not kept
    assert "kept 1 finished point(s), moved 1" in capsys.readouterr().err
    assert json.loads((tmp_path / "store.json").read_text())["hash"] == config_hash({"n": 1})


_HOLD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from gradflow.sweeps._store import ResultStore
s = ResultStore(sys.argv[2], {"n": 1})
print("open", flush=True)
time.sleep(60)
"""


def test_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path, capsys):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, root, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "open"
        with pytest.raises(
            StoreError, match=rf"in use by another run: pid {proc.pid} on host .* is running"
        ):
            ResultStore(tmp_path, {"n": 1})
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    # Killed without closing: its lock stays, and the next run on this host takes it over.
    assert (tmp_path / "locks" / "process-0-of-1.json").exists()
    with ResultStore(tmp_path, {"n": 1}):
        pass
    assert f"stale lock of a finished process (pid {proc.pid}" in capsys.readouterr().err
    assert not list((tmp_path / "locks").glob("*.json"))  # released on close
    # A live lock of another host cannot be checked: refused, with the file to delete.
    lock = tmp_path / "locks" / "process-0-of-1.json"
    lock.write_text(
        json.dumps({"pid": 1, "host": socket.gethostname() + "-x", "index": 0, "count": 1,
                    "since": 0.0})
    )  # fmt: skip
    with pytest.raises(StoreError, match=r"another host: cannot check.*delete .*process-0-of-1"):
        ResultStore(tmp_path, {"n": 1})


def test_processes_of_one_run_share_the_store_and_other_splits_are_refused(tmp_path):
    a = ResultStore(tmp_path, {"n": 1}, process_index=0, process_count=2)
    b = ResultStore(tmp_path, {"n": 1}, process_index=1, process_count=2)
    a.put("x=0", {"v": 0})
    b.put("x=1", {"v": 1})
    assert a.keys() == b.keys() == ["x=0", "x=1"]
    with pytest.raises(StoreError, match=r"in use by another run: pid .*\(process 0 of 2\)"):
        ResultStore(tmp_path, {"n": 1})
    with pytest.raises(ValueError, match="`overwrite` and `repair` delete or move files"):
        ResultStore(tmp_path, {"n": 1}, process_index=0, process_count=2, overwrite=True)
    with pytest.raises(ValueError, match=r"`process_index` must be an integer in \[0, 2\)"):
        ResultStore(tmp_path, {"n": 1}, process_index=2, process_count=2)
    a.close()
    b.close()


def test_another_thread_is_refused_and_the_holding_thread_may_reenter(tmp_path):
    import threading

    cfg = {"n": 1}
    opened, release, outcome = threading.Event(), threading.Event(), {}

    def hold():
        with ResultStore(tmp_path, cfg) as store:
            store.put("a", {"v": "thread"})
            opened.set()
            release.wait(30)

    worker = threading.Thread(target=hold, name="holder")
    worker.start()
    assert opened.wait(30)
    try:
        with pytest.raises(
            StoreError, match=r"in use by another thread of this process \('holder'\)"
        ):
            ResultStore(tmp_path, cfg)
    finally:
        release.set()
        worker.join(30)
    # Released: this thread opens it, and may open it again while it holds it (a notebook
    # cell run twice); the point the other thread wrote is intact.
    with ResultStore(tmp_path, cfg) as first, ResultStore(tmp_path, cfg) as second:
        assert first.get("a") == second.get("a") == {"v": "thread"}
    assert not list((tmp_path / "locks").glob("*.json"))

    # A thread that ended without closing its store leaves the folder to the next thread.
    def leak():
        outcome["store"] = ResultStore(tmp_path, cfg)

    t = threading.Thread(target=leak)
    t.start()
    t.join(30)
    with ResultStore(tmp_path, cfg) as store:
        assert store.get("a") == {"v": "thread"}


def test_concurrent_writes_of_one_file_never_collide(tmp_path):
    # Threads of one process writing the same point at once: each write is whole, none raises
    # on a shared temporary name.
    import threading

    store = ResultStore(tmp_path, {"n": 1})
    errors = []

    def write(i):
        try:
            for j in range(40):
                store.put("same", {"writer": i, "j": j, "payload": list(range(200))})
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    store.close()
    assert errors == []
    with ResultStore(tmp_path, {"n": 1}) as again:
        rec = again.get("same")
    assert rec["j"] == 39 and rec["payload"] == list(range(200))
    assert not list((tmp_path / "points").glob(".*tmp"))


def test_a_flow_to_its_limit_is_stored_and_resumed(tmp_path):
    # t1 = inf has no JSON number: the record writes "inf", and a second sweep over the same
    # store reuses the point (it was refused as "t1=None" before), with the same limit.
    import jax.numpy as jnp
    import numpy as np

    import gradflow as gf

    def build(c):
        x = jnp.array([[1.0, 0.5, 0.1], [0.2, 1.0, -0.3]])
        y = gf.SquareLoss(jnp.array([[c], [1.0]]))
        return gf.Problem(lambda p, x: x @ p["w"], {"w": jnp.full((3, 1), 0.1)}, x, y)

    options = gf.SolveOptions(t1=math.inf, rtol=1e-8, atol=1e-10)
    first = gf.sweep(build, [{"c": 1.0}], options=options, store=tmp_path / "s")
    again = gf.sweep(build, [{"c": 1.0}], options=options, store=tmp_path / "s")
    assert bool(first.is_(gf.SweepStatus.computed)[0])
    assert bool(again.is_(gf.SweepStatus.resumed)[0])
    record = json.loads(next((tmp_path / "s" / "points").glob("*.json")).read_text())
    assert '"t1": "inf"' in json.dumps(record)
    np.testing.assert_array_equal(again.solution.loss, first.solution.loss)
    assert math.isinf(again.infos[0].t1)
    assert float(again.solution.loss[0, -1]) <= 1e-14 * float(first.solution.loss[0, 0])
