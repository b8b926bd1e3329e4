"""Data sets: generated on the fly, bundled with scikit-learn (digits), or read from a local
folder (CIFAR-10). Nothing is downloaded."""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _memory
from ._memory import ArraySize
from ._typing import Array
from .models import ACTIVATIONS


def _refuse_if_too_large(what: str, elements: int, **sizes: int) -> None:
    """A `ValueError` naming `sizes` when `elements` numbers cannot fit in memory: XLA would
    abort the process (SIGABRT) on the allocation."""
    itemsize = jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64)).itemsize
    arrays = [ArraySize(what, int(elements), tuple(sizes), itemsize)]
    _memory.refuse_if_too_large(arrays, sizes, kind="Argument")


def uniform_sphere(key: Array, num: int, dim: int) -> Array:
    """`num` points uniform on the unit sphere $S^{d-1}$ of $\\mathbb{R}^{d}$ (normalized
    Gaussians)."""
    if num < 1 or dim < 1:
        raise ValueError(f"`num` and `dim` must be positive; got num={num}, dim={dim}.")
    _refuse_if_too_large("num x dim points", int(num) * int(dim), num=num, dim=dim)
    x = jax.random.normal(key, (num, dim))
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def teacher_targets(
    key: Array, inputs: Array, *, width: int = 3, activation: str = "relu", out_dim: int = 1
) -> Array:
    r"""Targets $y(x) = \sum_{j \le m_0} b_j \sigma(a_j \cdot x)$ of a teacher network with unit
    input weights $a_j$ (uniform on the sphere) and output weights $b_j = \pm 1$, as in the
    teacher-student experiments of Chizat et al. (Section 4.1)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}.")
    ka, kb = jax.random.split(key)
    a = uniform_sphere(ka, width, inputs.shape[1])
    b = jnp.where(jax.random.bernoulli(kb, 0.5, (width, out_dim)), 1.0, -1.0)
    return ACTIVATIONS[activation](inputs @ a.T) @ b


class TeacherStudentData(eqx.Module):
    r"""A teacher-student regression set (Chizat et al., Section 4.1): inputs uniform on the
    sphere $S^{d-1}$ and targets $y(x) = c \sum_{j \le m_0} b_j \max(a_j \cdot x, 0)$ from a
    ReLU teacher with unit input weights $a_j$ and output weights $b_j = \pm 1$.

    Fields: `x_train` `(n_train, d)`, `y_train` `(n_train, 1)`, `x_test`, `y_test`, and the
    teacher's `teacher_a` `(m0, d)` and `teacher_b` `(m0, 1)` (already multiplied by
    `output_scale`).
    """

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    teacher_a: Array
    teacher_b: Array

    def teacher(self, x: Array) -> Array:
        """The teacher's outputs on inputs `x` of shape `(n, d)`."""
        return jax.nn.relu(x @ self.teacher_a.T) @ self.teacher_b


def teacher_student(
    key: Array,
    n_train: int,
    n_test: int,
    dim: int,
    *,
    teacher_width: int = 3,
    output_scale: float = 1.0,
) -> TeacherStudentData:
    r"""Sample a [`gradflow.data.TeacherStudentData`][] set: `n_train` and `n_test` inputs
    uniform on $S^{d-1}$, a ReLU teacher of `teacher_width` neurons with unit input weights and
    $\pm 1$ output weights, times `output_scale` (the paper's width experiment uses 100).

    Works under `jax.vmap` over `key` (one data set per trial).
    """
    for name, v in (("n_train", n_train), ("n_test", n_test), ("dim", dim)):
        if int(v) < 1:
            raise ValueError(f"`{name}` must be a positive integer; got {name}={v}.")
    if int(teacher_width) < 1:
        raise ValueError(f"`teacher_width` must be a positive integer; got {teacher_width}.")
    _refuse_if_too_large(
        "(n_train + n_test) x dim inputs",
        (int(n_train) + int(n_test)) * int(dim),
        n_train=n_train,
        n_test=n_test,
        dim=dim,
    )
    ka, kb, kx, kt = jax.random.split(key, 4)
    a = uniform_sphere(ka, int(teacher_width), int(dim))
    b = output_scale * jnp.where(jax.random.bernoulli(kb, 0.5, (int(teacher_width), 1)), 1.0, -1.0)
    x_train = uniform_sphere(kx, int(n_train), int(dim))
    x_test = uniform_sphere(kt, int(n_test), int(dim))
    return TeacherStudentData(
        x_train=x_train,
        y_train=jax.nn.relu(x_train @ a.T) @ b,
        x_test=x_test,
        y_test=jax.nn.relu(x_test @ a.T) @ b,
        teacher_a=a,
        teacher_b=b,
    )


