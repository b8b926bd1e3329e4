r"""The empirical tangent kernel of two-layer nets against the infinite-width kernel, as m grows.

For each activation (relu, tanh, quadratic) and width $m$, `--seeds` nets
`gf.models.TwoLayer(m, activation, "sqrt")` with TwoLayer.init's law ($a_j \sim N(0, I/d)$,
$b_j \sim N(0, 1)$, drawn with numpy) on `--n` Gaussian inputs in $\mathbb{R}^d$: the relative
Frobenius error $\|K_m - K_\infty\|_F / \|K_\infty\|_F$ of `gf.tangent_kernel` against
`gf.infinite_width_ntk(x, activation=..., input_var=1/d)`, its root mean square over the seeds
(exactly $C m^{-1/2}$ in expectation: $K_m$ is a mean of $m$ iid neuron terms), and the slope of
`gf.fit_rate` with its 95% interval.

Then two measurements for the docs: the quadrature's error for tanh at $\sigma = 1$ (the
trapezoidal rule used against Gauss-Hermite, both against a trapezoidal reference at a quarter of
the step), and the wall time of `gf.infinite_width_flow` in the paper's Fig. 2 setting (relu,
$a \sim N(0, I_d)$, $b \sim N(0, 1)$, not doubled, d = 100, n = n_test = 1000 on the sphere,
teacher times 100, t = 25000 and inf), first and second call.

Writes `ntk_convergence.png` and `ntk_convergence.json` to `--out` (default `docs/figures`).
Run: `python benchmarks/ntk_convergence.py [--seeds 256] [--widths 16,64,256,1024,4096]`
(about 2 minutes on 2 CPU cores).
"""

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf
from gradflow import data as gdata
from gradflow.analysis import _kernels
from gradflow.experiments import environment, write_json

ACTIVATIONS = ("relu", "tanh", "quadratic")


def kernel_errors(activation: str, widths: list[int], seeds: int, x: jax.Array, seed: int):
    """Per width: the relative Frobenius errors of `seeds` nets' tangent kernels."""
    n, d = x.shape
    exact = np.asarray(gf.infinite_width_ntk(x, activation=activation, input_var=1.0 / d))
    zeros = jnp.zeros((n, 1))
    rng = np.random.default_rng(seed)
    out = []
    for m in widths:
        model = gf.models.TwoLayer(m, activation, "sqrt")

        def kernel(p, model=model):
            return gf.tangent_kernel(gf.Problem(model, p, x, gf.SquareLoss(zeros)))

        batched = eqx.filter_jit(eqx.filter_vmap(kernel))
        errs = []
        # Chunks of at most 64 nets bound the memory of the batched VJPs at large m.
        for start in range(0, seeds, 64):
            size = min(64, seeds - start)
            params = {
                "a": jnp.asarray(rng.standard_normal((size, m, d)) / math.sqrt(d)),
                "b": jnp.asarray(rng.standard_normal((size, m, 1))),
            }
            ks = np.asarray(batched(params))
            errs.append(np.linalg.norm(ks - exact, axis=(1, 2)) / np.linalg.norm(exact))
        out.append(np.concatenate(errs))
    return out


def quadrature_errors() -> dict[str, Any]:
    """E[tanh'(u) tanh'(u')] at sigma = 1, rho = 0.7: Gauss-Hermite (numpy `hermegauss`) and
    the library's trapezoidal rule against the trapezoidal rule at a quarter of the step."""
    s1, s2, rho = 1.0, 0.9, 0.7
    sq1, sq2, dot = jnp.asarray(s1**2), jnp.asarray(s2**2), jnp.asarray(s1 * s2 * rho)

    def trapezoid(nodes):
        return float(
            _kernels._moments(sq1, sq2, dot, activation="tanh", input_var=1.0, num_nodes=nodes)[1]
        )

    default = _kernels.default_num_nodes(s1)
    ref = trapezoid(4 * default - 3)

    def hermite(nodes):
        z, w = np.polynomial.hermite_e.hermegauss(nodes)
        w = w / w.sum()
        c = math.sqrt(1 - rho**2)
        u, v = s1 * z[:, None], s2 * (rho * z[:, None] + c * z[None, :])
        d1, d2 = 1 - np.tanh(u) ** 2, 1 - np.tanh(v) ** 2
        return float(np.sum(w[:, None] * w[None, :] * d1 * d2))

    rows = [
        {"rule": "gauss-hermite", "nodes": k, "error": abs(hermite(k) - ref)}
        for k in (32, 64, 96, 128)
    ]
    rows += [
        {"rule": "trapezoid", "nodes": k, "error": abs(trapezoid(k) - ref)}
        for k in (35, 51, default, 2 * default - 1)
    ]
    return {"sigma": s1, "rho": rho, "reference": ref, "default_nodes": default, "rows": rows}


