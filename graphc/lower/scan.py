"""How a scan's loop is printed, on every target: the step is a function of the module
(Lowering.helper), called once a step from a `for` loop.

    h = h0                                # scan: cell at each of the 20 steps, the carry h
    hs = np.empty((20, B, 16), dtype=np.float64)  # scan: cell's y at each step
    s5 = np.empty((20, B, 16), dtype=np.float64)  # scan: the carry entering each step (backward pass)
    for __t in range(20):                 # scan: cell
        s5[__t] = h
        h, hs[__t] = __step_cell(h, xs[__t], W, U, b)

Only the siblings the function reads are kept (graph/scan.py: a forward pass does not
keep the carries for a backward one); the first of them prints the loop, the others nothing.
"""
from __future__ import annotations

from ..graph.ops import sibling_key
from .program import commented


def store(stack, t, value, shape, ctx):
    """`stack[t] = value`, the line that stores a step's value."""
    return [f"{stack}[{t}] = {value}"]


def scan_printer(empty, store=store):
    """The target's printer of op scan; `empty(node, ctx)` is the text of an uninitialised
    array of the node's shape and dtype on that target, `store(stack, t, value, shape,
    ctx)` the lines that store a step's value of that shape at index t."""
    def print_scan(node, args, ctx, name):
        group = ctx.siblings[sibling_key(node)]
        if node is not group[0]:
            return "", []   # the loop that the first sibling prints computes it
        a = node.attr
        body, c, m = a["body"], a["carries"], a["xs"]
        n = len(body.outputs) - c
        step = ctx.lowering.helper(body)
        named = {s.attr["out"]: (s, ctx.names[s]) for s in group}
        carry = [named[j][1] if j in named else ctx.local.temp() for j in range(c)]
        steps = ctx.target.dimension(a["length"], ctx)
        lines = [commented(f"{v} = {init}", f"scan: {body.name} at each of the {steps} steps" if j == 0 else "")
                 for j, (v, init) in enumerate(zip(carry, args[:c]))]
        for k in range(c, 2 * c + n):
            if k in named:
                what = f"{body.name}'s {body.outputs[k][0]}" if k < c + n else "the carry entering"
                lines.append(commented(f"{named[k][1]} = {empty(named[k][0], ctx)}",
                                       f"scan: {what} at each step"))
        t = "__t"
        lines.append(commented(f"for {t} in range({steps} - 1, -1, -1):" if a["reverse"]
                               else f"for {t} in range({steps}):", f"scan: {body.name}, "
                               + ("last step first" if a["reverse"] else "one step at a time")))
        for k in range(c + n, 2 * c + n):
            if k in named:
                lines += ["    " + line for line in store(named[k][1], t, carry[k - c - n], body.inputs[k - c - n].shape, ctx)]
        ys = {k: ctx.local.temp() for k in range(c, c + n)}
        call_args = carry + [f"{x}[{t}]" for x in args[c:c + m]] + list(args[c + m:])
        lines.append(f"    {', '.join(carry + list(ys.values()))} = {step}({', '.join(call_args)})")
        for k, y in ys.items():
            if k in named:
                lines += ["    " + line for line in store(named[k][1], t, y, body.outputs[k][1].shape, ctx)]
        return "", lines
    return print_scan
