"""A diagram's picture as Graphviz DOT text, and writing it to a file.

Everything about the look is here: fonts, colours, the wire labels (value in
green above the wire, gradient in red below it), the log-scale colour and width
of tensor wires, the legend, the clusters of scopes. Every label is an HTML-like
label built from escaped text, so no name or number can break the DOT or the
SVG, and every DOT name comes from node indices, so the text is the same bytes
in every process.
"""
from __future__ import annotations

import html
import math
import tempfile
from pathlib import Path

import graphviz
import numpy as np

from ..graph.ir import GraphError, format_shape
from . import thumbnails

FONT = "Helvetica,Arial,sans-serif"
VALUE = "#1a7f37"      # forward values: green
GRAD = "#c62828"       # gradients: red
INK = "#333333"
MUTED = "#777777"
NO_GRAD = "#bbbbbb"
# the gradient's norm on a log scale, vanishing to large
RAMP = ("#c6dbef", "#6baed6", "#3182bd", "#6a51a3", "#cb181d", "#67000d")
SPAN = 2.0             # decades: the colour scale covers at least this much
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": None, ".gv": None}
MISSING_DOT = ("Graphviz's dot program is not installed, so {what} cannot be drawn: "
               "apt-get install graphviz (Debian/Ubuntu), brew install graphviz (macOS), "
               "or write .dot")
SMALL = 4              # tensors of at most this many entries show them all


def esc(text):
    """Text for an HTML-like label: markup escaped, unprintable characters replaced."""
    text = "".join(c if c.isprintable() else "\ufffd" for c in str(text))
    # dot expands \N, \G, \L... even in HTML-like labels: a zero-width space stops it
    return html.escape(text, quote=True).replace("\\", "\\\u200b")


# ---- numbers ---------------------------------------------------------------------------

def number(v, precision):
    """A scalar as on the slides: fixed decimals (0.73, -0.20), scientific when tiny or huge."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v != 0 and not 0.5 * 10 ** -precision <= abs(v) < 1e6:
        return f"{v:.{max(precision - 1, 1)}e}"
    text = f"{v:.{precision}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def significant(v, precision):
    """A summary number: `precision` significant digits (at least 2)."""
    v = float(v)
    return str(v) if not math.isfinite(v) else f"{v:.{max(precision, 2)}g}"


def summary(array, precision):
    """A value on a wire: the number, a short list, or mean and norm of a tensor."""
    array = np.asarray(array)
    if array.ndim == 0:
        return number(array, precision)
    if array.size <= SMALL:
        return "[" + ", ".join(number(v, precision) for v in array.ravel()) + "]"
    size = float(np.sqrt(np.sum(np.square(array))))
    mean = float(np.mean(array))
    if abs(mean) < 1e-9 * size / math.sqrt(array.size):   # rounding noise around 0
        mean = 0.0
    return f"μ={significant(mean, precision)} ‖·‖={significant(size, precision)}"


def norm(array):
    return None if array is None else float(np.sqrt(np.sum(np.square(np.asarray(array)))))


# ---- the colour scale of tensor wires ---------------------------------------------------

class Scale:
    """Gradient norms mapped to colour and width, on a log scale over the picture's range."""

    def __init__(self, norms):
        logs = [math.log10(n) for n in norms if n is not None and n > 0 and math.isfinite(n)]
        self.low, self.high = (min(logs), max(logs)) if logs else (-1.0, 1.0)
        if self.high - self.low < SPAN:   # nearly equal norms look nearly alike
            middle = (self.high + self.low) / 2
            self.low, self.high = middle - SPAN / 2, middle + SPAN / 2

    def position(self, n):
        """Where the norm n lies on the scale, from 0 to 1; None for no gradient."""
        if n is None or math.isnan(n):
            return None
        if n == 0:
            return 0.0
        return min(max((math.log10(n) - self.low) / (self.high - self.low), 0.0), 1.0)

    @staticmethod
    def colour(t):
        x = t * (len(RAMP) - 1)
        k = min(int(x), len(RAMP) - 2)
        a, b = RAMP[k], RAMP[k + 1]
        mix = [round(int(a[i:i + 2], 16) * (k + 1 - x) + int(b[i:i + 2], 16) * (x - k)) for i in (1, 3, 5)]
        return "#" + "".join(f"{c:02x}" for c in mix)

    @staticmethod
    def width(t):
        return 2 + round(4 * t)

    def ticks(self):
        """Powers of ten within the scale (the legend's rows), largest first."""
        lo, hi = math.ceil(self.low - 1e-9), math.floor(self.high + 1e-9)
        step = max(1, math.ceil((hi - lo) / 5))
        return [10.0 ** e for e in range(hi, lo - 1, -step)]


