"""The compile cache: a graph compiled before is imported, not generated again, and
anything that changes the generated text changes the key."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import compiler
from graphc.codegen import cache, fingerprint
from graphc.graph.structural import with_vjp


def traced(constant=2.0, width=3, name="model", wrt=("W",)):
    """A fresh trace of a small model, as a new process would make it."""
    def model(x: gc.Tensor["B", width], W: gc.Tensor[2, width]):
        return gc.mean(gc.sigmoid(x @ W.T) * constant)
    model.__name__ = name
    return gc.graph(model, wrt=wrt)


def key(graph, target="numpy", dtype="float64", blas=None):
    return fingerprint.key(graph, list(graph.default_wrt()), target, dtype, blas)


def no_generation(monkeypatch):
    def fail(*args):
        raise AssertionError("the module was generated again")
    monkeypatch.setattr(compiler, "generate", fail)


def test_a_graph_compiled_before_is_imported_not_generated(target, monkeypatch):
    first = gc.compile(traced(), target=target)
    no_generation(monkeypatch)
    again = gc.compile(traced(), target=target)   # a new trace of the same model
    assert again.path == first.path and again.source == first.source
    x, W = np.linspace(-1, 1, 12).reshape(4, 3), np.full((2, 3), 0.3)
    np.testing.assert_allclose(again.value_and_grad(x, W)[1][0], first.value_and_grad(x, W)[1][0])


def test_a_changed_model_is_generated_anew():
    gc.compile(traced(constant=2.0))
    changed = gc.compile(traced(constant=3.0))
    assert "3.0" in changed.source and "2.0" not in changed.source


@pytest.mark.parametrize("change", [
    dict(constant=2.5), dict(width=4), dict(name="other"), dict(wrt=()),
])
def test_what_changes_the_graph_changes_the_key(change):
    assert key(traced(**change)) != key(traced())
    assert key(traced(**change)) == key(traced(**change))


def test_target_dtype_and_blas_are_part_of_the_key():
    g = traced()
    keys = {key(g), key(g, target="numba"), key(g, dtype="float32"),
            key(g, target="numba", blas="mkl"), key(g, target="numba", blas="scipy")}
    assert len(keys) == 5


def test_the_model_line_is_part_of_the_key():
    """Every node's model line is in the key, whether or not the text shows it: an edited
    model file never finds a module written for its older version."""
    def model_from(text):
        scope = {"gc": gc}
        exec(compile(textwrap.dedent(text), "model.py", "exec"), scope)
        return gc.graph(scope["model"])
    same_def_line = [model_from("""
        def model(x: gc.Tensor[3]):
            return gc.sum(x * x)
    """), model_from("""
        def model(x: gc.Tensor[3]):

            return gc.sum(x * x)
    """)]
    assert same_def_line[0].source == same_def_line[1].source
    assert key(same_def_line[0]) != key(same_def_line[1])


def test_a_users_op_is_keyed_by_its_formula():
    def with_op(formula):
        op = gc.elementwise("squash", formula, register_op=False)

        @gc.graph
        def model(x: gc.Tensor[3]):
            return gc.sum(op(x))
        return model
    assert key(with_op(lambda x: x / (1 + abs(x)))) != key(with_op(lambda x: x / (2 + abs(x))))


def test_a_python_gradient_rule_cannot_be_keyed_and_is_always_generated(monkeypatch, tmp_path):
    """A user's function can change without anything the key sees changing."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "own"))   # a cache no other test wrote keys to
    def model(x: gc.Tensor[3]):
        y = x * x
        return gc.sum(with_vjp(y, (x,), lambda g, x: (g * 2 * x,), "square"))
    assert key(gc.graph(model)) is None
    fn = gc.compile(gc.graph(model))
    assert fn.value_and_grad(np.array([1.0, 2.0, 3.0]))[1][0] == pytest.approx([2.0, 4.0, 6.0])
    assert not (cache.cache_dir() / "keys").exists()


def test_an_edited_module_is_written_again():
    fn = gc.compile(traced())
    fn.path.write_text(fn.source.replace("def forward", "def edited_forward"))
    again = gc.compile(traced())
    assert again.path == fn.path and fn.path.read_text() == fn.source == again.source


def test_a_missing_module_is_written_again():
    fn = gc.compile(traced())
    os.remove(fn.path)
    assert gc.compile(traced()).source == fn.source and fn.path.read_text() == fn.source


def test_an_explicit_path_always_writes_its_own_module(tmp_path):
    gc.compile(traced())
    fn = gc.compile(traced(), path=tmp_path / "mine.py")
    assert fn.path == tmp_path / "mine.py" and fn.path.read_text() == fn.source


def test_graphcs_own_files_are_part_of_the_key(tmp_path, monkeypatch):
    """An edit of any code or template file of the package, in any of its folders, gives a
    new digest, and the digest is part of every key."""
    assert fingerprint._PACKAGE == Path(gc.__file__).resolve().parent   # the whole package
    (tmp_path / "graph").mkdir()
    (tmp_path / "backends" / "numba").mkdir(parents=True)
    (tmp_path / "graph" / "ops.py").write_text("x = 1\n")
    (tmp_path / "backends" / "numba" / "module.py.j2").write_text("{{ x }}\n")
    monkeypatch.setattr(fingerprint, "_PACKAGE", tmp_path)
    digest = fingerprint.package_version.__wrapped__   # uncached: read the files each time
    before = digest()
    (tmp_path / "notes.txt").write_text("neither code nor a template")
    assert digest() == before
    (tmp_path / "backends" / "numba" / "module.py.j2").write_text("{{ y }}\n")
    after_template = digest()
    (tmp_path / "graph" / "ops.py").write_text("x = 2\n")
    assert len({before, after_template, digest()}) == 3
    g, keys = traced(), set()
    for version in (before, after_template):
        monkeypatch.setattr(fingerprint, "package_version", lambda: version)
        keys.add(key(g))
    assert len(keys) == 2


def test_a_second_process_imports_neither_jinja2_nor_generates(tmp_path):
    """What a training script pays the second time it starts: tracing, the key, the import."""
    model = tmp_path / "model.py"
    model.write_text(textwrap.dedent("""
        import graphc as gc

        @gc.graph
        def model(x: gc.Tensor["B", 3], W: gc.Tensor[2, 3]):
            return gc.mean(gc.tanh(x @ W.T))
    """))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np, graphc as gc, model
        fn = gc.compile(model.model)
        value, grads = fn.value_and_grad(np.ones((2, 3)), np.full((2, 3), 0.5))
        print(round(float(value), 6), "jinja2" in sys.modules, fn.path)
    """)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env=env).stdout.split() for _ in range(2)]
    assert runs[0][0] == runs[1][0] == str(round(float(np.tanh(1.5)), 6))
    assert runs[0][1] == "True" and runs[1][1] == "False"   # the first wrote, the second imported
    assert runs[0][2] == runs[1][2]
