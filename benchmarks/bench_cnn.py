r"""The CNN experiment at its default architecture: time per epoch, and alphas batched with `vmap`.

`gradflow reproduce cnn` at its defaults (VGG stages 16,16,pool,32,32 on scikit-learn's digits,
1437 training images, batch 128, SGD momentum 0.9, 30 epochs, 5 alphas + the linearized model,
3 trials: 18 points) did not fit in a session on 2 cores. This script measures what it would
take, through the experiment's own compiled training function (`_train` in
`gradflow/experiments/cnn.py`, one `lax.scan` over the SGD steps):

- one alpha: `--epochs` epochs, after a compile run of the same length, best of `--repeats`;
- `--batch` alphas at once, the same training function under `jax.vmap` over alpha (alpha is a
  traced argument, so one compiled program serves them all), for the same epochs.

Reported: seconds per epoch for one alpha and per alpha-epoch when batched (their ratio is the
gain from batching), and the default run extrapolated (18 points x 30 epochs). The trained
weights of the batched run equal the separate runs' (checked to 1e-10 relative, the first
alpha), so batching changes the cost only.

Run: `python benchmarks/bench_cnn.py [--epochs 1] [--batch 4] [--stages 16,16,0,32,32]`.
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import experiments as ex
from gradflow.experiments import cnn as cnn_mod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs")
    parser.add_argument("--batch", type=int, default=4, help="alphas batched with vmap")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stages", default="16,16,0,32,32")
    args = parser.parse_args()
    stages = tuple(int(s) for s in args.stages.split(","))
    exp = ex.CNNAlphaSweep(stages=stages, epochs=args.epochs)
    ds = exp.load()
    model = exp.architecture()
    k_init, k_perm = jax.random.split(jax.random.PRNGKey(0))
    w0 = model.init(k_init, ds.x_train.shape[1:])
    x = jnp.asarray(ds.x_train)
    y = jax.nn.one_hot(jnp.asarray(ds.y_train), ds.num_classes, dtype=x.dtype)
    n = x.shape[0]
    per_epoch = n // exp.batch_size
    lam = cnn_mod.tangent_kernel_top_eigenvalue(model, w0, x[:512])
    scaled = cnn_mod._Scaled(model, jnp.asarray(1.0 / math.sqrt(lam)))

    def perms(epochs):
        return jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * exp.batch_size])(
            jax.random.split(k_perm, epochs)
        ).reshape(epochs * per_epoch, exp.batch_size)

    alphas = jnp.asarray(np.geomspace(1.0, 1e3, args.batch))
    hypers = jnp.stack([alphas, jnp.ones_like(alphas), 0.9 * jnp.ones_like(alphas)], axis=1)

    def one(p, hyper):
        return cnn_mod._train(scaled, w0, x, y, p, hyper, per_epoch, False)

    batched = jax.jit(jax.vmap(one, in_axes=(None, 0)))

    def timed(fn, p, hyper):
        jax.block_until_ready(fn(p, hyper))  # compile (same shapes: a full run)
        best, out = math.inf, None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = jax.block_until_ready(fn(p, hyper))
            best = min(best, time.perf_counter() - start)
        return best, out

    p = perms(args.epochs)
    t_one, (w_one, _) = timed(jax.jit(one), p, hypers[0])
    t_batch, (w_batch, _) = timed(batched, p, hypers)
    first = jax.tree_util.tree_map(lambda v: v[0], w_batch)
    diff = max(
        float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-300))
        for a, b in zip(jax.tree_util.tree_leaves(w_one), jax.tree_util.tree_leaves(first))
    )
    per_epoch_one = t_one / args.epochs
    per_alpha_epoch = t_batch / (args.epochs * args.batch)
    print(f"architecture {stages}, digits n={n}, batch {exp.batch_size}, {per_epoch} steps/epoch")
    print(f"one alpha:        {per_epoch_one:.2f} s per epoch")
    print(
        f"{args.batch} alphas (vmap): {t_batch / args.epochs:.2f} s per epoch, "
        f"{per_alpha_epoch:.2f} s per alpha-epoch ({per_epoch_one / per_alpha_epoch:.2f}x)"
    )
    print(f"batched vs separate weights (first alpha): {diff:.1e} relative")
    points, epochs = 18, 30
    print(
        f"default run ({points} points x {epochs} epochs), extrapolated: "
        f"{points * epochs * per_epoch_one / 3600:.2f} h one at a time, "
        f"{points * epochs * per_alpha_epoch / 3600:.2f} h batched"
    )


if __name__ == "__main__":
    main()
