"""Paper Section 4.2: deep CNNs trained at scale alpha, against their linearization."""

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import data as gdata, models
from .._losses import SquareLoss
from .._memory import ArraySize
from .._problem import Problem
from ..analysis._operators import gram, jacobian, power_iteration, unit_normal
from ..sweeps._computation import Computation
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import AbstractExperiment, finish_axes, mean_std, option, outputs, pyplot, savefig


@dataclasses.dataclass(frozen=True)
class CNNAlphaSweep(AbstractExperiment):
    r"""Test accuracy of a VGG-style CNN (no batch norm) against the scale $\alpha$
    (Chizat et al., Section 4.2, Fig. 3).

    The centered model $\alpha (h(w) - h(w_0))$ is trained on the square loss on one-hot
    targets divided by $\alpha^2$, i.e. on $F_\alpha$ of a centered
    [`gradflow.Problem`][], with SGD and momentum 0.9 (optax), batch `batch_size`, learning
    rate $\eta_0 / (1 + \text{epoch}/3)$, for `epochs` epochs. As $\alpha$ grows training becomes
    lazy: the test accuracy falls to that of the linearized model
    $\bar h(w) = Dh(w_0)(w - w_0)$ (trained the same way, point `linearized`), and the share of
    ReLUs whose activation on the test images is unchanged from init ("stability of
    activations") tends to 100%.

    Data: scikit-learn's bundled digits (8x8 grayscale, 20% held out with a fixed seed), or
    CIFAR-10 from `data_path` (the python-pickle batches) with `data="cifar10"`.
    One point = one ($\alpha$ or linearized, trial).
    """

    name: ClassVar[str] = "cnn"
    title: ClassVar[str] = "Sec. 4.2: VGG-style CNN without batch norm, test accuracy vs alpha"
    claim: ClassVar[str] = (
        "test accuracy falls from alpha = 1 to a plateau at large alpha equal to the "
        "linearized model's accuracy; the share of ReLUs unchanged from init tends to 100%"
    )

    data: Literal["digits", "cifar10"] = option(
        "digits",
        "digits (scikit-learn's bundled 8x8 digits, no download) or cifar10 (local files)",
    )
    data_path: str | None = option(
        None,
        "folder of the CIFAR-10 python-pickle batches (data_batch_1, ...), needed with "
        "data=cifar10",
    )
    n_train: int | None = option(None, "training images used (none: all)", positive=True)
    n_test: int | None = option(None, "test images used (none: all)", positive=True)
    stages: tuple[int, ...] = option(
        (16, 16, 0, 32, 32),
        "VGG channels per conv layer, 0 for a 2x2 max-pool (comma-separated)",
        repeats=True,
    )
    alphas: tuple[float, ...] = option(
        (1.0, 10.0, 100.0, 1000.0, 10000.0),
        "scales alpha (comma-separated, each > 0), in units where the tangent kernel's largest "
        "eigenvalue at init is 1",
        positive=True,
    )
    linearized: bool = option(True, "also train the linearized model (the large-alpha limit)")
    epochs: int = option(30, "passes over the training set", positive=True)
    batch_size: int = option(128, "images per SGD step", positive=True)
    learning_rate: float = option(
        1.0, "initial SGD step eta0 (decays as eta0 / (1 + epoch/3))", positive=True
    )
    momentum: float = option(0.9, "SGD momentum", within="[0, 1)")
    trials: int = option(
        3, "independent trials (own init and batch order) per alpha", positive=True
    )
    seed: int = option(0, "PRNG seed of the trials")

    @classmethod
    def quick(cls) -> "CNNAlphaSweep":
        return cls(
            n_train=600,
            n_test=300,
            stages=(8, 0, 16),
            alphas=(1.0, 100.0, 10000.0),
            epochs=6,
            trials=1,
        )

    def check_options(self) -> None:
        self.architecture()
        if self.data == "cifar10":
            if not self.data_path:
                raise ValueError(
                    "data=cifar10 needs `data_path`, the extracted 'cifar-10-batches-py' folder "
                    "(--set data_path=/path/to/cifar-10-batches-py)."
                )
            folder = Path(self.data_path).expanduser()
            missing = [f for f in gdata.CIFAR10_FILES if not (folder / f).is_file()]
            if missing:
                raise ValueError(
                    f"CIFAR-10 folder {str(folder)!r} does not exist or lacks "
                    f"{', '.join(missing)}; pass the extracted 'cifar-10-batches-py' folder "
                    "holding data_batch_1..5 and test_batch as data_path."
                )

    def largest_arrays(self) -> list[ArraySize]:
        # The sizes of the data set, known without reading it: digits (80% of 1797 images for
        # training) or CIFAR-10 (50000 + 10000).
        side, channels, n_full, n_test_full = (
            (8, 1, 1437, 360) if self.data == "digits" else (32, 3, 50_000, 10_000)
        )
        n = min(self.n_train or n_full, n_full)
        n_test = min(self.n_test or n_test_full, n_test_full)
        params, widest, cin = 0, 0, channels
        for c in self.stages:
            if int(c) == 0:
                side //= 2
                continue
            params += 9 * cin * int(c)
            widest = max(widest, side * side * int(c))
            cin = int(c)
        batch = min(self.batch_size, n)
        return [
            ArraySize(
                "the activations of a conv layer on every training image (the final "
                "accuracy), n_train x height x width x channels",
                n * widest,
                ("stages", "n_train"),
            ),
            ArraySize(
                "the parameters, their init and the momentum, 3 x the conv weights",
                3 * params,
                ("stages",),
            ),
            ArraySize(
                "the batch order of every epoch, epochs x n_train (int32)",
                self.epochs * (n // batch) * batch,
                ("epochs", "n_train"),
                itemsize=4,
            ),
            ArraySize(
                "the images, (n_train + n_test) x height x width x channels",
                (n + n_test) * (8 * 8 * 1 if self.data == "digits" else 32 * 32 * 3),
                ("n_train", "n_test"),
            ),
        ]

    def architecture(self) -> models.VGG:
        """`stages` lists conv channels with 0 marking a 2x2 max-pool between stages."""
        groups: list[list[int]] = [[]]
        for c in self.stages:
            if int(c) == 0:
                groups.append([])
            elif int(c) > 0:
                groups[-1].append(int(c))
            else:
                raise ValueError(
                    f"Option `stages` holds channel counts > 0 or 0; got {self.stages}."
                )
        if any(not g for g in groups):
            raise ValueError(
                f"Option `stages` must be channel counts separated by single 0s (pooling), "
                f"e.g. 32,32,0,64,64; got {self.stages}."
            )
        return models.VGG(tuple(tuple(g) for g in groups), num_classes=10)

    def load(self) -> gdata.ImageData:
        if self.data == "cifar10":
            ds = gdata.cifar10(self.data_path, num_train=self.n_train, num_test=self.n_test)
        else:
            ds = gdata.digits(seed=self.seed)
            ds = gdata.ImageData(
                ds.x_train[: self.n_train],
                ds.y_train[: self.n_train],
                ds.x_test[: self.n_test],
                ds.y_test[: self.n_test],
                num_classes=ds.num_classes,
                name=ds.name,
            )
        return ds

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        pts = [
            (point_key(alpha=float(a), trial=t), {"alpha": float(a), "linear": False, "trial": t})
            for a in self.alphas
            for t in range(self.trials)
        ]
        if self.linearized:
            pts += [
                (
                    point_key(prefix="linearized", trial=t),
                    {"alpha": 1.0, "linear": True, "trial": t},
                )
                for t in range(self.trials)
            ]
        return pts

    def build(self, *, alpha: float, linear: bool, trial: int) -> Computation:
        # One point: one network trained by SGD with momentum over its epochs.
        return Computation(self.train, alpha=alpha, linear=linear, trial=trial)

    def train(self, *, alpha: float, linear: bool, trial: int) -> dict[str, Any]:
        """Train one trial at one alpha (or its linearization): the point's result."""
        ds = self.load()
        model = self.architecture()
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), trial)
        k_init, k_perm = jax.random.split(key)
        w0 = model.init(k_init, ds.x_train.shape[1:])
        x_tr = jnp.asarray(ds.x_train)
        y_tr = jax.nn.one_hot(jnp.asarray(ds.y_train), ds.num_classes, dtype=x_tr.dtype)
        n = x_tr.shape[0]
        batch = min(self.batch_size, n)
        per_epoch = n // batch
        steps = per_epoch * self.epochs
        perms = jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * batch])(
            jax.random.split(k_perm, self.epochs)
        ).reshape(steps, batch)

        lam = tangent_kernel_top_eigenvalue(model, w0, x_tr[: min(n, 512)])
        # alpha is measured in the tangent kernel's units: h(w) = cnn(w) / sqrt(lambda_max), so
        # that Sigma(w0) = Dh Dh^T / n has largest eigenvalue 1 and the step learning_rate is
        # the same fraction of the stability limit for every architecture, data set and alpha.
        scaled = _Scaled(model, jnp.asarray(1.0 / math.sqrt(lam)))
        eta0 = self.learning_rate
        hyper = jnp.asarray([alpha, eta0, self.momentum])
        w, losses = _train(scaled, w0, x_tr, y_tr, perms, hyper, per_epoch, linear)

        x_te = jnp.asarray(ds.x_test)
        alpha_ = jnp.asarray(alpha)
        out_te = np.asarray(_predict(scaled, w, w0, x_te, alpha_, linear))
        out_tr = np.asarray(_predict(scaled, w, w0, x_tr, alpha_, linear))
        test_acc = float(np.mean(np.argmax(out_te, 1) == ds.y_test))
        train_acc = float(np.mean(np.argmax(out_tr, 1) == ds.y_train))
        record = {
            "eta0": eta0,
            "kernel_top_eigenvalue": lam,
            "test_accuracy": test_acc,
            "train_accuracy": train_acc,
            # R(alpha h) = alpha^2 F_alpha: comparable across alpha.
            "final_epoch_loss": float(np.mean(np.asarray(losses)[-per_epoch:])) * alpha**2,
            "relative_displacement": float(
                _norm(jax.tree_util.tree_map(jnp.subtract, w, w0)) / _norm(w0)
            ),
        }
        if not linear:
            record["stable_activations"] = float(_stable_share(model, w0, w, x_te))
        if not np.isfinite(record["final_epoch_loss"]):
            raise FloatingPointError(
                f"training diverged at alpha={alpha:g} (loss is not finite); lower learning_rate"
            )
        return record

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        records = outputs(sweep)
        rows = []
        for key, point in self.points():
            if point["trial"] != 0:
                continue
            group = [
                r
                for r in records.values()
                if r["linear"] == point["linear"]
                and (point["linear"] or r["alpha"] == point["alpha"])
            ]
            if not group:
                continue
            acc = mean_std([r["test_accuracy"] for r in group])
            stab = mean_std([r.get("stable_activations") for r in group])
            rows.append(
                {
                    "model": "linearized" if point["linear"] else f"alpha={point['alpha']:g}",
                    "alpha": None if point["linear"] else point["alpha"],
                    "test_accuracy_mean": acc[0],
                    "test_accuracy_std": acc[1],
                    "train_accuracy_mean": mean_std([r["train_accuracy"] for r in group])[0],
                    "stable_activations_mean": stab[0],
                    "relative_displacement": mean_std([r["relative_displacement"] for r in group])[
                        0
                    ],
                    "trials": acc[2],
                }
            )
        summary: dict[str, Any] = {"rows": rows, "data": self.data}
        full = [r for r in rows if r["alpha"] is not None]
        lin = [r for r in rows if r["alpha"] is None]
        if full:
            summary["accuracy_at_smallest_alpha"] = full[0]["test_accuracy_mean"]
            summary["accuracy_at_largest_alpha"] = full[-1]["test_accuracy_mean"]
            summary["stable_activations_at_largest_alpha"] = full[-1]["stable_activations_mean"]
        if lin:
            summary["linearized_accuracy"] = lin[0]["test_accuracy_mean"]
        return summary

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
        full = [r for r in summary["rows"] if r["alpha"] is not None]
        lin = [r for r in summary["rows"] if r["alpha"] is None]
        if full:
            a = np.array([r["alpha"] for r in full])
            acc = 100 * np.array([r["test_accuracy_mean"] for r in full])
            std = 100 * np.array([r["test_accuracy_std"] for r in full])
            ax1.errorbar(a, acc, yerr=std, fmt="o-", color="k", capsize=3, label="trained model")
            stab = 100 * np.array([r["stable_activations_mean"] for r in full])
            ax2.semilogx(a, stab, "o-", color="tab:purple", label="ReLUs unchanged from init")
        if lin:
            ax1.axhline(
                100 * lin[0]["test_accuracy_mean"],
                color="tab:orange",
                ls="--",
                label="linearized model",
            )
        finish_axes(
            ax1,
            r"scale $\alpha$",
            "test accuracy (%)",
            f"Test accuracy vs $\\alpha$ ({self.data}, {self.epochs} epochs)",
            log="x",
        )
        finish_axes(
            ax2,
            r"scale $\alpha$",
            "stable activations (%)",
            "Share of ReLU activations unchanged from init",
        )
        fig.suptitle(
            "VGG-style CNN without batch norm, centered model "
            r"$\alpha(h(w) - h(w_0))$, SGD momentum 0.9"
        )
        return [savefig(fig, folder / f"{self.name}.png")]


