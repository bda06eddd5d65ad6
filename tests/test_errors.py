"""Bad input gets a clear error naming the graph, op, shapes and model line."""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT

import graphc as gc


def this_line(offset=0):
    return inspect.currentframe().f_back.f_lineno + offset


def test_matmul_shape_mismatch_names_graph_op_shapes_and_line():
    with pytest.raises(gc.GraphError) as err:
        @gc.graph
        def layer(W: gc.Tensor[256, 784], x: gc.Tensor[10]):
            return gc.sum(W @ x)   # the line the error must name
    line = this_line(-1)
    message = str(err.value)
    assert "graph 'layer'" in message and "matmul" in message
    assert "(256, 784)" in message and "(10,)" in message
    assert f"{__file__}:{line}" in message


def test_symbolic_dimension_mismatch():
    with pytest.raises(gc.GraphError, match=r"test_errors.py:\d+: graph 'layer': matmul with input shapes x \(B, 784\), W \(10, 256\)"):
        @gc.graph
        def layer(x: gc.Tensor["B", 784], W: gc.Tensor[10, 256]):
            return x @ W.T.T


def test_broadcast_mismatch():
    with pytest.raises(gc.GraphError, match=r"graph 'f': add with input shapes a \(3,\), b \(4,\): .*broadcast"):
        @gc.graph
        def f(a: gc.Tensor[3], b: gc.Tensor[4]):
            return a + b


def test_non_scalar_output_needs_grad_out():
    @gc.graph
    def relu(x: gc.Tensor[4]):
        return gc.relu(x)
    fn = gc.compile(relu)
    with pytest.raises(gc.GraphError, match=r"graph 'relu': backward\(\): output 'L' has shape \(4,\).*grad_out"):
        fn.backward(np.ones(4))
    with pytest.raises(gc.GraphError, match="grad_out"):
        fn.value_and_grad(np.ones(4))
    with pytest.raises(gc.GraphError, match="scalar first output"):
        gc.grad(relu)


def test_unknown_wrt():
    @gc.graph
    def f(x, y):
        return x * y
    with pytest.raises(gc.GraphError, match=r"graph 'f': cannot differentiate with respect to 'z'.*inputs: x, y"):
        gc.compile(f, wrt=["z"])
    with pytest.raises(gc.GraphError, match="'w'"):
        @gc.graph(wrt=("w",))
        def g(x):
            return x


def test_wrong_argument_shapes_and_names_at_call_time():
    @gc.graph
    def f(x: gc.Tensor["B", 3], W: gc.Tensor[2, 3]):
        return gc.sum(x @ W.T)
    fn = gc.compile(f)
    with pytest.raises(gc.GraphError, match=r"input 'W' expects shape \(2, 3\), got \(3, 2\)"):
        fn.forward(np.ones((4, 3)), np.ones((3, 2)))
    with pytest.raises(gc.GraphError, match=r"missing input\(s\) W"):
        fn.forward(np.ones((4, 3)))
    with pytest.raises(gc.GraphError, match="unexpected input 'w'"):
        fn.forward(np.ones((4, 3)), w=np.ones((2, 3)))

    @gc.graph
    def g(x: gc.Tensor["B", 3], y: gc.Tensor["B"]):
        return gc.sum(x) + gc.sum(y)
    with pytest.raises(gc.GraphError, match=r"input 'y' expects shape \(B,\), got \(5,\) \(with B=4\)"):
        gc.compile(g).forward(np.ones((4, 3)), np.ones(5))


def test_python_control_flow_on_traced_values():
    with pytest.raises(gc.GraphError, match="graphs are static.*gc.where"):
        @gc.graph
        def f(x):
            return x if x > 0 else -x


def test_bad_annotations_and_outputs():
    with pytest.raises(gc.GraphError, match="annotated"):
        @gc.graph
        def f(x: int):
            return x
    with pytest.raises(gc.GraphError, match="not a value computed from the inputs"):
        @gc.graph
        def g(x):
            return 3.0
    with pytest.raises(gc.GraphError, match=r"\*args"):
        @gc.graph
        def h(*xs):
            return xs[0]


def test_bad_compile_options():
    @gc.graph
    def f(x):
        return x * x
    with pytest.raises(gc.GraphError, match="unknown target 'fortran'"):
        gc.compile(f, target="fortran")
    with pytest.raises(gc.GraphError, match="unknown dtype 'int8'"):
        gc.compile(f, dtype="int8")
    with pytest.raises(gc.GraphError, match="needs a graph"):
        gc.compile(lambda x: x)


def test_static_index_errors():
    with pytest.raises(gc.GraphError, match=r"getitem with input shapes x \(3,\): index 5 is out of range"):
        @gc.graph
        def f(x: gc.Tensor[3]):
            return x[5]
    with pytest.raises(gc.GraphError, match="symbolic dimension B"):
        @gc.graph
        def g(x: gc.Tensor["B", 3]):
            return gc.sum(x[:2])
    with pytest.raises(gc.GraphError, match="cannot reshape"):
        @gc.graph
        def h(x: gc.Tensor[6]):
            return gc.sum(x.reshape(4, 2))


def test_an_output_cannot_take_the_name_of_a_named_value():
    with pytest.raises(gc.GraphError, match="output 'h' has the name of another value"):
        @gc.graph
        def f(x, y):
            h = (x * y).named("h")
            return {"L": h * gc.sin(x), "h": gc.sin(x)}


def test_an_elementwise_formula_must_be_sympy():
    import math
    with pytest.raises(gc.GraphError, match=r"op 'bad': .*SymPy expressions .*sp.exp, not math.exp"):
        gc.elementwise("bad", lambda x: math.exp(x))


def test_value_and_grad_of_a_scalar_takes_a_seed():
    @gc.graph
    def f(x, y):
        return gc.sin(x) * y
    fn = gc.compile(f)
    value, grads = fn.value_and_grad(1.0, 2.0, grad_out=3.0)
    assert value == pytest.approx(2 * np.sin(1.0))
    assert grads == pytest.approx((3 * 2 * np.cos(1.0), 3 * np.sin(1.0)))


def test_an_error_in_a_helper_names_its_line_the_model_s_line_the_scope_and_the_input(tmp_path):
    """The shape error is raised in a helper the model calls: the message names the helper's
    line, the model's line that called it, the gc.scope and the parameter involved."""
    model = tmp_path / "model.py"
    model.write_text(
        "import graphc as gc\n"
        "\n"
        "def layer(h, W, b):\n"
        "    return gc.relu(h @ W.T + b)\n"
        "\n"
        "@gc.graph\n"
        "def net(x: gc.Tensor['B', 4], W1: gc.Tensor[8, 4], b1: gc.Tensor[8], W2: gc.Tensor[3, 5], b2: gc.Tensor[3]):\n"
        "    with gc.scope('layer1'):\n"
        "        h = layer(x, W1, b1)\n"
        "    with gc.scope('layer2'):\n"
        "        h = layer(h, W2, b2)\n"
        "    return gc.sum(h)\n")
    r = subprocess.run([sys.executable, "-m", "graphc", "compile", str(model), "-o", "-"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2
    assert r.stderr == (f"graphc: error: {model}:4: graph 'net' (in layer2, called from {model}:11): matmul "
                        "with input shapes (B, 8), W2.T (5, 3): the contracted dimensions differ: 8 (last of the "
                        "left) vs 5 (first of the right)\n")
