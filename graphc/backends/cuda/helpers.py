"""Module-level helpers that the cuda target's code may call, defined once per module
(kernels._define): np.sign for device code, and matrix products. `{np}` and `{dtype}`
are the module's NumPy alias and dtype."""

SIGN = '''\
@cuda.jit(device=True)
def __sign(x):
    """np.sign, which device code lacks: 1, -1, or x itself at 0 (and NaN)."""
    return {np}.{dtype}(1) if x > 0 else ({np}.{dtype}(-1) if x < 0 else x)'''

MATMUL = '''\
try:   # cuBLAS through CuPy, where it is installed
    import cupy as __cupy
except ImportError:
    __cupy = None

__TILE = 16   # a block computes a TILE x TILE tile of the product


@cuda.jit
def __matmul_tiles(a, b, out):
    """out = a @ b for matrices: a block steps along a's row of tiles and b's column
    of tiles, each staged in shared memory, so each element is read once per tile."""
    ta = cuda.shared.array((__TILE, __TILE), {np}.{dtype})
    tb = cuda.shared.array((__TILE, __TILE), {np}.{dtype})
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row, col = cuda.blockIdx.y * __TILE + ty, cuda.blockIdx.x * __TILE + tx
    acc = {np}.{dtype}(0)
    for k0 in range(0, a.shape[1], __TILE):
        ta[ty, tx] = a[row, k0 + tx] if row < a.shape[0] and k0 + tx < a.shape[1] else {np}.{dtype}(0)
        tb[ty, tx] = b[k0 + ty, col] if k0 + ty < b.shape[0] and col < b.shape[1] else {np}.{dtype}(0)
        cuda.syncthreads()
        for k in range(__TILE):
            acc += ta[ty, k] * tb[k, tx]
        cuda.syncthreads()
    if row < out.shape[0] and col < out.shape[1]:
        out[row, col] = acc


@cuda.jit
def __matmul_dots(a, b, out):
    """out = a @ b, one thread per element of out: for products too thin to fill a tile."""
    for t in range(cuda.grid(1), out.shape[0] * out.shape[1], cuda.gridsize(1)):
        i, j = t // out.shape[1], t % out.shape[1]
        acc = {np}.{dtype}(0)
        for k in range(a.shape[1]):
            acc += a[i, k] * b[k, j]
        out[i, j] = acc


def __matmul(a, b):
    """a @ b on the device, with NumPy's rules for vectors and stacks of matrices."""
    if __cupy is not None and hasattr(a, "__cuda_array_interface__"):
        out = __cupy.matmul(__cupy.asarray(a), __cupy.asarray(b))
        return out.get()[()] if out.ndim == 0 else cuda.as_cuda_array(out)
    a2 = a.reshape((1, a.shape[0])) if a.ndim == 1 else a   # a vector is a one-row matrix
    b2 = b.reshape((b.shape[0], 1)) if b.ndim == 1 else b   # or a one-column one
    (*lead_a, m, _), (*lead_b, _, n) = tuple(a2.shape), tuple(b2.shape)
    batch = {np}.broadcast_shapes(tuple(lead_a), tuple(lead_b))
    out = __empty(batch + (m, n))
    for k in {np}.ndindex(*batch):   # a stack of matrices: a product each
        x, y, z = __batch(a2, k), __batch(b2, k), __batch(out, k)
        if min(x.shape[0], y.shape[1]) >= __TILE:
            grid = ((y.shape[1] + __TILE - 1) // __TILE, (x.shape[0] + __TILE - 1) // __TILE)
            __matmul_tiles[grid, (__TILE, __TILE)](x, y, z)
        else:
            __matmul_dots[__grid(z.shape[0] * z.shape[1])](x, y, z)
    shape = batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())   # vectors' unit axes go
    return out[0, 0] if shape == () else out.reshape(shape)


def __batch(x, k):
    """The matrix of x at batch index k, its unit batch axes broadcast."""
    lead = x.ndim - 2
    at = tuple(0 if x.shape[a] == 1 else k[len(k) - lead + a] for a in range(lead))
    return x[at] if at else x'''
