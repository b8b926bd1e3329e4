r"""Is the Fig. 1c flow's step capped by stability? The largest Hessian eigenvalue against the
steps `solver="auto"` takes.

For each $\tau$ in `--taus`, the paper's Fig. 1c problem (d = 100, n = 1000, m = 50, ReLU,
doubled init times $\tau$) is solved with `solver="auto"` at `rtol = 1e-2` over the paper's
horizon (1e4 steps of $\eta = \min(10, 0.1/\tau^2)$), and $\lambda_{\max}$ of the Hessian of
$F_\alpha$ is computed by 60 power iterations on Hessian-vector products (forward over reverse) at
$w_0$ and at $w(T)$. Forward Euler (GD) and Heun are stable for $\Delta t \le 2/\lambda_{\max}$;
an adaptive step whose mean sits at that bound is capped by stability, not accuracy.

Run: `python benchmarks/bench_stiffness.py [--taus 0.01,1]`.
"""

import argparse

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow import data as gdata
from gradflow.experiments import paper_init, paper_learning_rate, paper_problem


def lambda_max(problem: gf.Problem, params, iterations: int = 60) -> float:
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda v: problem.objective(unravel(v)))
    hvp = jax.jit(lambda v: jax.jvp(grad, (flat,), (v,))[1])
    v = jax.random.normal(jax.random.PRNGKey(1), flat.shape)
    v = v / jnp.linalg.norm(v)
    lam = 0.0
    for _ in range(iterations):
        hv = hvp(v)
        lam = float(jnp.vdot(v, hv))
        v = hv / jnp.linalg.norm(hv)
    return lam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taus", default="0.01,1")
    args = parser.parse_args()
    kd, kp = jax.random.split(jax.random.PRNGKey(0))
    data = gdata.teacher_student(kd, 1000, 1000, 100)
    print(
        f"{'tau':>6} {'eta*lmax(w0)':>13} {'eta*lmax(wT)':>13} {'auto mean dt/eta':>17} "
        f"{'stability bound 2/(eta*lmax(wT))':>33}"
    )
    for tau in (float(t) for t in args.taus.split(",")):
        problem = paper_problem(paper_init(kp, 50, 100, tau=tau), data.x_train, data.y_train, 1.0)
        eta = paper_learning_rate(50, min(10.0, 0.1 / tau**2))
        t1 = 10_000 * eta
        sol = gf.solve(
            problem,
            t1=t1,
            ts=[t1],
            rtol=1e-2,
            atol=1e-4,
            linearized=False,
            save_params=True,
            max_steps=1_000_000,
        )
        w_end = jax.tree_util.tree_map(lambda x: x[0], sol.params)
        l0, l1 = lambda_max(problem, problem.params0), lambda_max(problem, w_end)
        mean_dt = t1 / int(sol.stats["num_accepted_steps"])
        print(
            f"{tau:>6g} {eta * l0:>13.3f} {eta * l1:>13.3f} {mean_dt / eta:>17.2f} "
            f"{2 / (eta * l1):>33.2f}"
        )


if __name__ == "__main__":
    main()
