"""Central differences for the float64 gradient checks of tests/kernels: the gradient, entry by
entry, of sum(f(x) * g) with respect to x (g the upstream gradient; g=None when f is a scalar)."""

import numpy as np


def numeric_gradient(f, x, g=None, eps=1e-5):
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        diff = np.asarray(f(plus), np.float64) - np.asarray(f(minus), np.float64)
        numeric[idx] = (float(diff) if g is None else np.sum(diff * g)) / (2 * eps)
    return numeric


def directional_derivative(f, x, d, g=None, eps=1e-5):
    """The derivative of sum(f(x) * g) along the direction d, by one central difference: compared
    with sum(gradient * d), it checks a large gradient with two evaluations of f."""
    diff = np.asarray(f(x + eps * d), np.float64) - np.asarray(f(x - eps * d), np.float64)
    return (float(diff) if g is None else float(np.sum(diff * g))) / (2 * eps)
