"""Independent training runs on the cluster: one task per configuration (learning rates,
initialisations, seeds), each on one worker, side by side.

The training function goes to every worker once, pickled with what it refers to: a compiled
function it uses travels as its module's text (graphc/runtime.py), written into the worker's
cache and imported there, so the graph is compiled once, on the driver, not per task.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from distributed import get_worker

from .parallel import close_local, local_client


@dataclass
class Run:
    """One configuration's run: what train_fn returned, its wall time and the worker's address."""
    config: object
    result: object
    seconds: float
    worker: str

    @property
    def curve(self):
        """The result's curve: its "curve" entry or attribute (a list of losses, say), else None."""
        if isinstance(self.result, dict):
            return self.result.get("curve")
        return getattr(self.result, "curve", None)


def sweep(train_fn, configs, client=None):
    """`train_fn(config)` for each configuration, as tasks on the cluster of `client`
    (default: a LocalCluster of one worker process per core, shut down at the end); returns
    the Runs in the order of `configs`. A task that fails raises its error here."""
    configs = list(configs)
    own = client is None
    client = local_client() if own else client
    try:
        shipped = client.scatter([train_fn], broadcast=True, hash=False)[0]
        token = uuid.uuid4().hex
        futures = [client.submit(_run, shipped, config, key=f"graphc-sweep-{token}-{k}", pure=False)
                   for k, config in enumerate(configs)]
        done = client.gather(futures)
    finally:
        if own:
            close_local(client)
    return [Run(config, result, seconds, worker) for config, (result, seconds, worker) in zip(configs, done)]


def _run(train_fn, config):
    start = time.perf_counter()
    result = train_fn(config)
    return result, time.perf_counter() - start, get_worker().address
