"""Data sets: teacher-student sampling, the bundled digits, the CIFAR-10 reader."""

import pickle

import jax
import numpy as np
import pytest

import gradflow as gf


def test_teacher_student_matches_a_hand_written_teacher(getkey):
    data = gf.data.teacher_student(getkey(), 40, 30, 6, output_scale=100.0)
    assert data.x_train.shape == (40, 6) and data.y_test.shape == (30, 1)
    np.testing.assert_allclose(np.linalg.norm(data.x_test, axis=1), 1.0, rtol=1e-14)
    a, b = np.asarray(data.teacher_a), np.asarray(data.teacher_b)
    # Teacher: 3 unit input weights and output weights +-1 (times output_scale).
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(np.abs(b), 100.0)
    x = np.asarray(data.x_train)
    expected = sum(b[j, 0] * np.maximum(x @ a[j], 0.0) for j in range(3))[:, None]
    np.testing.assert_allclose(np.asarray(data.y_train), expected, rtol=1e-13, atol=1e-12)
    # Under vmap: one data set per trial, different across trials.
    batch = jax.vmap(lambda k: gf.data.teacher_student(k, 5, 5, 3))(jax.random.split(getkey(), 2))
    assert batch.x_train.shape == (2, 5, 3)
    assert not np.allclose(batch.x_train[0], batch.x_train[1])
    with pytest.raises(ValueError, match="`n_train` must be a positive integer"):
        gf.data.teacher_student(getkey(), 0, 5, 3)


def test_digits_split_is_stratified_standardized_and_fixed():
    ds = gf.data.digits(seed=0)
    assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
    # Stratified: every class holds 20% +- 1 image of its samples in the test split.
    counts = np.bincount(ds.y_test, minlength=10)
    total = counts + np.bincount(ds.y_train, minlength=10)
    assert np.all(np.abs(counts - 0.2 * total) <= 1)
    assert abs(ds.x_train.mean()) < 1e-12 and abs(ds.x_train.std() - 1.0) < 1e-12
    again = gf.data.digits(seed=0)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    with pytest.raises(ValueError, match="`test_fraction` must be in"):
        gf.data.digits(test_fraction=1.5)


def test_cifar10_reader_decodes_the_pickle_format(tmp_path):
    folder = gf.data.write_cifar10_like(tmp_path / "cifar", num_per_batch=6)
    raw = pickle.loads((folder / "data_batch_2").read_bytes(), encoding="bytes")
    ds = gf.data.cifar10(folder)
    assert ds.x_train.shape == (30, 32, 32, 3) and ds.x_test.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(ds.y_train[6:12], raw[b"labels"])
    # Independent decoding of image 0 of batch 2: channel c, row r, column k sits at
    # data[c * 1024 + r * 32 + k]; undo the per-channel standardization to compare.
    img = ds.x_train[6]
    x_all = np.concatenate(
        [
            pickle.loads((folder / f"data_batch_{i}").read_bytes(), encoding="bytes")[b"data"]
            for i in range(1, 6)
        ]
    ).astype(float)
    for c, r, k in [(0, 0, 0), (1, 5, 17), (2, 31, 30)]:
        chan = x_all[:, c * 1024 : (c + 1) * 1024] / 255.0
        value = (raw[b"data"][0, c * 1024 + r * 32 + k] / 255.0 - chan.mean()) / chan.std()
        assert img[r, k, c] == pytest.approx(value, rel=1e-12, abs=1e-12)
    small = gf.data.cifar10(folder, num_train=4, num_test=2)
    assert small.x_train.shape[0] == 4 and small.x_test.shape[0] == 2


def test_cifar10_reader_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist; pass the extracted"):
        gf.data.cifar10(tmp_path / "nowhere")
    folder = gf.data.write_cifar10_like(tmp_path / "c", num_per_batch=2)
    (folder / "test_batch").unlink()
    with pytest.raises(ValueError, match="lacks test_batch"):
        gf.data.cifar10(folder)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="is not a CIFAR-10 python batch"):
        gf.data.cifar10(folder)


def test_generators_refuse_sizes_that_cannot_fit_before_allocating(getkey, monkeypatch):
    # XLA aborts the process on an allocation it cannot make; the generators check first.
    from gradflow import _memory

    monkeypatch.setattr(_memory, "memory_limit", lambda: 2**20)  # 1 MiB
    x = gf.data.uniform_sphere(getkey(), 1000, 10)  # 80 kB: fits
    assert x.shape == (1000, 10)
    # 200000 x 10 float64 = 16 MB = 15.3 MiB.
    message = (
        r"`num`=200000 and `dim`=10 need at least 15\.3 MiB .* this machine has 1 MiB; lower num"
    )
    with pytest.raises(ValueError, match=message):
        gf.data.uniform_sphere(getkey(), 200_000, 10)
    message = r"`n_train`=200000, `n_test`=5 and `dim`=10 need at least 15\.3 MiB of memory"
    with pytest.raises(ValueError, match=message):
        gf.data.teacher_student(getkey(), 200_000, 5, 10)
    # Under vmap the sizes are known when tracing: refused before anything runs.
    with pytest.raises(ValueError, match="need at least"):
        jax.vmap(lambda k: gf.data.teacher_student(k, 200_000, 5, 10))(jax.random.split(getkey()))