def fig2_timing() -> dict[str, Any]:
    data = gdata.teacher_student(jax.random.PRNGKey(0), 1000, 1000, 100, output_scale=100.0)
    jax.block_until_ready(data.x_train)
    out: dict[str, Any] = {}
    for call in ("first", "second"):
        t0, c0 = time.perf_counter(), time.process_time()
        res = gf.infinite_width_flow(
            data.x_train, data.y_train, data.x_test, data.y_test, [25_000.0, np.inf]
        )
        jax.block_until_ready(res.test_loss)
        out[f"{call}_call_seconds"] = time.perf_counter() - t0
        out[f"{call}_call_cpu_seconds"] = time.process_time() - c0
    out.update(
        expected_test_loss=[float(v) for v in res.expected_test_loss],
        mean_predictor_test_loss=[float(v) for v in res.test_loss],
        test_variance=[float(v) for v in res.test_variance],
        expected_train_loss=[float(v) for v in res.expected_train_loss],
        zero_predictor_test_loss=float(0.5 * jnp.mean(data.y_test**2)),
        ts=[25_000.0, math.inf],
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="16,64,256,1024,4096")
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--d", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--skip-fig2", action="store_true", help="skip the Fig. 2 timing")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    x = jnp.asarray(np.random.default_rng(args.seed).standard_normal((args.n, args.d)))

    results: dict[str, Any] = {}
    print(f"n = {args.n}, d = {args.d}, {args.seeds} nets per width; RMS relative error")
    print(f"{'activation':>10} " + " ".join(f"{'m=' + str(m):>9}" for m in widths) + "   slope")
    for act in ACTIVATIONS:
        t0 = time.perf_counter()
        errs = kernel_errors(act, widths, args.seeds, x, args.seed)
        rms = [math.sqrt(float(np.mean(e**2))) for e in errs]
        fit = gf.fit_rate(widths, rms)
        results[act] = {
            "widths": widths,
            "rms_error": rms,
            "mean_error": [float(np.mean(e)) for e in errs],
            "fit": fit.to_dict(),
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"{act:>10} "
            + " ".join(f"{r:>9.3e}" for r in rms)
            + f"   {fit.slope:.3f} [{fit.ci[0]:.3f}, {fit.ci[1]:.3f}]",
            flush=True,
        )

    quad = quadrature_errors()
    print("\nE[tanh'(u) tanh'(u')] at sigma = 1, rho = 0.7: error against the reference")
    for row in quad["rows"]:
        print(f"  {row['rule']:>13} {row['nodes']:>4} nodes per axis: {row['error']:.1e}")

    fig2 = None
    if not args.skip_fig2:
        fig2 = fig2_timing()
        print(
            "\nFig. 2 setting (relu, d = 100, n = n_test = 1000, t = 25000, inf): expected test "
            f"loss {fig2['expected_test_loss']}, of which variance {fig2['test_variance']}; "
            f"first call {fig2['first_call_seconds']:.1f} s (CPU "
            f"{fig2['first_call_cpu_seconds']:.1f} s), second {fig2['second_call_seconds']:.1f} s "
            f"(CPU {fig2['second_call_cpu_seconds']:.1f} s); zero predictor "
            f"{fig2['zero_predictor_test_loss']:.3f}"
        )

    write_json(
        {
            "convergence": results,
            "n": args.n,
            "d": args.d,
            "seeds": args.seeds,
            "quadrature": quad,
            "fig2": fig2,
            "environment": environment(),
            "command": "python benchmarks/ntk_convergence.py " + " ".join(sys.argv[1:]),
        },
        args.out / "ntk_convergence.json",
    )
    plot(results, args, args.out / "ntk_convergence.png")


def plot(results: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), layout="constrained")
    for act, color in zip(ACTIVATIONS, ("tab:blue", "tab:orange", "tab:green")):
        res = results[act]
        m = np.asarray(res["widths"], float)
        fit = res["fit"]
        ax.loglog(m, res["rms_error"], "o", color=color, ms=6)
        ax.loglog(
            m,
            np.exp(fit["intercept"]) * m ** fit["slope"],
            "-",
            color=color,
            label=f"{act}: fit slope {fit['slope']:.3f} [{fit['ci'][0]:.3f}, {fit['ci'][1]:.3f}]",
        )
        # The -1/2 line through the points' geometric mean.
        anchor = np.exp(np.mean(np.log(res["rms_error"])) + 0.5 * np.mean(np.log(m)))
        ax.loglog(m, anchor * m**-0.5, ":", color=color, lw=1.5)
    ax.plot([], [], "k:", label=r"slope $-1/2$")
    ax.set_xlabel("width m")
    ax.set_ylabel(r"RMS of $\|K_m - K_\infty\|_F / \|K_\infty\|_F$")
    ax.set_title(
        f"Tangent kernel of TwoLayer(m, sqrt) vs infinite width\n"
        f"n = {args.n}, d = {args.d}, {args.seeds} nets per width, 95% intervals",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