# ---- the DOT text -------------------------------------------------------------------------

class Drawing(graphviz.Digraph):
    """A graphviz.Digraph with the thumbnails its labels name, {name: PNG bytes} (thumbnails.py):
    dot reads them from a temporary folder, and an SVG carries them inline, so that a notebook,
    which pipes the drawing, shows them too."""

    images: dict = {}   # replaced, never mutated: digraph() gives each drawing its own

    def pipe(self, format=None, *args, encoding=None, **kwargs):
        if not self.images:
            return super().pipe(format, *args, encoding=encoding, **kwargs)
        with tempfile.TemporaryDirectory() as folder:
            thumbnails.save(self.images, folder)
            source = self.copy()   # a copy: the DOT text names no temporary folder
            source.attr(imagepath=folder)
            data = graphviz.Digraph.pipe(source, format, *args, **kwargs)
        if (format or self.format) == "svg":
            data = thumbnails.inline(data, self.images)
        return data.decode(encoding) if encoding else data


def digraph(picture, precision=2):
    """The picture as a Drawing, a graphviz.Digraph (DOT text in `.source`); a wire with a
    4-D value shows its first feature maps (thumbnails.py)."""
    tensors = any(len(w.shape) for w in picture.wires)
    styled = tensors and picture.has_values
    magnitudes = {id(w): norm(w.value if w.backward else w.grad) for w in picture.wires}
    scale = Scale(magnitudes.values()) if styled else None
    maps = [thumbnails.thumbnail(w.value, picture.title) if picture.has_values else None
            for w in picture.wires]
    dot = Drawing(
        picture.title,
        graph_attr={"rankdir": "LR", "fontname": FONT, "bgcolor": "white", "nodesep": "0.2",
                    "ranksep": "0.15", "ordering": "in", "labelloc": "t", "labeljust": "l", "forcelabels": "true",
                    "label": _title(picture)},
        node_attr={"fontname": FONT, "fontsize": "14", "color": INK, "fontcolor": INK},
        edge_attr={"fontname": FONT, "color": INK, "arrowsize": "0.6"})
    dot.images = dict(m for m in maps if m is not None)
    styles = [_wire_style(w, scale, magnitudes[id(w)], picture.has_values) for w in picture.wires]
    tree = _Cluster(())
    for box in picture.boxes:
        tree.find(box.where).items.append(("box", box))
    for k, wire in enumerate(picture.wires):
        tree.find(wire.where).items.append(("wire", (k, wire)))
    tree.emit(dot, lambda g, item: _item(g, item, precision, styles, maps))
    for k, wire in enumerate(picture.wires):
        attrs = {"color": styles[k][0], "penwidth": str(styles[k][1])}
        # each wire is two edges through its label, whose middle row is the wire itself
        dot.edge(wire.tail, f"w{k}:bar:w", arrowhead="none", **attrs)
        dot.edge(f"w{k}:bar:e", wire.head, **attrs)
    if scale is not None:
        dot.node("legend", _legend(scale), shape="plaintext", margin="0")
    return dot


