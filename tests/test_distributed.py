"""gc.distributed on a LocalCluster of two worker processes: the shards' reduced gradient is
the whole batch's, minibatches drawn on the workers are gc.data.minibatches' batches,
training resumes from a checkpoint on the same curve, a worker killed in a step changes
nothing, a sweep runs its configurations as tasks, and no process is left behind."""
import contextlib
import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import psutil
import pytest
from distributed import WorkerPlugin

import graphc as gc
from graphc.distributed import DataParallel, close_local, local_client, sweep, tasks, train
from graphc.distributed.reduction import plan
from support import ROOT

# the workers cannot import this file: what it gives them (a sweep's training function, a
# plugin) travels by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def net(x: gc.Tensor["B", 6], y: gc.IntTensor["B"], W1: gc.Tensor[8, 6], b1: gc.Tensor[8],
        W2: gc.Tensor[3, 8], b2: gc.Tensor[3]):
    scores = gc.linear(gc.tanh(gc.linear(x, W1, b1)), W2, b2)
    return {"loss": gc.softmax_cross_entropy(scores, y) + 1e-3 * gc.l2(W1), "scores": scores,
            "accuracy": gc.mean(gc.argmax(scores, axis=1) == y)}


NET = gc.graph(net, name="net", wrt=("W1", "b1", "W2", "b2"))


def data(n=203, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    params = {"W1": rng.standard_normal((8, 6)) * 0.5, "b1": np.zeros(8), "W2": rng.standard_normal((3, 8)) * 0.5,
              "b2": np.zeros(3)}
    return x, rng.integers(0, 3, n), params


@contextlib.contextmanager
def cluster(cache):
    """Two worker processes of one thread, writing and reading compiled modules (and Numba's
    cache of them) in the tests' cache; shut down at the end, leaving no process: each worker
    process there is then (a restarted one too) ends, orphaned or not."""
    client = local_client(2, env={"GRAPHC_CACHE_DIR": str(cache)})
    try:
        yield client
    finally:
        workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
        close_local(client)
        _, left = psutil.wait_procs(workers, timeout=10)
        assert left == [], f"processes left behind: {left}"


@pytest.fixture(scope="module")
def client(_session_cache):
    with cluster(_session_cache) as client:
        yield client


def close_enough(a, b, tol=1e-12):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close_enough(a[k], b[k], tol) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(close_enough(x, y, tol) for x, y in zip(a, b))
    return np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=0, atol=tol)


@pytest.mark.parametrize("target", ["numpy", "numba"])
def test_the_shards_reduced_are_the_whole_batch(client, target):
    fn = gc.compile(NET, target=target)
    x, y, params = data()
    whole = fn.value_and_grad(x, y, **params)   # first: on numba this call writes Numba's cache
    dp = DataParallel(fn, client).scatter(x=x, y=y)
    assert [s.size for s in dp.shards] == [101, 102]
    assert dp.reductions == {"loss": "weighted mean over the shards", "scores": "rows joined along axis 0",
                             "accuracy": "weighted mean over the shards"}
    assert close_enough(dp.value_and_grad(**params), whole)
    if target == "numba":   # each worker loaded what this process compiled from Numba's cache
        assert set(client.run(numba_compiled_and_loaded, fn.module.__name__).values()) == {(0, 1)}


def fresh_mappings_for_a_megabyte():
    """How many new memory mappings glibc makes for a 1 MB array: 0 when it comes from the
    heap, 1 when it is mapped afresh (and its pages faulted in and zeroed on first use)."""
    class Mallinfo2(ctypes.Structure):   # made here: a ctypes class does not pickle
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                         "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    before = libc.mallinfo2().hblks
    array = np.empty(1 << 20, np.uint8)
    mapped = libc.mallinfo2().hblks - before
    del array
    return mapped


