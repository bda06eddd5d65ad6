"""LeNet-5 (LeCun et al., 1998) on scikit-learn's handwritten digits, each 8x8 image
upsampled to 28x28 (bilinear): conv 6@5x5 (padding 2), max pool 2, conv 16@5x5, max pool 2,
then 400 -> 120 -> 84 -> 10, ReLU between the layers, cross-entropy with the integer labels;
Adam with a cosine schedule, minibatches of 64, each image shifted by up to 2 pixels. The
layers read as in torch.nn.functional: gc.conv2d takes NCHW images and OIHW weights. Needs
scikit-learn (pip install 'graphc[examples]').

    python examples/train_lenet.py                       # 15 epochs: about 98-99% test accuracy
    python examples/train_lenet.py --target numba --plot docs/lenet_curves.png --diagram docs/lenet.png
    python examples/train_lenet.py --target numba --tiered   # train on numpy while Numba compiles
"""
import argparse
import time

import numpy as np

import graphc as gc

SIZE, K = 28, 10
PARAMS = ("C1", "c1", "C2", "c2", "F1", "f1", "F2", "f2", "F3", "f3")


def shapes(size=SIZE):
    """The parameters' shapes for images of size x size: F1 takes the 16 maps left after
    the second pool (5x5 for 28x28 images)."""
    side = (size // 2 - 4) // 2
    return {"C1": (6, 1, 5, 5), "c1": (6,), "C2": (16, 6, 5, 5), "c2": (16,), "F1": (120, 16 * side * side),
            "f1": (120,), "F2": (84, 120), "f2": (84,), "F3": (K, 84), "f3": (K,)}


def make_lenet(size=SIZE):
    """LeNet-5's graph for images of size x size (28: the classic; smaller ones for quick tests)."""
    flat = shapes(size)["F1"][1]

    def lenet(x: gc.Tensor["B", 1, size, size], y: gc.IntTensor["B"],
              C1: gc.Tensor[6, 1, 5, 5], c1: gc.Tensor[6], C2: gc.Tensor[16, 6, 5, 5], c2: gc.Tensor[16],
              F1: gc.Tensor[120, flat], f1: gc.Tensor[120], F2: gc.Tensor[84, 120], f2: gc.Tensor[84],
              F3: gc.Tensor[K, 84], f3: gc.Tensor[K]):
        h1 = gc.max_pool2d(gc.relu(gc.conv2d(x, C1, c1, padding=2)), 2).named("h1")   # (B, 6, 14, 14)
        h2 = gc.max_pool2d(gc.relu(gc.conv2d(h1, C2, c2)), 2).named("h2")             # (B, 16, 5, 5)
        h3 = gc.relu(gc.linear(gc.flatten(h2), F1, f1))
        h4 = gc.relu(gc.linear(h3, F2, f2))
        scores = gc.linear(h4, F3, f3)
        return {"loss": gc.softmax_cross_entropy(scores, y), "scores": scores}   # labels 0..9, as PyTorch's
    return gc.graph(lenet, wrt=PARAMS)


lenet = make_lenet()


def upsample(images, size=SIZE):
    """Bilinear upsampling of square images (n, s, s) to (n, size, size): one matrix each way."""
    s = images.shape[-1]
    at = np.linspace(0, s - 1, size)
    lo = np.minimum(np.floor(at).astype(int), s - 2)
    weights = np.zeros((size, s))
    weights[np.arange(size), lo] = 1 - (at - lo)
    weights[np.arange(size), lo + 1] = at - lo
    return weights @ images @ weights.T


def load(test_ratio=0.2, seed=0, size=SIZE):
    """The digits as (n, 1, size, size) floats in [0, 1], split into training and test sets (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x = upsample(x.reshape(-1, 8, 8) / 16.0, size)[:, None]
    return train_test_split(x, y, test_size=test_ratio, random_state=seed, stratify=y)


def shifted(images, rng, pixels=2):
    """Each image moved by up to `pixels` in each direction (zeros fill in): the data
    augmentation that keeps a small net from learning the training images by heart."""
    n, size = len(images), images.shape[-1]
    padded = np.pad(images, ((0, 0), (0, 0), (pixels, pixels), (pixels, pixels)))
    dy, dx = rng.integers(0, 2 * pixels + 1, size=(2, n))
    rows = dy[:, None] + np.arange(size)
    cols = dx[:, None] + np.arange(size)
    return padded[np.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def init(rng, size=SIZE):
    """He initialisation (fan-in: in channels x kernel area for a convolution), zero biases."""
    return {name: gc.init.he(shape, rng) if len(shape) > 1 else gc.init.zeros(shape[0])
            for name, shape in shapes(size).items()}


def train(epochs=15, lr=2e-3, batch_size=64, seed=0, progress=False, plot=None, target="numpy", images=None,
          size=SIZE, diagram=None, tiered=False):
    """Train; returns the test accuracy, the time per step and the curves. `images` keeps
    that many of the training and of the test images, `size` upsamples the digits to that
    size instead of 28 (quick runs). tiered: on the numba target, the first steps run on the
    numpy target while Numba compiles (gc.compile(..., tiered=True))."""
    x_train, x_test, y_train, y_test = load(seed=seed, size=size)
    if images is not None:
        x_train, x_test, y_train, y_test = x_train[:images], x_test[:images], y_train[:images], y_test[:images]
    rng = np.random.default_rng(seed)
    params = init(rng, size)
    fn = gc.compile(lenet if size == SIZE else make_lenet(size), target=target, tiered=tiered)
    steps = epochs * -(-len(x_train) // batch_size)
    opt = gc.optim.Adam(lr=gc.schedules.cosine(lr, period=steps), target=target)
    history, step_times, served = gc.diagnostics.History(), [], {}

    def accuracy(x, labels):
        scores = np.concatenate([fn.forward(xb, yb, **params)["scores"]
                                 for xb, yb in gc.data.minibatches(x, labels, batch_size=256, shuffle=False)])
        return gc.diagnostics.accuracy(scores, labels)

    for epoch in gc.diagnostics.progress(range(epochs), desc="lenet", disable=not progress):
        losses = []
        for xb, yb in gc.data.minibatches(x_train, y_train, batch_size=batch_size, rng=rng):
            start = time.perf_counter()
            served[fn.serving()] = served.get(fn.serving(), 0) + 1
            out, grads = fn.value_and_grad(shifted(xb, rng), yb, **params)
            opt.step(params, grads)
            step_times.append(time.perf_counter() - start)
            losses.append(out["loss"])
        history.log(epoch, loss=np.mean(losses), train_acc=accuracy(x_train, y_train),
                    test_acc=accuracy(x_test, y_test))
    if plot:
        history.plot(plot, title=f"LeNet-5 on digits: test accuracy {history.last('test_acc'):.1%}", xlabel="epoch")
    if diagram:   # the trained net on the first test image: each layer a box, feature maps on its wires
        gc.render(fn.graph, values={"x": x_test[:1], "y": y_test[:1], **gc.to_host(params)}, path=diagram)
    return {"test_acc": history.last("test_acc"), "train_acc": history.last("train_acc"), "history": history,
            "ms_per_step": 1e3 * float(np.median(step_times)), "params": params, "x_test": x_test,
            "steps_on": served}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam's initial learning rate (cosine schedule)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="PNG", help="write the loss and accuracy curves here (needs matplotlib)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--target", choices=sorted(gc.TARGETS), default="numpy",
                    help="where the model and the optimizer run (default numpy)")
    ap.add_argument("--tiered", action="store_true",
                    help="with --target numba: train on the numpy target while Numba compiles, then switch")
    ap.add_argument("--images", type=int, default=None,
                    help="keep this many training and test images (a quick run; default all)")
    ap.add_argument("--size", type=int, default=SIZE, help="upsample the 8x8 digits to this size (default 28)")
    ap.add_argument("--diagram", metavar="FILE", help="draw the trained net on the first test image (.png, .svg, "
                                                      ".pdf need Graphviz's dot; .dot needs nothing)")
    args = ap.parse_args(argv)
    result = train(args.epochs, args.lr, args.batch_size, args.seed, not args.no_progress, args.plot,
                   args.target, args.images, args.size, args.diagram, args.tiered)
    h = result["history"]
    for epoch, loss, tr, te in zip(h.steps("loss"), h["loss"], h["train_acc"], h["test_acc"]):
        print(f"epoch {epoch + 1:3d}: loss {loss:.4f}, train {tr:.2%}, test {te:.2%}")
    print(f"test accuracy {result['test_acc']:.2%}; {result['ms_per_step']:.1f} ms per step of "
          f"{args.batch_size} images (median)")
    if args.tiered:
        print("steps run on each target: " + ", ".join(f"{t} {n}" for t, n in result["steps_on"].items()))
    for what, path in (("curves", args.plot), ("diagram", args.diagram)):
        if path:
            print(f"{what} written to {path}")
    return result


if __name__ == "__main__":
    main()
