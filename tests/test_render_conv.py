"""Diagrams of convolutional nets: each conv or pool layer one box with its shapes, and
thumbnails of the feature maps on the 4-D wires (PNG files the DOT names, SVG inline)."""
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.diagrams import diagram, groups, thumbnails
from graphc.diagrams.evaluate import Evaluation
from graphc.graph import conv

HAS_DOT = subprocess.run(["which", "dot"], capture_output=True).returncode == 0
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot program is not installed")

CNN = '''
import graphc as gc

@gc.graph(wrt=("k", "kb", "W", "c"))
def cnn(x: gc.Tensor["B", 1, 6, 6], y: gc.Tensor["B", 3], k: gc.Tensor[2, 1, 3, 3], kb: gc.Tensor[2],
        W: gc.Tensor[3, 18], c: gc.Tensor[3]):
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, k, kb, padding=1)), 2)
    return gc.softmax_cross_entropy(gc.linear(gc.flatten(h), W, c), y)
'''
namespace = {}
exec(compile(CNN, "cnn_model.py", "exec"), namespace)   # noqa: S102 (the CLI test's model file, traced here too)
cnn = namespace["cnn"]
CONV = "conv2d 3x3, stride 1, pad 1"
POOL = "max_pool2d 2x2, stride 2"


def cnn_values(seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((2, 1, 6, 6)), "y": np.eye(3)[[0, 2]], "k": rng.standard_normal((2, 1, 3, 3)),
            "kb": rng.standard_normal(2), "W": rng.standard_normal((3, 18)), "c": rng.standard_normal(3)}


def labels(source):
    """Each box's bold label with its small print: [(label, note)]."""
    return re.findall(r"<B>([^<]*)</B><BR/><FONT[^>]*>([^<]*)</FONT>", source)


