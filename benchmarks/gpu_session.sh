#!/usr/bin/env bash
# One GPU call: install the carried wheels, run every GPU test, then the given benchmark steps.
# Usage (device tool, carry .wheels/kernels .wheels/av .wheels/data):
#   bash benchmarks/gpu_session.sh tests finetune videotext bench-quick
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-index --target /tmp/site .wheels/*/*.whl >"$OUT/pip.log" 2>&1 || tail -5 "$OUT/pip.log"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sklearn; print('sklearn', sklearn.__version__)"; python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)"
for step in "$@"; do
  echo "=== $step $(date +%T)"
  case "$step" in
    tests)
      VIDEOMAMBA_PARITY_LOG=$OUT/parity.jsonl python3 -m pytest -q -m gpu -p no:cacheprovider tests -rs 2>&1 | tee "$OUT/gpu_tests.log" | tail -25 ;;
    finetune)
      timeout 560 python3 benchmarks/gpu_finetune_demo.py --output_dir /tmp/finetune --budget_s 120 2>&1 | tee "$OUT/finetune.log" | tail -15 ;;
    videotext)
      timeout 330 python3 benchmarks/gpu_video_text.py --data_dir /tmp/videotext_demo --output_dir "$OUT/videotext" \
        2>&1 | tee "$OUT/videotext.log" | tail -30 ;;
    bench-quick)
      python3 benchmarks/benchmark.py --sizes tiny --frames 8 16 32 64 128 --backends triton mamba_ssm \
        --peers videomae timesformer --train-frames 16 --max-minutes 3.2 --time-per-case 2 \
        --out "$OUT/bench_tiny.json" 2>&1 | tail -3 ;;
    bench-sizes)
      python3 benchmarks/benchmark.py --sizes small middle --frames 16 64 --backends triton mamba_ssm \
        --peers videomae --train-frames --max-minutes 3 --time-per-case 3 --out "$OUT/bench_sizes.json" 2>&1 | tail -3 ;;
  esac
done
echo "=== done $(date +%T)"