class ImageData(eqx.Module):
    """An image classification set split into train and test: images `(N, H, W, C)` as
    floats (standardized per channel with the training statistics) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = eqx.field(static=True)
    name: str = eqx.field(static=True)


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x_train.mean(axis=(0, 1, 2), keepdims=True)
    std = x_train.std(axis=(0, 1, 2), keepdims=True)
    std = np.where(std > 0, std, 1.0)
    return (x_train - mean) / std, (x_test - mean) / std


def digits(*, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    r"""scikit-learn's bundled handwritten digits (1797 grayscale 8x8 images, 10 classes; no
    download), shuffled with `seed` and split into a training and a held-out test set of
    `test_fraction` of the images (stratified by class).

    **Returns:** an [`gradflow.data.ImageData`][] with images of shape `(N, 8, 8, 1)`.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1); got {test_fraction}.")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float64)[..., None] / 16.0
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_tr, x_te = _standardize(x_tr, x_te)
    return ImageData(x_tr, y_tr, x_te, y_te, num_classes=10, name="digits")


CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
"""The batch files of the python-pickle CIFAR-10 folder that [`gradflow.data.cifar10`][]
reads."""


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pickle

    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc}); download the "
            "'CIFAR-10 python version' and extract it (the folder cifar-10-batches-py)."
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(
            f"{path} is not a CIFAR-10 python batch: expected a dict with keys b'data' and "
            "b'labels'."
        )
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: b'data' must have shape (N, 3072) and b'labels' shape (N,); got "
            f"{data.shape} and {labels.shape}."
        )
    # Rows are 1024 red, 1024 green, 1024 blue values of a 32x32 image in row-major order.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float64) / 255.0
    return images, labels


def cifar10(
    path: str | Path, *, num_train: int | None = None, num_test: int | None = None
) -> ImageData:
    """CIFAR-10 from a local folder holding the standard python-pickle batches
    (`data_batch_1` ... `data_batch_5`, `test_batch`: dicts with `b"data"`, uint8 `(N, 3072)`,
    and `b"labels"`), i.e. the extracted `cifar-10-batches-py` folder. Nothing is downloaded.

    **Arguments:**

    - `path`: the folder.
    - `num_train`, `num_test`: keep only the first images of each split (default all).

    **Returns:** an [`gradflow.data.ImageData`][] with images `(N, 32, 32, 3)`.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"CIFAR-10 folder {str(folder)!r} does not exist; pass the extracted "
            "'cifar-10-batches-py' folder holding data_batch_1..5 and test_batch."
        )
    missing = [f for f in CIFAR10_FILES if not (folder / f).is_file()]
    if missing:
        raise ValueError(
            f"CIFAR-10 folder {str(folder)!r} lacks {', '.join(missing)}; pass the extracted "
            "'cifar-10-batches-py' folder holding data_batch_1..5 and test_batch."
        )
    for name, v in (("num_train", num_train), ("num_test", num_test)):
        if v is not None and int(v) < 1:
            raise ValueError(f"`{name}` must be a positive integer or None; got {v}.")
    parts = [_read_cifar_batch(folder / f) for f in CIFAR10_FILES[:5]]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _read_cifar_batch(folder / "test_batch")
    if num_train is not None:
        x_tr, y_tr = x_tr[: int(num_train)], y_tr[: int(num_train)]
    if num_test is not None:
        x_te, y_te = x_te[: int(num_test)], y_te[: int(num_test)]
    x_tr, x_te = _standardize(x_tr, x_te)
    return ImageData(x_tr, y_tr, x_te, y_te, num_classes=10, name="cifar10")


def write_cifar10_like(path: str | Path, *, num_per_batch: int = 20, seed: int = 0) -> Path:
    """Write a small random data set in the CIFAR-10 python-pickle format (six batches of
    `num_per_batch` images), for tests and for trying the CIFAR-10 code path offline."""
    import pickle

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in CIFAR10_FILES:
        batch = {
            b"data": rng.integers(0, 256, (num_per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, num_per_batch)],
            b"batch_label": name.encode(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder
