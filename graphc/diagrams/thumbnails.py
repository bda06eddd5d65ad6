"""Thumbnails of feature maps: a wire carrying a 4-D value (N, C, H, W) shows its first
example's first channels as small grey-scale images, in the wire's label.

Graphviz's HTML labels embed an image only from a file (`<IMG SRC="..."/>`), so the DOT
text names each thumbnail by a path relative to the picture, `<title>_maps/<digest>.png`,
the digest of its bytes: the same values give the same names and the same DOT bytes, and
two pictures written beside each other never overwrite each other's maps. `dot.write`
puts the files where `dot` needs them: beside a .dot file (run dot in its folder), in a
temporary folder while drawing .svg (which then carries them inline, as data URIs, so a
notebook shows them too), .png or .pdf (which embed them). The PNG files are written here
with NumPy and zlib: no imaging library.
"""
from __future__ import annotations

import base64
import hashlib
import re
import struct
import zlib
from pathlib import Path

import numpy as np

MAPS = 4                     # channels shown
# a map's longer side in pixels (dot draws a pixel as 3/4 point): small maps are magnified
# (nearest neighbour), large ones thinned
SMALLEST, LARGEST = 48, 64
GAP = 2                      # white pixels between two maps


def thumbnail(value, title):
    """(name in the DOT text, PNG bytes) for a 4-D value, else None."""
    if value is None or np.ndim(value) != 4 or 0 in np.shape(value):
        return None
    data = png(strip(value))
    folder = re.sub(r"[^A-Za-z0-9_-]", "_", title) or "graph"   # a file name in every system
    return f"{folder}_maps/{hashlib.sha256(data).hexdigest()[:16]}.png", data


def strip(value):
    """The first example's first MAPS channels side by side, as 8-bit grey levels; each map
    spans black to white over its own range (a constant map is mid-grey)."""
    maps = np.asarray(value, dtype=np.float64)[0, :MAPS]
    step = max(1, -(-max(maps.shape[1:]) // LARGEST))
    maps = maps[:, ::step, ::step]
    zoom = max(1, round(SMALLEST / max(maps.shape[1:])))
    maps = np.where(np.isfinite(maps), maps, 0.0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    grey = np.divide(maps - low, span, out=np.full_like(maps, 0.5), where=span > 0)
    grey = np.rint(grey * 255).astype(np.uint8).repeat(zoom, axis=1).repeat(zoom, axis=2)
    gap = np.full((grey.shape[1], GAP), 255, dtype=np.uint8)
    return np.hstack([part for m in grey for part in (gap, m)][1:])


def png(pixels):
    """An 8-bit grey-scale PNG of a uint8 array (height, width): the signature, then the
    header, the rows (each after its filter byte, 0: none) deflated, and the end chunk."""
    height, width = pixels.shape
    rows = np.hstack([np.zeros((height, 1), dtype=np.uint8), pixels]).tobytes()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def save(images, folder):
    """Write each thumbnail at its name under `folder`."""
    for name, data in images.items():
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def inline(svg, images):
    """An SVG drawn from the thumbnail files, carrying them as data URIs instead."""
    for name, data in images.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        svg = svg.replace(f'xlink:href="{name}"'.encode(), f'xlink:href="{uri}"'.encode())
    return svg
