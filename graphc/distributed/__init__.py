"""Beyond one machine: data-parallel training and sweeps on Dask's distributed scheduler
(`pip install 'graphc[distributed]'`), the same code on a laptop's LocalCluster and on a
cluster that dask-jobqueue or Kubernetes starts.

    dp = gc.distributed.DataParallel(fn)             # client=None: a LocalCluster, a worker per core
    dp.scatter(x=x_train, y=y_train)                  # one shard per worker, kept there
    value, grads = dp.value_and_grad(**params)        # the whole batch's, reduced on the workers
    run = gc.distributed.train(dp, params, gc.optim.Adam(1e-3), steps=500, batch_size=4096,
                               checkpoint="run.npz")
    runs = gc.distributed.sweep(train_fn, configs)    # independent runs, one task each

parallel.py (DataParallel: shards, a step, the reduction tree, faults), reduction.py (how each
output is reduced, decided from the graph), tasks.py (what runs on the workers), training.py
(train, checkpoints), sweep.py. A compiled function travels as its module's text
(graphc/runtime.py), so workers need graphc and the target's runtime, never the model's code.
"""
import importlib.util

if importlib.util.find_spec("distributed") is None:
    raise ImportError("gc.distributed runs on Dask's distributed scheduler, which is not installed: "
                      "pip install 'graphc[distributed]'")

from .parallel import Batch, DataParallel, close_local, local_client   # noqa: E402
from .sweep import Run, sweep   # noqa: E402
from .training import Training, load_checkpoint, save_checkpoint, train   # noqa: E402

__all__ = ["Batch", "DataParallel", "Run", "Training", "close_local", "load_checkpoint", "local_client",
           "save_checkpoint", "sweep", "train"]