def _title(picture):
    view = {"forward": "", "backward": " (backward)", "both": " (forward and backward)"}[picture.view]
    text = f'<B>{esc(picture.title)}</B>{view}'
    if picture.has_values and picture.view == "backward":
        text += (f'   <FONT COLOR="{VALUE}">values</FONT>, '
                 f'<FONT COLOR="{GRAD}">gradients</FONT>')
    elif picture.has_values:
        text += (f'   <FONT COLOR="{VALUE}">value</FONT> above the wire, '
                 f'<FONT COLOR="{GRAD}">gradient</FONT> below')
    return f'<<FONT POINT-SIZE="12" COLOR="{MUTED}">{text}</FONT>>'


class _Cluster:
    """The tree of scopes: nested clusters, in order of first appearance."""

    def __init__(self, path):
        self.path = path
        self.items = []
        self.children = {}

    def find(self, path):
        node = self
        for k in range(len(path)):
            node = node.children.setdefault(path[k], _Cluster(path[:k + 1]))
        return node

    def emit(self, dot, draw, counter=None):
        counter = counter if counter is not None else [0]
        for item in self.items:
            draw(dot, item)
        for child in self.children.values():
            counter[0] += 1
            with dot.subgraph(name=f"cluster_{counter[0]}") as sub:
                sub.attr(label=f'<<B>{esc(child.path[-1])}</B>>', style="rounded,dashed",
                         color="#9aa5b1", fontcolor="#52606d", fontsize="12", labeljust="l")
                child.emit(sub, draw, counter)


_BOX = {
    "input": {"shape": "plaintext", "fontsize": "16"},
    "output": {"shape": "plaintext", "fontsize": "16"},
    "const": {"shape": "plaintext", "fontsize": "12", "fontcolor": MUTED},
    "ref": {"shape": "plaintext", "fontsize": "13", "fontcolor": VALUE},
    "op": {"style": "filled", "fillcolor": "#f6f8fa", "penwidth": "1.2", "margin": "0.04"},
    "backward": {"style": "filled", "fillcolor": "#fdf0ef", "color": GRAD, "penwidth": "1.2", "margin": "0.04"},
    "group": {"shape": "box", "style": "rounded,filled", "fillcolor": "#eef3fb", "color": "#52606d",
              "margin": "0.12,0.06"},
    # a conv or pool layer: one operation, so an op's colours in a box that holds its shapes
    "layer": {"shape": "box", "style": "rounded,filled", "fillcolor": "#f6f8fa", "penwidth": "1.2",
              "margin": "0.12,0.06"},
    "backward_layer": {"shape": "box", "style": "rounded,filled", "fillcolor": "#fdf0ef", "color": GRAD,
                       "penwidth": "1.2", "margin": "0.12,0.06"},
}


def _item(dot, item, precision, styles, maps):
    kind, thing = item
    if kind == "wire":
        k, wire = thing
        dot.node(f"w{k}", _wire_label(wire, precision, *styles[k], maps[k]), shape="plaintext", margin="0")
        return
    box = thing
    attrs = dict(_BOX[box.kind])
    text = esc(box.label)
    if box.kind in ("input", "output"):
        text = f"<B>{text}</B>"
    elif box.kind == "ref":
        text = f"<I>{text}</I>"
    elif box.kind in ("group", "layer", "backward_layer"):
        ops = f'<BR/><FONT POINT-SIZE="10" COLOR="{MUTED}">{esc(box.note)}</FONT>' if box.note else ""
        text = f"<B>{text}</B>{ops}"
    elif box.kind in ("op", "backward"):
        attrs["shape"] = "circle" if len(box.label) <= 4 else "ellipse"
        if len(box.label) <= 2:
            attrs.update(width="0.42", fixedsize="true", fontsize="16")
        if box.note:
            attrs["xlabel"] = f'<<FONT POINT-SIZE="10" COLOR="{GRAD}">{esc(box.note)}</FONT>>'
    dot.node(box.key, f"<{text}>", **attrs)


def _wire_style(wire, scale, magnitude, has_values):
    """Colour and width (points): on tensor pictures they follow the gradient's norm;
    grey where no gradient flows back."""
    if not has_values or not (wire.forward or wire.backward):
        return INK, 1
    if scale is None:
        return (NO_GRAD, 1) if wire.forward and wire.grad is None else (INK, 1)
    t = scale.position(magnitude)
    return (NO_GRAD, 1) if t is None else (Scale.colour(t), Scale.width(t))


