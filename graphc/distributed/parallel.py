"""DataParallel: one compiled function over shards of a batch kept on Dask's workers.

    dp = gc.distributed.DataParallel(fn)           # a LocalCluster, one worker process per core
    dp.scatter(x=x_train, y=y_train)                # one shard per worker, kept there
    value, grads = dp.value_and_grad(**params)      # = fn.value_and_grad(x_train, y_train, **params)

The inputs whose first axis is the batch dimension are split into shards, each sent once to
a worker that keeps it; the other inputs are sent to every worker once. A step sends the
parameters to every worker once, runs the compiled module on every shard (or on the rows of
a minibatch each shard holds) and adds the shards' results up on the workers, pairwise, in
a tree of fixed shape; the driver receives the sum. reduction.py decides, from the graph,
how each output is reduced (a mean weighted by each shard's share of the examples, a sum,
rows joined), so that the result is the whole batch's; a loss it cannot reduce exactly is
refused. A worker lost in a step takes its shards with it: they are sent again from the
driver's copy (or, for shards a loader made, recomputed by Dask), and the step is run again,
with the same result, since the tree's shape depends on the shards only.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import time
import uuid
from dataclasses import dataclass

import numpy as np
import sympy as sp
from distributed import Client, KilledWorker, LocalCluster, wait
from distributed.comm import get_address_host

from ..graph.ir import GraphError
from ..runtime import CompiledGraph
from . import tasks
from .reduction import MEAN, Rows, describe, plan

# one thread per worker process, as many processes as cores: BLAS and Numba's threads would
# only compete for the cores the other workers use
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "NUMBA_NUM_THREADS")}


def local_client(n_workers=None, **options):
    """A Client of a new LocalCluster on this machine: one worker process per core (or
    `n_workers`), one thread each, BLAS single-threaded in each (options go to LocalCluster)."""
    if n_workers is None:
        n_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # the dashboard on a free port (client.dashboard_link): a second cluster would find 8787 taken
    options = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0", **options}
    options["env"] = {**ONE_THREAD, **options.get("env", {})}
    return Client(LocalCluster(n_workers=n_workers, **options))


def close_local(client):
    """Close `client` and the LocalCluster it was made with (local_client's)."""
    cluster = client.cluster
    client.close()
    cluster.close()


@dataclass
class Shard:
    index: int
    start: int        # its first example's position in the whole data set
    size: int
    worker: str
    future: object = None


@dataclass(frozen=True)
class Batch:
    """A minibatch: the rows each shard contributes (positions within the shard) and where
    they sit in the batch (`order`: the batch positions of the shards' rows, shard by shard)."""
    parts: tuple
    order: np.ndarray
    size: int


class DataParallel:
    """`fn` (a CompiledGraph) over shards of its batch on the workers of `client` (default:
    a LocalCluster of one worker process per core, closed with `close()`). `batch` names
    the batch dimension where the inputs have several symbolic ones."""

    def __init__(self, fn, client=None, batch=None, retries=3):
        if not isinstance(fn, CompiledGraph):
            raise GraphError(f"DataParallel needs a compiled function (gc.compile), got {type(fn).__name__}")
        graph = fn.graph
        self.fn = fn
        self.batch = _batch_dimension(graph, batch)
        self.kinds = plan(graph, self.batch)
        self.reductions = describe(graph, self.kinds)   # output -> how the shards' values make it
        self.sharded = tuple(n.name for n in graph.inputs if n.shape[:1] == (self.batch,))
        self._output_kind = graph.output_kind
        self._dtypes = {n.name: np.dtype(np.int64) if n.dtype == "int" else np.dtype(fn.dtype) for n in graph.inputs}
        self.retries = retries
        self._own = client is None
        self.client = local_client() if client is None else client
        self.shards, self.size = [], 0
        self._data = self._loader = self._common = self._fn = None
        self._common_data, self._warm = {}, set()
        # steps taken, their seconds, and the seconds of each one's slowest shard on its worker:
        # the difference is what a step spends in Dask (scheduling, transfers, the tree's sums)
        self.stats = {"steps": 0, "seconds": 0.0, "compute": 0.0}

    def __repr__(self):
        return (f"<graphc.distributed.DataParallel {self.fn.graph.name}: {len(self.shards)} shards of "
                f"{self.size} examples on {len(self._workers())} workers>")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Forget the shards; a cluster this object started is shut down."""
        self.shards, self._common, self._fn = [], None, None
        if self._own:
            close_local(self.client)

    # -- data
    def scatter(self, **arrays):
        """Split the inputs with the batch dimension into one shard per worker, each sent to
        its worker once and kept there; any other input given here is sent to every worker.
        The driver keeps its arrays (no copy where they have the compiled dtype) to send a
        shard again if its worker is lost."""
        self._check_names(arrays, "scatter")
        missing = [n for n in self.sharded if n not in arrays]
        if missing:
            raise GraphError(f"graph '{self.fn.graph.name}': scatter() takes every input with the batch "
                             f"dimension {self.batch}; missing {', '.join(missing)}")
        data = {n: np.ascontiguousarray(arrays[n], dtype=self._dtypes[n]) for n in self.sharded}
        lengths = {n: len(a) for n, a in data.items()}
        if len(set(lengths.values())) > 1:
            raise GraphError(f"scatter(): the inputs with the batch dimension differ in length ({lengths})")
        n = lengths[self.sharded[0]]
        workers = self._workers()
        count = max(1, min(len(workers), n))
        starts = [k * n // count for k in range(count + 1)]
        self._data, self._loader, self.size = data, None, n
        self.shards = [Shard(k, starts[k], starts[k + 1] - starts[k], workers[k]) for k in range(count)]
        for shard in self.shards:
            self._place(shard)
        self._broadcast({k: v for k, v in arrays.items() if k not in self.sharded})
        return self

    def load(self, loader, shards, **common):
        """Shards made on the workers: shard k is `loader(k)`, a dict of the inputs with the
        batch dimension (a file's part, a query's), so that the data never passes through
        the driver. A shard lost with its worker is made again by Dask, calling `loader(k)`
        (a top-level function, deterministic). `common`: inputs sent to every worker."""
        self._check_names(common, "load")
        workers = self._workers()
        self._data, self._loader = None, loader
        self.shards = [Shard(k, 0, 0, workers[k % len(workers)]) for k in range(shards)]
        for shard in self.shards:
            self._place(shard)
        described = self.client.gather([self.client.submit(_described, s.future, pure=False) for s in self.shards])
        start = 0
        for shard, (names, size) in zip(self.shards, described):
            if names != sorted(self.sharded):
                raise GraphError(f"load(): loader({shard.index}) gives {', '.join(names)}; the inputs with the "
                                 f"batch dimension are {', '.join(self.sharded)}")
            shard.start, shard.size = start, size
            start += size
        self.size = start
        self._broadcast(common)
        return self

    def _place(self, shard):
        """Send (or have made) one shard on its worker."""
        if self._loader is not None:
            shard.future = self.client.submit(tasks.load_shard, self._loader, shard.index, self._dtypes,
                                              workers=[shard.worker], allow_other_workers=True, pure=False,
                                              key=f"graphc-load-{shard.index}-{uuid.uuid4().hex}")
            return
        rows = slice(shard.start, shard.start + shard.size)
        shard.future = self.client.scatter([{n: a[rows] for n, a in self._data.items()}],
                                           workers=[shard.worker], hash=False)[0]

    def _broadcast(self, common):
        self._common_data = {k: np.asarray(v, dtype=self._dtypes[k]) for k, v in common.items()}
        self._common = self.client.scatter([self._common_data], broadcast=True, hash=False)[0]

    def minibatches(self, batch_size, rng=None, shuffle=True, drop_last=False):
        """One epoch of minibatches drawn from the shards where they are: the same batches
        as gc.data.minibatches(x, ..., batch_size, rng) over the whole data set, each one
        the rows that each shard holds (only their positions travel). Pass each to
        value_and_grad."""
        if batch_size < 1:
            raise ValueError(f"minibatches: batch_size must be >= 1, got {batch_size}")
        order = np.random.default_rng(rng).permutation(self.size) if shuffle else np.arange(self.size)
        stop = self.size - self.size % batch_size if drop_last else self.size
        for start in range(0, stop, batch_size):
            yield self.rows(order[start:start + batch_size])

    def rows(self, indices):
        """The Batch of these examples (positions in the whole data set, in batch order)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            raise IndexError(f"rows: the examples are numbered 0 to {self.size - 1}")
        which = np.searchsorted([s.start for s in self.shards], indices, side="right") - 1
        parts, order = [], []
        for shard in self.shards:
            at = np.flatnonzero(which == shard.index)
            parts.append(indices[at] - shard.start)
            order.append(at)
        return Batch(tuple(parts), np.concatenate(order), len(indices))

    # -- a step
    def value_and_grad(self, rows=None, /, **params):
        """fn.value_and_grad over the whole data set (or the minibatch `rows`), computed on
        the shards and reduced on the workers; `params` are the inputs not scattered."""
        if not self.shards:
            raise GraphError("DataParallel: scatter() or load() the data before a step")
        self._check_names(params, "value_and_grad")
        given = set(params) | set(self.sharded) | set(self._common_data)
        missing = [n for n in self.fn.inputs if n not in given]
        twice = [n for n in params if n in self.sharded or n in self._common_data]
        if missing or twice:
            raise GraphError(f"graph '{self.fn.graph.name}': value_and_grad() "
                             + (f"misses {', '.join(missing)}" if missing else
                                f"was given {', '.join(twice)}, which scatter() sent already"))
        for attempt in itertools.count():
            try:
                start = time.perf_counter()
                value, grads, compute = self._step(rows, params)
                self.stats["steps"] += 1
                self.stats["seconds"] += time.perf_counter() - start
                self.stats["compute"] += compute
                return value, grads
            except (concurrent.futures.CancelledError, KilledWorker):
                if attempt >= self.retries:
                    raise
                self._recover()

    def _step(self, rows, params):
        client, token = self.client, uuid.uuid4().hex
        mean = self.kinds[0] in (MEAN, None)
        total = self.size if rows is None else rows.size
        shared = client.scatter([params], broadcast=True, hash=False)[0]   # once a step, to each worker
        fn = self._shipped()
        jobs = [(s, None if rows is None else rows.parts[s.index]) for s in self.shards]
        jobs = [(s, r) for s, r in jobs if (s.size if r is None else len(r))]
        hosts = {get_address_host(s.worker) for s, _ in jobs}
        # on a machine's first step one shard runs there alone: Numba compiles the module
        # once, and the machine's other processes load what it wrote to Numba's cache
        first = {} if hosts <= self._warm else {get_address_host(s.worker): s.index for s, _ in reversed(jobs)}
        futures = {}
        for shard, part in sorted(jobs, key=lambda job: job[0].index not in first.values()):
            weight = (shard.size if part is None else len(part)) / total if mean else 1.0
            futures[shard.index] = client.submit(
                tasks.shard_step, fn, shard.future, self._common, shared, part, weight, self.kinds,
                key=f"graphc-shard-{token}-{shard.index}", workers=[shard.worker],
                allow_other_workers=True, pure=False)
            if len(futures) == len(first):
                wait(list(futures.values()))
        self._warm |= hosts
        values, grads, compute = self._tree([futures[k] for k in sorted(futures)], token).result()
        return self._outputs(values, rows), tuple(_scalar(g, self.fn.dtype) for g in grads), compute

    def _tree(self, futures, token):
        """The shards' results added pairwise on the workers, level by level."""
        for level in itertools.count():
            if len(futures) == 1:
                return futures[0]
            paired = [self.client.submit(tasks.combine, a, b, self.kinds, key=f"graphc-sum-{token}-{level}-{k}",
                                         pure=False)
                      for k, (a, b) in enumerate(zip(futures[::2], futures[1::2]))]
            futures = paired + futures[len(paired) * 2:]

    def _outputs(self, values, rows):
        out = []
        for value, kind in zip(values, self.kinds):
            if isinstance(kind, Rows):
                value = np.concatenate(value, axis=kind.axis)
                if rows is not None:
                    value = _in_batch_order(value, kind, rows.order)
            out.append(_scalar(value, self.fn.dtype))
        if self._output_kind == "single":
            return out[0]
        return dict(zip(self.fn.outputs, out)) if self._output_kind == "dict" else tuple(out)

    # -- workers and faults
    def _workers(self):
        workers = sorted(self.client.ncores())
        if not workers:
            raise GraphError("DataParallel: the Dask cluster has no workers")
        return workers

    def _shipped(self):
        """The compiled function on every worker: its module's text, sent once."""
        if self._fn is None or self._fn.status != "finished":
            self._fn = self.client.scatter([self.fn], broadcast=True, hash=False)[0]
        return self._fn

    def _recover(self):
        """After a worker was lost: its shards sent again (or made again) on the workers
        that remain, the fewest shards on each first."""
        self.client.wait_for_workers(1)
        workers = self._workers()
        for shard in self.shards:
            if shard.future.status == "finished":   # on a worker that remains (or moved there)
                continue
            load = {w: sum(s.worker == w for s in self.shards) for w in workers}
            shard.worker = min(workers, key=lambda w: (load[w], w))
            self._place(shard)
        if self._common.status != "finished":
            self._common = self.client.scatter([self._common_data], broadcast=True, hash=False)[0]

    def _check_names(self, given, where):
        unknown = [k for k in given if k not in self.fn.inputs]
        if unknown:
            raise GraphError(f"graph '{self.fn.graph.name}': {where}(): unknown input(s) {', '.join(unknown)} "
                             f"(inputs: {', '.join(self.fn.inputs)})")


def _scalar(value, dtype):
    """A 0-d result as fn's own: a Python int or float (float64), a NumPy float32."""
    if np.ndim(value) or not isinstance(value, (np.generic, np.ndarray, float, int)):
        return value
    value = np.asarray(value)[()]
    if value.dtype.kind in "iu":
        return int(value)
    return float(value) if dtype == "float64" else np.dtype(dtype).type(value)


def _described(shard):
    return sorted(shard), tasks.shard_size(shard)


def _in_batch_order(value, kind, order):
    """Rows joined shard by shard, put back in the batch's order (blocks of `inner` entries)."""
    moved = np.moveaxis(value, kind.axis, 0)
    blocks = moved.reshape((len(order), int(kind.inner)) + moved.shape[1:])[np.argsort(order, kind="stable")]
    return np.moveaxis(blocks.reshape(moved.shape), 0, kind.axis)


def _batch_dimension(graph, name):
    """The symbolic dimension that leads the inputs to split: `name`, or the only one."""
    leading = list(dict.fromkeys(n.shape[0] for n in graph.inputs if n.shape and isinstance(n.shape[0], sp.Symbol)))
    if name is not None:
        found = [d for d in leading if str(d) == name]
        if not found:
            raise GraphError(f"graph '{graph.name}': no input has the batch dimension {name!r} first "
                             f"(first dimensions: {', '.join(map(str, leading)) or 'none symbolic'})")
        return found[0]
    if len(leading) != 1:
        raise GraphError(f"graph '{graph.name}': DataParallel splits the inputs along a symbolic first "
                         "dimension; " + (f"there are {', '.join(map(str, leading))}: choose one with batch="
                                          if leading else "no input has one (declare gc.Tensor['B', ...])"))
    return leading[0]
