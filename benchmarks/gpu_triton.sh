#!/bin/bash
# GPU check of the fused Triton scan: GPU tests, then the benchmark. Run from a checkout root on the GPU machine
# (the mamba-ssm / causal-conv1d wheels in ../.wheels/kernels or .wheels/kernels are installed when present).
#   bash benchmarks/gpu_triton.sh [bench_scan.py arguments...]
# Environment: TESTS=0 skips the GPU tests, TEST_ARGS (a pytest -k expression), TEST_TIMEOUT, BENCH_TIMEOUT (seconds), OUT (log folder).
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
WHEELS=$(ls ../.wheels/kernels/*.whl .wheels/kernels/*.whl 2>/dev/null)
[ -n "$WHEELS" ] && python3 -m pip install -q --no-deps --no-index --target /tmp/site $WHEELS
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
[ "${TESTS:-1}" = 1 ] && timeout ${TEST_TIMEOUT:-240} python3 -m pytest -q -m gpu tests/test_triton_scan.py -s -p no:cacheprovider ${TEST_ARGS:+-k "$TEST_ARGS"} \
    2>&1 | tee "$OUT/tests.log" | grep -v "^$" | tail -${TEST_TAIL:-70}
timeout ${BENCH_TIMEOUT:-300} python3 benchmarks/bench_scan.py --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.log"