def _wire_label(wire, precision, colour, width, image=None):
    """A table whose middle row is the wire itself: the value above it (with its feature
    maps, `image`, for a 4-D value), the gradient below."""
    rows = []
    if wire.name:
        rows.append(f'<FONT POINT-SIZE="11" COLOR="{MUTED}"><I>{esc(wire.name)}</I></FONT>')
    if wire.shape:
        rows.append(f'<FONT POINT-SIZE="10" COLOR="{MUTED}">{esc(format_shape(wire.shape))}</FONT>')
    if image is not None:
        rows.append(f'<IMG SRC="{esc(image[0])}"/>')
    size = ' POINT-SIZE="12"' if wire.shape else ""   # tensor summaries are longer
    if wire.value is not None:
        rows.append(f'<FONT COLOR="{GRAD if wire.backward else VALUE}"{size}>'
                    f'{esc(summary(wire.value, precision))}</FONT>')
    if wire.grad is not None:
        below = f'<FONT COLOR="{GRAD}"{size}>{esc(summary(wire.grad, precision))}</FONT>'
    cells = [f"<TR><TD>{r}</TD></TR>" for r in rows]
    # the wire itself, as thick as the edges that end on its sides; from 2 points up,
    # its side borders cover the point where an edge stops short of the port
    ends = f' BORDER="1" SIDES="LR" COLOR="{colour}"' if width >= 2 else ""
    cells.append(f'<TR><TD PORT="bar" WIDTH="24" HEIGHT="{width}" BGCOLOR="{colour}" '
                 f'CELLPADDING="0"{ends}></TD></TR>')
    if wire.grad is not None:
        cells.append(f"<TR><TD>{below}</TD></TR>")
    body = "".join(cells)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{body}</TABLE>>'


def _legend(scale):
    rows = [f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="11" COLOR="{MUTED}">‖gradient‖, log scale</FONT></TD></TR>']
    for tick in scale.ticks():
        t = scale.position(tick)
        rows.append(f'<TR><TD WIDTH="28" HEIGHT="{Scale.width(t)}" BGCOLOR="{Scale.colour(t)}"></TD>'
                    f'<TD ALIGN="LEFT"><FONT POINT-SIZE="10" COLOR="{MUTED}">{esc(f"{tick:g}")}</FONT></TD></TR>')
    return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="1">{"".join(rows)}</TABLE>>')


# ---- files ---------------------------------------------------------------------------------

def write(dot, path):
    """Write the picture at `path`: .dot/.gv is the DOT text itself (its thumbnails written
    beside it, under the names it gives them: run dot in its folder); .svg (thumbnails
    inline), .png and .pdf are drawn by Graphviz's dot program."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise GraphError(f"cannot write {path}: the suffix must be one of "
                         f"{', '.join(FORMATS)} (.dot needs no Graphviz)")
    fmt = FORMATS[suffix]
    images = getattr(dot, "images", {})
    if fmt is None:
        data = dot.source.encode("utf-8")
    else:
        source = dot.copy()
        source.images = images
        if fmt == "png":
            source.attr(dpi="144")
        try:
            data = source.pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise GraphError(MISSING_DOT.format(what=path.name)) from None
        except graphviz.CalledProcessError as e:
            detail = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
            raise GraphError(f"Graphviz's dot could not draw {path.name}: "
                             f"{detail[-1] if detail else e}") from None
    try:
        path.write_bytes(data)
    except OSError as e:
        raise GraphError(f"cannot write {path}: {e.strerror or e}") from None
    if fmt is None:
        save_thumbnails(dot, path.parent)
    return path


def save_thumbnails(dot, folder):
    """The PNG files the DOT text names, written under `folder` (where `dot` is then run)."""
    try:
        thumbnails.save(getattr(dot, "images", {}), folder)
    except OSError as e:
        raise GraphError(f"cannot write the thumbnails under {folder}: {e.strerror or e}") from None
