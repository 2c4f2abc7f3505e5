#!/usr/bin/env bash
# The GPU check, as run on a lent CUDA machine (see docs/performance.md, "GPU"): the CUDA tests, the
# dask-cuda cluster test and benchmarks/bench_gpu.py, with results under $OUT (default ./gpu-check).
# That machine has Python 3.12 with torch and numpy but not eowatch's other dependencies: wheels for
# them (dask/distributed 2026.7.1 as dask-cuda 26.10 pins them, dask-cuda, zarr, pydantic, ...) are
# carried in .whl/ and installed into /tmp/site; eowatch is put on the path as the editable install
# maps it (eowatch/ plus operators/, pipelines/, models/, infra/ as its subpackages, linked below).
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
# Subpackages linked into eowatch/ for this run (pytest and `python -m` put the checkout first on the
# path), removed on exit.
links=()
for d in operators pipelines models infra; do
    if [ ! -e "eowatch/$d" ]; then ln -s "../$d" "eowatch/$d" && links+=("eowatch/$d"); fi
done
trap 'rm -f "${links[@]}"' EXIT
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
python3 -c "import sys, torch, dask, distributed, dask_cuda; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'dask', dask.__version__, 'dask-cuda', dask_cuda.__version__, 'gpu', torch.cuda.is_available())" | tee "$OUT/versions.txt"
# test_vhr_landcover's CUDA test is left out: its module imports rasterio, pyproj and boto3, too large to carry.
timeout "${PYTEST_TIMEOUT:-150}" python3 -m pytest -p no:cacheprovider -q -rs \
    tests/models/test_cuda.py tests/models/test_engine.py tests/models/test_croptype.py \
    tests/models/test_landcover.py tests/infra/test_cluster.py tests/infra/test_cluster_cuda.py \
    -k "cuda" 2>&1 | tee "$OUT/pytest.log" | tail -25
tests=${PIPESTATUS[0]}
timeout "${BENCH_TIMEOUT:-240}" python3 -m benchmarks.bench_gpu --out "$OUT" 2>&1 | tail -70
bench=${PIPESTATUS[0]}
echo "pytest exit $tests, bench exit $bench"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
