#!/usr/bin/env bash
# The cuda target on a real GPU, in one run:
#   1. the GPU's name and the versions in use;
#   2. the cuda target's own tests (tests/test_cuda_*.py) with Numba's CUDA simulator off;
#   3. the benchmarks with --target cuda (data and parameters on the GPU; PyTorch and JAX on
#      the GPU where they can);
#   4. every other test's cuda case (pytest -k cuda), for what time is left.
# Each part's output is written to a file in OUT_DIR (default: $OUT where it is set, else
# ./gpu_results) as well as printed.
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# graphc runs from this checkout (PYTHONPATH), so the machine needs only its dependencies
# (NumPy, SymPy, Jinja2, Numba, numba-cuda; PyTorch and JAX for the peers), not graphc itself.
# Exits 1 if a part failed, after running the others.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_results}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NUMBA_ENABLE_CUDASIM=0 PYTHONUNBUFFERED=1
status=0

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "
import numba, numba_cuda, numpy
from numba import cuda
print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)
name = cuda.get_current_device().name
print('device:', name.decode() if isinstance(name, bytes) else name)"
} 2>&1 | tee "$out/gpu.txt" || status=1

# numba-cuda 0.30 registers np.row_stack, which NumPy 2.5 removed: every kernel's compile would
# fail with an AttributeError, so say so once and stop
if ! python3 -c "import numpy; numpy.row_stack" 2>/dev/null; then
    echo "NumPy $(python3 -c 'import numpy; print(numpy.__version__)') has no np.row_stack, which numba-cuda's" \
         "GPU compiler needs: install NumPy before 2.5 (pip install 'numpy<2.5', or a wheel into a folder put" \
         "first on PYTHONPATH)" | tee -a "$out/gpu.txt"
    exit 1
fi

timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_target.py tests/test_cuda_training.py \
    2>&1 | tee "$out/tests_cuda.txt" || status=1

for bench in mlp elementwise neuron; do
    timeout 180 python3 "bench/$bench.py" --target cuda 2>&1 | tee "$out/bench_$bench.txt" || status=1
done

timeout 300 python3 -m pytest -q -p no:cacheprovider -k cuda \
    --deselect tests/test_cuda_target.py --deselect tests/test_cuda_training.py \
    2>&1 | tee "$out/tests_all_cuda_cases.txt" || status=1
exit $status
