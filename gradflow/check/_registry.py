"""The theorems `gradflow.check` knows, as one table. This module imports no JAX (nor anything
of gradflow): the command line reads it to build `gradflow check --help`, and `gradflow.check`
derives its registries (`THEOREMS`, `RESEARCH_THEOREMS`, the check functions) from it."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Theorem:
    """One theorem check: its `name` (as `gradflow check NAME` and `gradflow.check.run` spell
    it), the check function (`function` in the submodule `module` of `gradflow.check`), whether
    it has real-size problems (`research`), and a one-line `summary`."""

    name: str
    module: str
    function: str
    research: bool
    summary: str


# Research size: the over-parameterized theorem needs alpha > ||y*|| / C0 with
# C0 ~ sigma_min^3 (sigma_min^2 = 7e-3 on the research two-layer net: alpha of order 1e6 and
# beyond), and the under-parameterized one a constant-rank model with fewer parameters than
# outputs: neither fits a real-size net. They, and the off-training-set check, run at the
# default size.
REGISTRY = (
    Theorem(
        "next_to_lazy",
        "_next_to_lazy",
        "check_next_to_lazy",
        True,
        "the 1/alpha^2 constant from the next-to-lazy ODE",
    ),
    Theorem(
        "finite_horizon",
        "_finite_horizon",
        "check_finite_horizon",
        True,
        "slopes -1, -2, -1 and the Gronwall bounds of the proof",
    ),
    Theorem(
        "over_parameterized",
        "_over_parameterized",
        "check_over_parameterized",
        False,
        "the C0 condition, the geometric envelope, the displacement bound, uniform rates",
    ),
    Theorem(
        "under_parameterized",
        "_under_parameterized",
        "check_under_parameterized",
        False,
        "the geometric rate and its independence of alpha",
    ),
    Theorem(
        "scale_criterion",
        "_scale",
        "check_scale_criterion",
        True,
        "the scale criterion's 1/alpha law, homogeneity and width laws",
    ),
    Theorem(
        "off_training_set",
        "_off_training_set",
        "check_off_training_set",
        False,
        "the linearization on held-out inputs: slope -1 and the Taylor bounds",
    ),
)
"""Every theorem check, in the order `gradflow check all` runs them."""

THEOREMS = tuple(t.name for t in REGISTRY)
"""The theorems [`gradflow.check.run`][] (and `gradflow check NAME`) accept."""

RESEARCH_THEOREMS = tuple(t.name for t in REGISTRY if t.research)
"""The theorems with research-size problems ([`gradflow.check.research_problems`][])."""