class _Scaled(eqx.Module):
    """`model` with its outputs multiplied by `scale` (an array leaf: no recompilation)."""

    model: models.VGG
    scale: jax.Array

    def __call__(self, params, inputs):
        return self.scale * self.model(params, inputs)


# Module-level compiled functions: alpha, the step and the data are traced arguments, so every
# alpha and trial of a run shares one compilation (and the data is never constant-folded).
@eqx.filter_jit
def _train(scaled, w0, x, y, perms, hyper, per_epoch: int, linear: bool):
    import optax

    alpha, eta0, momentum = hyper[0], hyper[1], hyper[2]

    def schedule(step):
        return eta0 / (1.0 + (step // per_epoch) / 3.0)

    opt = optax.sgd(schedule, momentum=momentum)

    def objective(w, xb, yb):
        problem = Problem(scaled, w0, xb, SquareLoss(yb), alpha=alpha, center=True)
        return problem.linear_objective(w) if linear else problem.objective(w)

    def step(carry, idx):
        w, state = carry
        loss, g = jax.value_and_grad(objective)(w, x[idx], y[idx])
        updates, state = opt.update(g, state, w)
        return (optax.apply_updates(w, updates), state), loss

    (w, _), losses = jax.lax.scan(step, (w0, opt.init(w0)), perms)
    return w, losses


@eqx.filter_jit
def _predict(scaled, params, w0, x, alpha, linear: bool):
    def h(p):
        return scaled(p, x) - scaled(w0, x)

    if linear:
        delta = jax.tree_util.tree_map(jnp.subtract, params, w0)
        return alpha * jax.jvp(h, (w0,), (delta,))[1]
    return alpha * h(params)


@eqx.filter_jit
def _stable_share(model, w0, w, x):
    p0 = model.activation_patterns(w0, x)
    p1 = model.activation_patterns(w, x)
    same = sum(jnp.sum(a == b) for a, b in zip(p0, p1))
    return same / sum(a.size for a in p0)


def tangent_kernel_top_eigenvalue(
    model: models.VGG, params, x: jax.Array, *, num_iters: int = 30
) -> float:
    r"""$\lambda_{\max}$ of $\Sigma = Dh(w_0) Dh(w_0)^\top / n$ on the images `x` (the largest
    curvature of the square loss in the lazy regime) by power iteration on JVPs and VJPs."""
    return float(_top_eigenvalue(model, params, x, int(num_iters)))


@eqx.filter_jit
def _top_eigenvalue(model, params, x, num_iters):
    # lambda_max of J^T J / n on parameters: the same nonzero spectrum as J J^T / n.
    flat, unravel = ravel_pytree(params)
    op = gram(jacobian(lambda v: model(unravel(v), x), flat), x.shape[0])
    v0 = unit_normal(jax.random.PRNGKey(0), flat)
    return power_iteration(op, v0, num_iters=num_iters, rtol=None, estimate="norm").value


def _norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(tree))))
