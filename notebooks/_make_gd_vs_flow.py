# ruff: noqa: E501
"""Generate notebooks/gd_vs_flow.ipynb (run: python notebooks/_make_gd_vs_flow.py). The notebook
only calls the library; the test suite executes it."""

from pathlib import Path

import nbformat

md = nbformat.v4.new_markdown_cell
code = nbformat.v4.new_code_cell

cells = [
    md(
        "# Gradient descent against its flow\n\n"
        "The paper's theorems are about gradient flows; its experiments run gradient descent "
        "(GD). GD with step $\\eta$ is forward Euler on the flow: $O(\\eta)$ from it on a finite "
        "horizon while $\\eta\\,\\lambda_{\\max} < 2$ along the path, and $O(\\eta^2)$ from the "
        "flow of $F + (\\eta/4)\\|\\nabla F\\|^2$, its *modified flow* (Barrett & Dherin, ICLR "
        "2021). Where the sharpness $\\lambda_{\\max}$ reaches $2/\\eta$, the edge of stability "
        "(Cohen et al., ICLR 2021), GD leaves every flow. Three measurements, each asserted at "
        "the end:\n\n"
        "1. the sharpness along a GD path (`gf.sharpness_along`, Lanczos on Hessian-vector "
        "products) against a dense eigendecomposition;\n"
        "2. GD's output distance to the flow (`gf.gd_flow_distance`) and to the modified flow "
        "(`gf.solve(..., modified_step=eta)`), and their orders in $\\eta$ (1 and 2);\n"
        "3. a quick edge-of-stability run (`gradflow reproduce edge-of-stability --quick`)."
    ),
    code(
        "import jax\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "from jax.flatten_util import ravel_pytree\n\n"
        "import gradflow as gf\n"
        "from gradflow import experiments as ex\n\n"
        "kx, kt, kp = jax.random.split(jax.random.PRNGKey(0), 3)\n"
        "x = gf.data.uniform_sphere(kx, 20, 3)\n"
        "model = gf.models.TwoLayer(30, 'tanh')\n"
        "problem = gf.Problem(model, model.init(kp, 3), x, gf.SquareLoss(gf.data.teacher_targets(kt, x)), alpha=1.0)\n"
        "lam0 = float(gf.sharpness(problem))\n"
        "print(f'{ravel_pytree(problem.params0)[0].size} parameters, lambda_max(w0) = {lam0:.4f}')"
    ),
    md(
        "## 1. The sharpness along a GD path, against a dense eigendecomposition\n\n"
        "GD at $\\eta\\,\\lambda_{\\max}(w_0) = 0.5$ for 200 steps; at 11 of its iterates, "
        "`gf.sharpness_along` against `numpy.linalg.eigvalsh` of the dense `jax.hessian`. The "
        "estimate is the largest *signed* eigenvalue, not the spectral radius: the smallest "
        "eigenvalue is printed beside it."
    ),
    code(
        "eta = 0.5 / lam0\n"
        "its = np.arange(0, 201, 20)\n"
        "gd = gf.solve(problem, t1=200 * eta, ts=its * eta, solver=gf.GradientDescent(eta),\n"
        "              linearized=False, save_params=True)\n"
        "lam = np.asarray(gf.sharpness_along(problem, gd.params).value)\n"
        "w, unravel = ravel_pytree(problem.params0)\n"
        "hessian = jax.jit(jax.hessian(lambda v: problem.objective(unravel(v))))\n"
        "dense = np.array([np.linalg.eigvalsh(np.asarray(hessian(ravel_pytree(jax.tree_util.tree_map(lambda p: p[i], gd.params))[0])))[[0, -1]]\n"
        "                  for i in range(len(its))])\n"
        "sharp_error = np.abs(lam / dense[:, 1] - 1)\n"
        "for k, l, (lo, hi), e in zip(its, lam, dense, sharp_error):\n"
        "    print(f'k = {k:3d}: Lanczos {l:.6f}, dense {hi:.6f} (smallest {lo:+.4f}), relative error {e:.1e}')"
    ),
    md(
        "## 2. GD against the flow and the modified flow\n\n"
        "One step, $\\eta\\,\\lambda_{\\max}(w_0) = 0.3$, 200 steps: `gf.gd_flow_distance` "
        "gives GD's distance to the flow at 41 iterates with a reference solved at two "
        "tolerances (tight when they agree to a tenth of the smallest gap), and "
        "$\\eta\\,\\lambda_{\\max}$ along GD; the modified flow is `gf.solve(..., "
        "modified_step=eta)` saved at the same times."
    ),
    code(
        "eta = 0.3 / lam0\n"
        "dist = gf.gd_flow_distance(problem, eta, 200, iterations=np.arange(0, 201, 5), rtol=1e-9)\n"
        "print(dist)\n"
        "kw = dict(t1=200 * eta, ts=dist.ts, linearized=False, save_params=True)\n"
        "def outputs(sol):\n"
        "    return jax.vmap(lambda p: model(p, x))(sol.params)\n"
        "gd_out = outputs(gf.solve(problem, solver=gf.GradientDescent(eta), **kw))\n"
        "mod_out = outputs(gf.solve(problem, rtol=1e-11, atol=1e-13, modified_step=eta, **kw))\n"
        "mod_dist = np.sqrt(np.mean(np.sum((gd_out - mod_out) ** 2, -1), -1))\n"
        "k = np.asarray(dist.iterations)\n"
        "late = k >= 10\n"
        "ratio = np.max(np.asarray(dist.distance)[late]) / np.max(mod_dist[late])\n"
        "print(f'from the 10th iterate on: flow {np.max(np.asarray(dist.distance)[late]):.2e}, '\n"
        "      f'modified flow {np.max(mod_dist[late]):.2e}, {ratio:.0f}x closer')\n"
        "fig, ax = plt.subplots(figsize=(6, 3.6))\n"
        "ax.semilogy(k[1:], np.asarray(dist.distance)[1:], label='GD to the flow')\n"
        "ax.semilogy(k[1:], mod_dist[1:], label='GD to the modified flow')\n"
        "ax.semilogy(k[1:], np.asarray(dist.reference_error)[1:], ':', label='the reference flows disagree')\n"
        "ax.set_xlabel('iteration k'); ax.set_ylabel('output distance'); ax.legend(); plt.show()"
    ),
    md(
        "### The orders in $\\eta$\n\n"
        "The horizon fixed at $t = 8$, $\\eta = 8/80, 8/160, 8/320$: the largest output "
        "distance at $t = 2, 4, 6, 8$, fitted on log-log axes by `gf.fit_rate`. Backward "
        "error analysis predicts slope 1 against the flow and 2 against the modified flow."
    ),
    code(
        "times = np.array([2.0, 4.0, 6.0, 8.0])\n"
        "etas = [8.0 / 80, 8.0 / 160, 8.0 / 320]\n"
        "plain, modified = [], []\n"
        "for e in etas:\n"
        "    kw = dict(ts=times, save_params=True, linearized=False)\n"
        "    g = outputs(gf.solve(problem, solver=gf.GradientDescent(e), **kw))\n"
        "    f = outputs(gf.solve(problem, rtol=1e-10, atol=1e-12, **kw))\n"
        "    m = outputs(gf.solve(problem, rtol=1e-10, atol=1e-12, modified_step=e, **kw))\n"
        "    plain.append(float(np.max(np.sqrt(np.mean(np.sum((f - g) ** 2, -1), -1)))))\n"
        "    modified.append(float(np.max(np.sqrt(np.mean(np.sum((m - g) ** 2, -1), -1)))))\n"
        "fit_plain, fit_modified = gf.fit_rate(etas, plain), gf.fit_rate(etas, modified)\n"
        "print(f'against the flow: slope {fit_plain.slope:.3f}; against the modified flow: {fit_modified.slope:.3f}')"
    ),
    md(
        "### The second-order modified equation\n\n"
        "`modified_order=2` adds the next term of the expansion, $\\eta^2 (f''(f, f)/12 + "
        "f'f'f/3)$ with $f = -\\nabla F$: GD follows that flow to $O(\\eta^3)$. Its distance "
        "to GD at the step of section 2, and its order at $\\eta = 8/40, 8/80, 8/160$ "
        "(slope 3 predicted; 2 for the first-order flow at these steps)."
    ),
    code(
        "eta = 0.3 / lam0\n"
        "kw = dict(t1=200 * eta, ts=dist.ts, linearized=False, save_params=True)\n"
        "mod2_out = outputs(gf.solve(problem, rtol=1e-11, atol=1e-13, modified_step=eta, modified_order=2, **kw))\n"
        "mod2_dist = np.sqrt(np.mean(np.sum((gd_out - mod2_out) ** 2, -1), -1))\n"
        "ratio2 = np.max(np.asarray(dist.distance)[late]) / np.max(mod2_dist[late])\n"
        "print(f'from the 10th iterate on: second-order modified flow {np.max(mod2_dist[late]):.2e}, {ratio2:.0f}x closer than the flow')\n"
        "etas2 = [8.0 / 40, 8.0 / 80, 8.0 / 160]\n"
        "second = []\n"
        "for e in etas2:\n"
        "    kw = dict(ts=times, save_params=True, linearized=False)\n"
        "    g = outputs(gf.solve(problem, solver=gf.GradientDescent(e), **kw))\n"
        "    m = outputs(gf.solve(problem, rtol=1e-13, atol=1e-15, modified_step=e, modified_order=2, **kw))\n"
        "    second.append(float(np.max(np.sqrt(np.mean(np.sum((m - g) ** 2, -1), -1)))))\n"
        "fit_second = gf.fit_rate(etas2, second)\n"
        "print(f'against the second-order modified flow: slope {fit_second.slope:.3f}')"
    ),
    md(
        "## 3. The edge of stability\n\n"
        "`EdgeOfStability.quick()` at 400 steps: a tanh net on 64 digits images, $\\eta = "
        "0.2$. The sharpness of GD rises to $2/\\eta$ and hovers there; the flow's keeps "
        "rising, and GD's loss leaves both flows' (the modified flow is drawn too)."
    ),
    code(
        "import tempfile\n"
        "eos = ex.EdgeOfStability.quick().replace(num_steps=400, num_sharpness=20)\n"
        "folder = tempfile.mkdtemp()\n"
        "result = ex.run(eos, folder, progress=False)\n"
        "(row,) = result.summary['rows']\n"
        "print({k: row[k] for k in ('eta', 'two_over_eta', 'sharpness_0', 'onset', 'mean_deviation', 'late_deviation',\n"
        "                           'flow_gap_before', 'flow_gap_in_phase', 'modified_flow_gap_before', 'modified_flow_gap_in_phase')})\n"
        "from IPython.display import Image\n"
        "Image(filename=str(next(f for f in result.files if f.suffix == '.png')))"
    ),
    md(
        """\
## The claims, checked
Each comparison above, asserted with its tolerance; a claim that does not hold stops the
notebook (the test suite executes it)."""
    ),
    code(
        """\
# 1. The sharpness along GD within 1% of the dense top eigenvalue at every iterate shown (the
# issue's goal; measured: under 1e-8), and the largest signed eigenvalue, not the spectral radius.
assert np.all(sharp_error < 1e-2), sharp_error
# 2. The reference flow is tight, GD stays stable (eta * lambda_max < 2), and the modified flow
# is closer to GD than the flow from the 10th iterate on by at least 5x (measured: 8.2x; the
# distance is the largest over the iterates, set by the first ones, where GD's error is made).
assert dist.reference_tight and np.nanmax(np.asarray(dist.eta_sharpness)) < 2, dist
assert ratio >= 5, ratio
# The orders: 1.0 +- 0.1 against the flow, 2.0 +- 0.1 against the modified flow, 3.0 +- 0.1
# against the second-order one, which is at least 10x closer to GD than the flow at this step.
assert abs(fit_plain.slope - 1.0) < 0.1 and abs(fit_modified.slope - 2.0) < 0.1, (fit_plain, fit_modified)
assert abs(fit_second.slope - 3.0) < 0.1, fit_second
assert ratio2 >= 10, ratio2
# 3. The edge: GD's sharpness starts below 2/eta, reaches it (onset), and hovers within 12% of
# it on average (measured: 9.0%, over a phase of 280 steps that the entry overshoot of 24% weighs
# on; 2.2-3.2% over the full run's 6 000 steps, docs/experiments.md); GD's loss leaves both
# flows there (gaps of order one against 1.3e-3 and 4.0e-4 before the onset).
assert row['sharpness_0'] < 0.9 * row['two_over_eta'] and row['onset'] is not None, row
assert row['mean_deviation'] < 0.12, row
for name in ('flow', 'modified_flow'):
    assert row[f'{name}_gap_in_phase'] > 10 * row[f'{name}_gap_before'], (name, row)"""
    ),
]

nb = nbformat.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbformat.write(nb, Path(__file__).with_name("gd_vs_flow.ipynb"))