def read_png(data):
    """(width, height, grey levels) of an 8-bit grey-scale PNG with one IDAT, unfiltered rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = {}, 8
    while at < len(data):
        (size,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + size]
        assert struct.unpack(">I", data[at + 8 + size:at + 12 + size])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        at += 12 + size
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0) and list(chunks)[-1] == b"IEND"
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()   # filter 0 on every row
    return width, height, rows[:, 1:]


# ---- one box per layer ---------------------------------------------------------------

def test_each_layer_is_one_box_with_its_shapes():
    forward = gc.render(cnn, cnn_values()).source
    assert labels(forward) == [(CONV, "(B, 1, 6, 6) → (B, 2, 6, 6)"), (POOL, "(B, 2, 6, 6) → (B, 2, 3, 3)")]
    assert "im2col" not in forward and "patches" not in forward
    backward = gc.render(cnn, cnn_values(), show="backward").source
    assert labels(backward) == [(POOL, "backward (B, 2, 3, 3) → (B, 2, 6, 6)"),
                                (CONV, "backward (B, 2, 6, 6) → (B, 1, 6, 6)")]
    assert "col2im" not in backward and "cluster" not in backward
    assert len(labels(gc.render(cnn, cnn_values(), show="both").source)) == 4
    assert labels(gc.render(cnn).source)[:1] == [(CONV, "(B, 1, 6, 6) → (B, 2, 6, 6)")]   # without values


def test_a_layers_wires_carry_its_inputs_and_output():
    ev = Evaluation(cnn, cnn_values(), wrt=cnn.input_names)
    picture = diagram.build(cnn, ev)
    box = next(b for b in picture.boxes if b.label == CONV)
    into = {w.source.name: w for w in picture.wires if w.head == box.key}
    assert set(into) == {"x", "k", "kb"}
    for name, wire in into.items():
        node = cnn.input(name)
        np.testing.assert_array_equal(wire.value, ev.values[node])
        np.testing.assert_allclose(wire.grad, ev.grad(node))
    (out,) = [w for w in picture.wires if w.tail == box.key]
    assert out.source.scope[-1].output   # the node conv2d returned
    np.testing.assert_array_equal(out.value, ev.values[out.source])
    np.testing.assert_allclose(out.grad, ev.grad(out.source))


def test_layer_labels_for_conv1d_avg_pool_and_scopes():
    @gc.graph
    def net(x: gc.Tensor["B", 2, 8], v: gc.Tensor[3, 2, 3], z: gc.Tensor["B", 1, 5, 5]):
        with gc.scope("block"):
            h = gc.relu(gc.conv1d(x, v, stride=2))
        return gc.sum(h) + gc.sum(gc.avg_pool2d(z, 3, stride=1, padding=1))

    source = gc.render(net).source
    assert sorted(labels(source)) == [("avg_pool2d 3x3, stride 1, pad 1", "(B, 1, 5, 5) → (B, 1, 5, 5)"),
                                      ("conv1d 3, stride 2", "(B, 2, 8) → (B, 3, 3)")]
    assert "cluster" in source   # the scope around the conv1d box
    collapsed = gc.render(net, collapse=True).source
    assert ("block", "conv1d 3, stride 2 relu") in labels(collapsed)


def test_each_call_of_an_inlined_layer_is_a_box_of_its_own():
    @gc.graph
    def block(x: gc.Tensor["B", 2, 4, 4], w: gc.Tensor[2, 2, 3, 3], b: gc.Tensor[2]):
        return gc.conv2d(x, w, b, padding=1)

    @gc.graph
    def net(x: gc.Tensor["B", 2, 4, 4], z: gc.Tensor["B", 2, 4, 4], w: gc.Tensor[2, 2, 3, 3],
            v: gc.Tensor[2, 2, 3, 3], b: gc.Tensor[2]):
        return gc.sum(block(block(x, w, b), v, b)) + gc.sum(block(z, w, b))   # chained, and sharing w and b

    assert [label for label, _ in labels(gc.render(net).source)] == ["conv2d 3x3, stride 1, pad 1"] * 3
    scopes = groups.layer_scopes(net.nodes)
    assert len({id(s[-1]) for s in scopes.values() if s}) == 3


def test_marking_layers_changes_no_generated_code(monkeypatch, tmp_path):
    marked = gc.compile(cnn, path=tmp_path / "marked.py").source
    monkeypatch.setattr(conv, "_as_layer", lambda start, x, y, label: y)
    plain = {}
    exec(compile(CNN, "cnn_model.py", "exec"), plain)   # noqa: S102
    assert all(not n.scope for n in plain["cnn"].nodes)
    assert gc.compile(plain["cnn"], path=tmp_path / "plain.py").source == marked


# ---- thumbnails ------------------------------------------------------------------------

def test_png_encoder_round_trips():
    pixels = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    width, height, grey = read_png(thumbnails.png(pixels))
    assert (width, height) == (7, 5)
    np.testing.assert_array_equal(grey, pixels)


def test_strip_shows_the_first_example_first_channels_each_on_its_own_range():
    value = np.zeros((3, 6, 2, 3))
    value[0, 0] = [[0, 1, 2], [3, 4, 5]]
    value[0, 1] = 7.0                      # constant: mid-grey
    value[0, 2, 0, 0] = np.nan             # not finite: counted as 0
    strip = thumbnails.strip(value)
    zoom = round(thumbnails.SMALLEST / 3)
    assert strip.shape == (2 * zoom, 4 * 3 * zoom + 3 * thumbnails.GAP)   # 4 of the 6 channels
    first = strip[::zoom, :3 * zoom:zoom]
    np.testing.assert_array_equal(first, np.rint(np.array([[0, 1, 2], [3, 4, 5]]) / 5 * 255))
    assert (strip[:, 3 * zoom:3 * zoom + thumbnails.GAP] == 255).all()
    assert (strip[:, 3 * zoom + thumbnails.GAP:6 * zoom + thumbnails.GAP] == 128).all()
    assert thumbnails.thumbnail(np.zeros((2, 3)), "g") is None and thumbnails.thumbnail(None, "g") is None


def test_dot_output_names_thumbnails_written_beside_it(tmp_path):
    values = cnn_values()
    gc.render(cnn, values, tmp_path / "cnn.dot")
    text = (tmp_path / "cnn.dot").read_text()
    names = re.findall(r'<IMG SRC="([^"]+)"/>', text)
    assert len(names) == 5                 # x, k, the conv's output, relu's, the pool's: the 4-D wires
    assert all(re.fullmatch(r"cnn_maps/[0-9a-f]{16}\.png", n) for n in names)
    sizes = [read_png((tmp_path / n).read_bytes())[:2] for n in names]
    side = thumbnails.SMALLEST   # 6x6 and 3x3 maps, magnified to 48 pixels
    assert sizes == [(side, side), (side, side), (2 * side + 2, side), (2 * side + 2, side), (2 * side + 2, side)]
    _, _, x = read_png((tmp_path / names[0]).read_bytes())
    first = values["x"][0, 0]
    np.testing.assert_array_equal(x[::8, ::8], np.rint((first - first.min()) / np.ptp(first) * 255))
    assert "IMG" not in gc.render(cnn).source   # no values, no maps


def test_same_graph_and_values_give_the_same_bytes(tmp_path):
    for name in ("a.dot", "b.dot"):
        gc.render(cnn, cnn_values(), tmp_path / name)
    assert (tmp_path / "a.dot").read_bytes() == (tmp_path / "b.dot").read_bytes()   # names: the maps' digests
    again = gc.render(cnn, cnn_values()).source
    assert again == (tmp_path / "a.dot").read_text()
    assert gc.render(cnn, cnn_values(seed=1)).source != again


@needs_dot
def test_svg_carries_its_thumbnails_and_png_embeds_them(tmp_path):
    gc.render(cnn, cnn_values(), tmp_path / "cnn.svg")
    gc.render(cnn, cnn_values(), tmp_path / "again.svg")
    svg = (tmp_path / "cnn.svg").read_bytes()
    assert svg == (tmp_path / "again.svg").read_bytes()
    assert svg.count(b'xlink:href="data:image/png;base64,') == 5 and b"_maps/" not in svg
    assert not (tmp_path / "cnn_maps").exists()   # only a .dot needs files beside it
    digraph = gc.render(cnn, cnn_values(), tmp_path / "cnn.png")
    assert (tmp_path / "cnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert digraph._repr_image_svg_xml().count("data:image/png") == 5   # what a notebook shows


@needs_dot
def test_cli_renders_a_conv_net(tmp_path):
    (tmp_path / "model.py").write_text(CNN)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / ".cache")}
    r = subprocess.run([sys.executable, "-m", "graphc", "render", "model.py", "--dim", "B=2", "-o", "cnn.svg"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    svg = (tmp_path / "cnn.svg").read_text()
    assert CONV in svg and POOL in svg and "(B, 1, 6, 6) → (B, 2, 6, 6)" in svg
    assert svg.count("data:image/png") == 5


@needs_dot
def test_cli_dot_text_on_stdout_finds_its_thumbnails(tmp_path):
    """`-o -` prints the DOT text; the thumbnails it names are written where it is run, so
    that `graphc render ... -o - | dot -Tpng` draws them."""
    (tmp_path / "model.py").write_text(CNN)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / ".cache")}
    r = subprocess.run([sys.executable, "-m", "graphc", "render", "model.py", "--dim", "B=2", "-o", "-"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = re.findall(r'SRC="([^"]+\.png)"', r.stdout)
    assert len(set(names)) == 5 and all((tmp_path / n).is_file() for n in names)
    assert "thumbnails" in r.stderr and "cnn_maps/" in r.stderr
    drawn = subprocess.run(["dot", "-Tpng"], input=r.stdout.encode(), cwd=tmp_path, capture_output=True)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout[:4] == b"\x89PNG"
