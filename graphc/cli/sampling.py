"""Random input values for a graph, at its declared shapes and in each input's domain.

Ops note what their graph inputs must be when they are fed one directly: log and
sqrt want positive values, a cross-entropy's labels are one-hot rows. `graphc
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


def sample_inputs(graph, rng, dims, low=-1.0, high=1.0):
    """{input name: array}; inputs without a domain are uniform in [low, high)."""
    values = {}
    for node in graph.inputs:
        shape = concrete_shape(node.shape, dims)
        domain = graph.domains.get(node.name)
        if domain == "positive":
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
