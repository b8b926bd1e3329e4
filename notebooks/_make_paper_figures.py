"""Generate notebooks/paper_figures.ipynb (run: python notebooks/_make_paper_figures.py).

The notebook only calls the library: every experiment is `gradflow.experiments.<Name>`, run at
`quick()` sizes (the test suite executes it); set QUICK = False for the paper's sizes.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# The paper's figures: lazy vs non-lazy training\n\n"
        "Chizat, Oyallon & Bach, *On Lazy Training in Differentiable Programming* (NeurIPS "
        "2019). Each section runs one experiment of `gradflow.experiments` (the same code as "
        "`gradflow reproduce <name>`), prints its summary and shows its figure. With "
        "`QUICK = True` the sizes are small (seconds, as in the test suite); with `QUICK = "
        "False` they are the paper's (see `docs/experiments.md` for run times). Results are "
        "stored per point under `OUT`, so re-running a cell reuses finished points."
    ),
    new_code_cell(
        "import tempfile\n"
        "from pathlib import Path\n\n"
        "from IPython.display import Image, display\n\n"
        "from gradflow import experiments as ex\n\n"
        "QUICK = True\n"
        'OUT = Path(tempfile.mkdtemp(prefix="paper-figures-"))\n\n\n'
        "def show(cls, **changes):\n"
        "    exp = (cls.quick() if QUICK else cls()).replace(**changes)\n"
        "    result = ex.run(exp, OUT / exp.name, progress=False)\n"
        "    print(exp.report(result.summary))\n"
        "    for f in result.files:\n"
        '        if f.suffix == ".png":\n'
        "            display(Image(filename=str(f)))\n"
        "    return result"
    ),
    new_markdown_cell(
        "## Init scale $\\tau$ acts as $\\alpha = \\tau^2$\n"
        "A two-layer ReLU net is 2-homogeneous: the flow of the unscaled objective from "
        "$\\tau w_0$ is $\\tau v(\\tau^2 t)$, with $v$ the flow of $F_{\\tau^2}$ from $w_0$."
    ),
    new_code_cell("homogeneity = show(ex.Homogeneity)"),
    new_markdown_cell(
        "## Fig. 1a/b: neuron trajectories\n"
        "Paths of $|b_j| a_j$ in the plane: far-moving neurons that align with the teacher at "
        "$\\tau = 0.1$, neurons that barely move at $\\tau = 2$ (lazy)."
    ),
    new_code_cell('trajectories = show(ex.Trajectories, methods=("gd",), num_steps=5000)'),
    new_markdown_cell(
        "## Fig. 1c: test loss vs $\\tau$\n"
        "End-of-training and best-along-training test loss; the lazy regime (large $\\tau$) "
        "plateaus at a higher test loss."
    ),
    new_code_cell("tau_sweep = show(ex.TauSweep)"),
    new_markdown_cell(
        "## Fig. 2: width scaling\n"
        "Output scaling $1/\\sqrt m$ (lazy as $m$ grows) vs $1/m$ (mean field), not doubled."
    ),
    new_code_cell("width = show(ex.WidthSweep, num_steps=1000)"),
    new_markdown_cell(
        "## More experiments\n"
        "SGD on the population loss vs $\\tau$, random features vs neural tangent vs full "
        "training (quadratic net), and over-parameterized tensor completion run the same way "
        "(`show(ex.PopulationSGD)`, `show(ex.Regimes)`, `show(ex.TensorCompletion)`), or from "
        "the command line: `gradflow reproduce population-sgd`, `gradflow reproduce regimes`, "
        "`gradflow reproduce tensor` (add `--quick` for small sizes). They are left out here to "
        "keep this notebook fast; their results are in `docs/experiments.md`."
    ),
    new_markdown_cell(
        "## Deep CNN vs $\\alpha$ (Section 4.2)\n"
        "VGG-style CNN without batch norm on scikit-learn's digits: test accuracy vs $\\alpha$, "
        "the linearized model, and the share of ReLUs unchanged from init."
    ),
    new_code_cell("cnn = show(ex.CNNAlphaSweep)"),
    new_markdown_cell(
        """\
## The claims, checked
Each figure's claim, asserted with its tolerance on the summaries above; a claim that does not
hold stops the notebook (the test suite executes it at `quick()` sizes)."""
    ),
    new_code_cell(
        """\
# tau acts as tau^2: the two flows agree to 1e-8 relative (solver rtol 1e-10; measured: 3e-13);
# alpha = tau instead of tau^2 would give differences of order one.
assert max(r["max_relative_difference"] for r in homogeneity.summary["rows"]) < 1e-8
# Fig. 1a/b: the neurons move farther than their size at tau = 0.1 (measured: 3.1), by under 10%
# at tau = 2 (measured: 0.03).
moved = {r["tau"]: r["relative_displacement"] for r in trajectories.summary["rows"]}
assert moved[0.1] > 1 and moved[2.0] < 0.1, moved
# Fig. 1c: the end-of-training test loss at the largest tau is over twice the smallest tau's
# (measured: 5.3 times), and that lazy plateau is the linearized model's within 1% (measured: 2e-6).
by_tau = sorted(tau_sweep.summary["rows"], key=lambda r: r["tau"])
assert by_tau[-1]["test_end_mean"] > 2 * by_tau[0]["test_end_mean"], by_tau
assert abs(by_tau[-1]["end_over_linear_mean"]) < 0.01, by_tau[-1]["end_over_linear_mean"]
# Fig. 2: at the largest width the 1/sqrt(m) (lazy) net's test loss is over 1.5 times the mean
# field's (measured: 3.4 times).
largest = max(r["width"] for r in width.summary["rows"])
at_m = {r["scaling"]: r["test_end_mean"] for r in width.summary["rows"] if r["width"] == largest}
assert at_m["sqrt"] > 1.5 * at_m["mean_field"], at_m
# CNN: at the largest alpha the accuracy is the linearized model's within 0.01 (measured: equal),
# over 99.9% of the ReLUs keep their sign (measured: 99.998%), and the displacement scales like
# 1/alpha: its ratio between the two largest alphas is within a factor 2 of theirs (measured: 99.9
# for 100).
by_model = {r["model"]: r for r in cnn.summary["rows"]}
alphas = sorted(r["alpha"] for r in cnn.summary["rows"] if r["alpha"] is not None)
top, below = by_model[f"alpha={alphas[-1]:g}"], by_model[f"alpha={alphas[-2]:g}"]
assert abs(top["test_accuracy_mean"] - by_model["linearized"]["test_accuracy_mean"]) <= 0.01
assert top["stable_activations_mean"] > 0.999, top["stable_activations_mean"]
ratio = below["relative_displacement"] / top["relative_displacement"]
assert 0.5 < ratio / (alphas[-1] / alphas[-2]) < 2, ratio"""
    ),
]
nb = new_notebook(
    cells=cells,
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)
path = Path(__file__).with_name("paper_figures.ipynb")
nbformat.write(nb, path)
print(f"wrote {path}")
