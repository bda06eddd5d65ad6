"""An MLP on scikit-learn's handwritten digits (1,797 images of 8x8 pixels, 10 classes):
64 -> 128 -> 10, with batch norm and dropout between the layers, Adam and a cosine
schedule, minibatches of 64. One declaration gives both graphs: `digits_mlp` (training:
batch statistics, dropout on) and `digits_mlp_eval` (inference: the running averages,
dropout off). Needs scikit-learn (pip install 'graphc[examples]').

    python examples/train_digits.py                      # 30 epochs: about 98% test accuracy
    python examples/train_digits.py --epochs 10 --no-bn --dropout 0.1
    python examples/train_digits.py --plot docs/digits_curves.png
"""
import argparse
import time

import numpy as np

import graphc as gc

D, H, K = 64, 128, 10
PARAMS = ("W1", "b1", "gamma1", "beta1", "W2", "b2")


def mlp(x: gc.Tensor["B", D], y: gc.Tensor["B", K], W1: gc.Tensor[H, D], b1: gc.Tensor[H],
        gamma1: gc.Tensor[H], beta1: gc.Tensor[H], W2: gc.Tensor[K, H], b2: gc.Tensor[K],
        *, train=True, bn=True, p=0.2):
    z = gc.linear(x, W1, b1)
    if bn:   # without it gamma1 and beta1 are unused, and their gradients zero
        z = gc.batch_norm(z, gamma1, beta1, train=train)
    h = gc.dropout(gc.relu(z), p, train=train)
    scores = gc.linear(h, W2, b2)
    return {"loss": gc.softmax_cross_entropy(scores, y), "scores": scores}


digits_mlp = gc.graph(mlp, wrt=PARAMS, name="digits_mlp")
digits_mlp_eval = gc.variant(digits_mlp, train=False)


def load(test_ratio=0.2, seed=0):
    """The digits as floats in [0, 1], split into training and test sets (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    return train_test_split(x, y, test_size=test_ratio, random_state=seed, stratify=y)


def train(epochs=30, lr=1e-2, batch_size=64, bn=True, dropout=0.2, seed=0, progress=False, plot=None,
          target="numpy", images=None):
    """Train; returns the test accuracy, the time per epoch and the curves. `images` keeps
    that many of the training and of the test images (a quick run)."""
    x_train, x_test, y_train, y_test = load(seed=seed)
    if images is not None:
        x_train, x_test, y_train, y_test = x_train[:images], x_test[:images], y_train[:images], y_test[:images]
    rng = np.random.default_rng(seed)
    params = {"W1": gc.init.he((H, D), rng), "b1": gc.init.zeros(H),
              "gamma1": gc.init.ones(H), "beta1": gc.init.zeros(H),
              "W2": gc.init.xavier((K, H), rng), "b2": gc.init.zeros(K)}
    train_graph = digits_mlp if (bn, dropout) == (True, 0.2) else \
        gc.graph(mlp, wrt=PARAMS, name="digits_mlp_custom", bn=bn, p=dropout)
    eval_graph = digits_mlp_eval if train_graph is digits_mlp else gc.variant(train_graph, train=False)
    fn, fn_eval = gc.compile(train_graph, target=target), gc.compile(eval_graph, target=target)
    steps_per_epoch = -(-len(x_train) // batch_size)
    opt = gc.optim.Adam(lr=gc.schedules.cosine(lr, period=epochs * steps_per_epoch), target=target)
    running = gc.optim.RunningAverages(fn, momentum=0.9) if bn else None
    y_onehot = gc.data.one_hot(y_train, K)
    history, epoch_times = gc.diagnostics.History(), []

    def evaluate(x, labels):
        extra = running.values if running else {}
        out = fn_eval.forward(x, gc.data.one_hot(labels, K), **params, **extra)
        return gc.diagnostics.accuracy(out["scores"], labels)

    for epoch in gc.diagnostics.progress(range(epochs), desc="digits", disable=not progress):
        start, losses = time.perf_counter(), []
        for xb, yb in gc.data.minibatches(x_train, y_onehot, batch_size=batch_size, rng=rng):
            out, grads = fn.value_and_grad(xb, yb, **params, **gc.data.noise(fn, rng, B=len(xb)))
            opt.step(params, grads)
            if running:
                running.update(out)
            losses.append(out["loss"])
        epoch_times.append(time.perf_counter() - start)
        history.log(epoch, loss=np.mean(losses), train_acc=evaluate(x_train, y_train),
                    test_acc=evaluate(x_test, y_test))
    if plot:
        history.plot(plot, title=f"digits MLP: test accuracy {history.last('test_acc'):.1%}", xlabel="epoch")
    return {"test_acc": history.last("test_acc"), "train_acc": history.last("train_acc"),
            "seconds_per_epoch": float(np.median(epoch_times)), "epoch_times": epoch_times, "history": history}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam's initial learning rate (cosine schedule)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--no-bn", action="store_true", help="no batch norm")
    ap.add_argument("--dropout", type=float, default=0.2, help="dropout probability (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="PNG", help="write the loss and accuracy curves here (needs matplotlib)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--target", choices=sorted(gc.TARGETS), default="numpy",
                    help="where the model and the optimizer run (default numpy)")
    ap.add_argument("--images", type=int, default=None,
                    help="keep this many training and test images (a quick run; default all)")
    args = ap.parse_args(argv)
    result = train(args.epochs, args.lr, args.batch_size, not args.no_bn, args.dropout, args.seed,
                   not args.no_progress, args.plot, args.target, args.images)
    h = result["history"]
    for epoch, loss, tr, te, sec in zip(h.steps("loss"), h["loss"], h["train_acc"], h["test_acc"],
                                        result["epoch_times"]):
        print(f"epoch {epoch + 1:3d}: loss {loss:.4f}, train {tr:.2%}, test {te:.2%} ({1e3 * sec:.1f} ms)")
    print(f"test accuracy {result['test_acc']:.2%}; {1e3 * result['seconds_per_epoch']:.1f} ms per epoch "
          f"(median over {args.epochs} epochs)")
    if args.plot:
        print(f"curves written to {args.plot}")
    return result


if __name__ == "__main__":
    main()
