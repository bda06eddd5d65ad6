"""Random input values for a graph, at its declared shapes and in each input's domain.

Ops note what their graph inputs must be when they are fed one directly: log and
sqrt want positive values, a cross-entropy's labels are one-hot rows, an integer input
that indexes an axis of size n (gc.take, gc.one_hot) lies in [0, n). `graphc
check` (and anything else that needs a typical point) draws from these domains, so
the sample is one the model is meant for.
"""
from __future__ import annotations

import numpy as np

from ..graph.ir import concrete_shape

DOMAINS = {
    "positive": "uniform in [0.5, 2)",
    "unit": "uniform in [0.05, 0.95)",
    "one_hot": "one-hot rows",
    "uniform": "uniform in [0, 1) (random numbers, e.g. dropout's)",
}


# integer inputs that index nothing: small non-negative integers, [0, SMALL)
SMALL = 5


def describe(domain):
    """The words for a domain: DOMAINS' entry, or an integer index's range."""
    if isinstance(domain, tuple):   # ("index" or "label", n): integers in [0, n)
        return f"integers in [0, {domain[1]})"
    return DOMAINS[domain]


def domain_notes(graph):
    """{input name: its domain in words}: the inputs not sampled uniformly in the range."""
    notes = {name: describe(d) for name, d in graph.domains.items()}
    for node in graph.inputs:
        if node.dtype == "int":
            notes.setdefault(node.name, f"integers in [0, {SMALL})")
    return notes


def sample_inputs(graph, rng, dims, low=-1.0, high=1.0):
    """{input name: array}; inputs without a domain are uniform in [low, high), integer
    inputs integers in [0, n) where they index an axis of size n, else in [0, SMALL)."""
    values = {}
    for node in graph.inputs:
        shape = concrete_shape(node.shape, dims)
        domain = graph.domains.get(node.name)
        if node.dtype == "int":
            n = concrete_shape((domain[1],), dims)[0] if isinstance(domain, tuple) else SMALL
            values[node.name] = rng.integers(0, n, size=shape)
        elif domain == "positive":
            values[node.name] = rng.uniform(0.5, 2.0, size=shape)
        elif domain == "unit":
            values[node.name] = rng.uniform(0.05, 0.95, size=shape)
        elif domain == "uniform":
            values[node.name] = rng.random(size=shape)
        elif domain == "one_hot" and shape:
            labels = rng.integers(0, shape[-1], size=shape[:-1])
            values[node.name] = np.eye(shape[-1])[labels]
        else:
            values[node.name] = rng.uniform(low, high, size=shape)
    return values
