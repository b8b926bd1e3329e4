"""Activations for two-layer nets, by name for the command line."""

import jax
import jax.numpy as jnp


def relu(z):
    """$\\max(z, 0)$: positively 1-homogeneous, so a two-layer ReLU net is 2-homogeneous."""
    return jax.nn.relu(z)


def tanh(z):
    """$\\tanh z$: smooth, with bounded derivatives of every order."""
    return jnp.tanh(z)


def softplus(z):
    """$\\log(1 + e^z)$: a smooth ReLU."""
    return jax.nn.softplus(z)


def quadratic(z):
    """$z^2$: two-layer nets with it are polynomial (2-homogeneous in the input weights)."""
    return z**2


ACTIVATIONS = {"relu": relu, "tanh": tanh, "softplus": softplus, "quadratic": quadratic}
"""The activations [`gradflow.models.TwoLayer`][] takes, by name."""


def resolve_activation(activation):
    """An activation given by name (a key of `ACTIVATIONS`) or as a callable, as a callable."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)} or "
                "pass a callable."
            )
        return ACTIVATIONS[activation]
    return activation