def test_a_workers_step_temporaries_come_from_the_heap(client):
    """Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which keeps glibc's mmap threshold
    at 128 KiB: every large temporary of a step would be mapped and zeroed afresh. A step
    sets the worker's allocator to keep them."""
    assert set(client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_").values()) == {"65536"}
    before = set(client.run(fresh_mappings_for_a_megabyte).values())
    x, y, params = data()
    dp = DataParallel(gc.compile(NET, target="numpy"), client).scatter(x=x, y=y)
    dp.value_and_grad(**params)
    assert set(client.run(fresh_mappings_for_a_megabyte).values()) == {0}
    assert before in ({1}, {0})   # {0}: a worker set by an earlier test of this module


def test_a_shard_takes_arrays_at_odd_addresses_without_a_new_compile():
    """Dask may hand an array over in its message's buffer, at an odd address or read-only,
    which Numba would type apart and compile the module for again: the step copies it."""
    fn = gc.compile(NET, target="numba")
    x, y, params = data()
    whole = fn.value_and_grad(x, y, **params)
    odd = {}
    for name, value in params.items():
        odd[name] = np.frombuffer(bytearray(value.nbytes + 1), value.dtype, value.size, 1).reshape(value.shape)
        odd[name][...] = value
        odd[name].flags.writeable = False
    assert not any(a.flags.aligned or a.flags.writeable for a in odd.values() if a.size > 1)
    kinds = plan(NET, NET.inputs[0].shape[0])
    parts, grads, _ = tasks.shard_step(fn, {"x": x, "y": y}, {}, odd, None, 1.0, kinds)
    assert np.array_equal(grads[0], whole[1][0]) and parts[0] == whole[0]["loss"]
    assert len(fn.module.__dict__["__value_and_grad"].signatures) == 1


def numba_compiled_and_loaded(module):
    """How many signatures the generated module `module` compiled in this process, and loaded
    from Numba's cache."""
    stats = sys.modules[module].__dict__["__value_and_grad"].stats
    return sum(stats.cache_misses.values()), sum(stats.cache_hits.values())


def test_a_conv_nets_loss_reduces_through_its_whole_batch_products(client):
    """A convolution lays the batch out as one matrix product's columns (B*OH*OW): each
    example's columns stay its own, so the loss is still a mean over the examples."""
    @gc.graph(wrt=("C", "c", "W", "b"))
    def cnn(x: gc.Tensor["B", 1, 6, 6], y: gc.IntTensor["B"], C: gc.Tensor[2, 1, 3, 3], c: gc.Tensor[2],
            W: gc.Tensor[3, 18], b: gc.Tensor[3]):
        h = gc.max_pool2d(gc.relu(gc.conv2d(x, C, c, padding=1)), 2)
        return gc.softmax_cross_entropy(gc.linear(gc.flatten(h), W, b), y)
    fn = gc.compile(cnn)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((41, 1, 6, 6)), rng.integers(0, 3, 41)
    params = {"C": rng.standard_normal((2, 1, 3, 3)), "c": np.zeros(2), "W": rng.standard_normal((3, 18)) * 0.3,
              "b": np.zeros(3)}
    dp = DataParallel(fn, client).scatter(x=x, y=y)
    assert dp.reductions == {"L": "weighted mean over the shards"}
    assert close_enough(dp.value_and_grad(**params), fn.value_and_grad(x, y, **params))


def load_part(k):
    """Shard k of data(), made where it is loaded (a file's part, in a real run)."""
    x, y, _ = data()
    return {"x": x[k * 70:(k + 1) * 70], "y": y[k * 70:(k + 1) * 70]}


def test_shards_a_loader_makes_on_the_workers(client):
    fn = gc.compile(NET)
    x, y, params = data()
    dp = DataParallel(fn, client).load(load_part, 3)
    assert [(s.start, s.size) for s in dp.shards] == [(0, 70), (70, 70), (140, 63)] and dp.size == 203
    assert close_enough(dp.value_and_grad(**params), fn.value_and_grad(x, y, **params))
    batch = dp.rows([202, 5, 71])
    assert close_enough(dp.value_and_grad(batch, **params), fn.value_and_grad(x[[202, 5, 71]], y[[202, 5, 71]],
                                                                              **params))


def test_a_sum_over_the_batch_is_the_shards_sum(client):
    @gc.graph(wrt=("w",))
    def squares(x: gc.Tensor["B", 6], t: gc.Tensor["B"], w: gc.Tensor[6]):
        return 0.5 * gc.sum((x @ w - t) ** 2)
    fn = gc.compile(squares)
    x, _, _ = data()
    t, w = np.sin(x[:, 0]), np.linspace(-1, 1, 6)
    dp = DataParallel(fn, client).scatter(x=x, t=t)
    assert dp.reductions == {"L": "sum over the shards"}
    assert close_enough(dp.value_and_grad(w=w), fn.value_and_grad(x, t, w), 1e-11)


def test_minibatches_are_gc_data_minibatches_drawn_on_the_workers(client):
    fn = gc.compile(NET)
    x, y, params = data()
    dp = DataParallel(fn, client).scatter(x=x, y=y)
    ours = list(dp.minibatches(48, np.random.default_rng(7)))
    theirs = list(gc.data.minibatches(x, y, batch_size=48, rng=np.random.default_rng(7)))
    assert [b.size for b in ours] == [48, 48, 48, 48, 11]
    for batch, (xb, yb) in zip(ours, theirs):   # the rows in the batch's order, each shard's rows
        assert close_enough(dp.value_and_grad(batch, **params), fn.value_and_grad(xb, yb, **params))


def test_a_loss_it_cannot_reduce_exactly_is_refused_by_name():
    def normalised(x: gc.Tensor["B", 6], w: gc.Tensor[6], gamma: gc.Tensor[6], beta: gc.Tensor[6]):
        return gc.mean(gc.batch_norm(x, gamma, beta) @ w)   # each example beside the batch's statistics
    with pytest.raises(gc.GraphError, match=r"output 'L' cannot be computed from shards of the batch: the sub "
                                            r"at .*test_distributed.py:\d+ combines each example with a "
                                            r"statistic of the whole batch"):
        DataParallel(gc.compile(gc.graph(normalised, name="normalised")))

    @gc.graph
    def worst(x: gc.Tensor["B", 6], w: gc.Tensor[6]):
        return gc.max(x @ w)
    with pytest.raises(gc.GraphError, match="the max at .* takes the max over the batch"):
        DataParallel(gc.compile(worst))


def test_training_resumes_from_its_checkpoint_on_the_same_curve(client, tmp_path):
    """A run interrupted in its fifth step resumes from the checkpoint written after its
    fourth (parameters, momentum, step counts) and ends where the uninterrupted run ends,
    which is where plain SGD steps in this process end."""
    fn = gc.compile(NET)
    x, y, start = data()
    dp = DataParallel(fn, client).scatter(x=x, y=y)

    def run(stop=None, path=None):
        def interrupt(step, value):
            if step == stop:
                raise KeyboardInterrupt
        params = {k: v.copy() for k, v in start.items()}
        return train(dp, params, gc.optim.SGD(0.2, momentum=0.9), steps=6, batch_size=64, seed=3,
                     checkpoint=path, every=2, progress=False, callback=interrupt)
    whole = run()
    with pytest.raises(KeyboardInterrupt):
        run(stop=4, path=tmp_path / "run.npz")
    assert os.listdir(tmp_path) == ["run.npz"]   # written atomically: no temporary file left
    resumed = run(path=tmp_path / "run.npz")
    assert resumed.resumed_from == 4 and np.array_equal(resumed.curve, whole.curve)
    assert all(np.array_equal(resumed.params[k], whole.params[k]) for k in start)

    params, opt, curve = {k: v.copy() for k, v in start.items()}, gc.optim.SGD(0.2, momentum=0.9), []
    for step in range(6):
        order = np.random.default_rng([3, step // 4]).permutation(len(x))   # 4 batches of 64 an epoch
        idx = order[step % 4 * 64:][:64]
        value, grads = fn.value_and_grad(x[idx], y[idx], **params)
        opt.step(params, grads)
        curve.append(value["loss"])
    assert np.allclose(whole.curve, curve, rtol=0, atol=1e-12)


class KillOnce(WorkerPlugin):
    """Kills the first worker process that starts a shard's step (once: a file says so)."""

    def __init__(self, marker):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("graphc-shard") and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)


def test_a_worker_killed_in_a_step_changes_nothing(_session_cache, tmp_path):
    fn = gc.compile(NET)
    x, y, params = data()
    with cluster(_session_cache) as client:
        dp = DataParallel(fn, client).scatter(x=x, y=y)
        before = dp.value_and_grad(**params)
        client.register_plugin(KillOnce(str(tmp_path / "killed")))
        after = dp.value_and_grad(**params)   # its shard is lost with it, sent again, the step run again
        assert (tmp_path / "killed").exists()
        assert close_enough(after, before, 0.0)
        assert close_enough(dp.value_and_grad(**params), before, 0.0)


def test_a_sweep_runs_each_configuration_as_a_task(client):
    fn = gc.compile(NET)
    x, y, start = data()

    def train_fn(config):
        rng = np.random.default_rng(config["seed"])
        params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in start.items()}
        opt, curve = gc.optim.SGD(config["lr"]), []
        for _ in range(5):
            value, grads = fn.value_and_grad(x, y, **params)
            opt.step(params, grads)
            curve.append(value["loss"])
        try:
            fn.graph
        except gc.GraphError:   # the function arrived as its module's text: nothing compiled there
            return {"curve": curve, "module": str(fn.path)}
        return {"curve": curve, "module": "compiled with its graph"}

    configs = [{"lr": lr, "seed": seed} for lr in (0.1, 0.5) for seed in (0, 1)]
    runs = sweep(train_fn, configs, client)
    assert [run.config for run in runs] == configs
    assert {run.result["module"] for run in runs} == {str(fn.path)}
    for run in runs:
        assert len(run.curve) == 5 and run.curve == train_fn(run.config)["curve"] and run.seconds > 0
    assert runs[1].curve[-1] != runs[0].curve[-1] and runs[2].curve[-1] < runs[0].curve[-1]


def test_the_readme_data_parallel_example_runs(tmp_path):
    """README's "Data-parallel training on Dask", as a script, at a smaller size."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Data-parallel training on Dask"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    small = code.replace("60_000", "600").replace("steps=100", "steps=3")
    assert small.count("600") and small.count("steps=3")
    (tmp_path / "example.py").write_text(small)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "cache")}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "loss: weighted mean over the shards"
    assert float(lines[1]) < 1e-12 and (tmp_path / "mlp.npz").exists()


def test_the_benchmark_runs_at_a_tiny_size():
    """bench/distributed.py end to end (its figures are bench/RESULTS.md's): each row there."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "distributed.py"), "--target", "numpy",
                           "--examples", "200", "--batch", "32", "--steps", "1", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("one process, no Dask, 1 thread", "one process, no Dask, default threads",
                "Dask, 1 worker process", "Dask, 2 worker processes", "2 workers: ", "GB/s"):
        assert row in done.stdout, done.stdout
