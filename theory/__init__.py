"""Symbolic statements of the lazy-training theory (sympy). This package never imports gradflow:
it is the independent side against which numerical measurements are compared.
"""

from .toy import ScalarModelFlows as ScalarModelFlows, scalar_model_flows as scalar_model_flows
