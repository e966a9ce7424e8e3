#!/usr/bin/env bash
# One GPU call: install the carried wheels, then run the given steps in order; every log and result lands in
# $RES (default /tmp/res) and is packed into $OUT/results.tar.gz at the end (the device tool returns at most 8 files).
# Usage (device tool, carry .wheels/kernels .wheels/av .wheels/data):
#   bash benchmarks/gpu_session.sh tests breakdown profile recipes videotext longclip hourlong finetune bench-quick bench-sizes
set -uo pipefail
OUT=${OUT:-/tmp/out}; RES=${RES:-/tmp/res}; rm -rf "$RES"; mkdir -p "$OUT" "$RES"  # no stale results of an earlier call
python3 -m pip install -q --no-deps --no-index --target /tmp/site .wheels/*/*.whl >"$RES/pip.log" 2>&1 || tail -5 "$RES/pip.log"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PATH=/tmp/site/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$RES/gpu.txt"
python3 -c "import torch, transformers, triton, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__, 'accelerate', accelerate.__version__)" | tee -a "$RES/gpu.txt"
pack() { tar -czf "$OUT/results.tar.gz" -C "$RES" . 2>/dev/null; }
trap pack EXIT
picked() { [ -f "$RES/bench_scan.json" ] && echo --triton-configs "$RES/bench_scan.json"; }  # settings the scan step picked
for step in "$@"; do
  echo "=== $step $(date +%T)"
  case "$step" in
    tests)
      timeout ${TESTS_TIMEOUT:-240} env VIDEOMAMBA_PARITY_LOG=$RES/parity.jsonl python3 -m pytest -q -m gpu \
        -p no:cacheprovider tests -rs ${TESTS_ARGS:-} 2>&1 | tee "$RES/gpu_tests.log" | tail -25 ;;
    profile)
      mkdir -p "$RES/profile"
      NCU_KERNELS=${NCU_KERNELS:-_scan_fwd_kernel|_scan_bwd_group_kernel|_conv_xproj_dir_kernel}
      [ "${PROFILE_BASIC:-1}" = 1 ] && timeout 70 python3 benchmarks/profile_scan.py --out "$RES/profile" 2>&1 | tee "$RES/profile/profile.log" | tail -20
      [ "${NCU:-1}" = 1 ] && timeout 100 ncu --clock-control none --set full --import-source no \
        -k "regex:$NCU_KERNELS" -c ${NCU_COUNT:-3} -f -o "$RES/profile/scan" \
        python3 benchmarks/profile_scan.py --ncu >"$RES/profile/ncu_run.log" 2>&1 || tail -5 "$RES/profile/ncu_run.log"
      if [ -f "$RES/profile/scan.ncu-rep" ]; then
        ncu -i "$RES/profile/scan.ncu-rep" --page details > "$RES/profile/details.txt" 2>&1
        for k in $(echo "$NCU_KERNELS" | tr '|' ' '); do  # per-SASS stall samples of each kernel
          ncu -i "$RES/profile/scan.ncu-rep" --page source --csv --print-source sass -k "regex:$k" \
            > "$RES/profile/source${k%_kernel}.csv" 2>&1
        done
        grep -E "Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|Executed Ipc A|No Eligible|Warp Cycles Per Issued|Waves Per SM|Compute \(SM\) Throughput|Memory Throughput" \
          "$RES/profile/details.txt" | head -60
      fi ;;
    breakdown)
      mkdir -p "$RES/profile"
      timeout 150 python3 benchmarks/profile_scan.py --breakdown --out "$RES/profile" 2>&1 | tee "$RES/profile/breakdown.log" ;;
    recipes)
      timeout ${RECIPES_TIMEOUT:-330} python3 benchmarks/gpu_recipes.py --docs_dir "$RES/docs" ${RECIPES_ARGS:-} 2>&1 \
        | tee "$RES/recipes.log" | grep -E "^\[|teacher:|distillation:|masked alignment:|done in|Error|error" | tail -12 ;;
    videotext)
      timeout ${VIDEOTEXT_TIMEOUT:-330} python3 benchmarks/gpu_video_text.py --data_dir /tmp/videotext_demo --output_dir "$RES/videotext" \
        ${VIDEOTEXT_ARGS:-} 2>&1 | tee "$RES/videotext.log" | tail -25 ;;
    longclip)
      # (1) the model alone: one training step per size and frame count (peak memory, memory per frame)
      timeout 200 python3 benchmarks/gpu_long_clip_training.py --sizes tiny,small --frames 64,128,256 --timeout 90 \
        --json "$RES/long_clip_training.json" 2>&1 | tee "$RES/long_clip_training.log" | tail -9
      # (2) through the fine-tuning example: 256-frame demo videos, VideoMamba-Ti at 128 frames, checkpointing, bf16
      python3 -c "from videomamba.demo_data import make_demo_videos as m; m('/tmp/long_demo', num_train_per_class=8, num_val_per_class=2, num_frames=256)"
      timeout 200 python3 examples/run_video_classification.py --train_file /tmp/long_demo/train.txt \
        --validation_file /tmp/long_demo/val.txt --model_preset tiny --num_frames 128 --image_size 224 \
        --gradient_checkpointing --mixed_precision bf16 --per_device_train_batch_size 2 --max_train_steps 8 \
        --logging_steps 2 --output_dir /tmp/longclip_example 2>&1 | tee "$RES/long_clip_example.log" | tail -6 ;;
    hourlong)
      timeout ${HOUR_TIMEOUT:-420} python3 benchmarks/gpu_hour_long.py --timeout ${HOUR_CASE_TIMEOUT:-150} ${HOUR_ARGS:-} \
        --json "$RES/hour_long.json" --markdown "$RES/hour_long.md" 2>&1 | tee "$RES/hour_long.log" | tail -14 ;;
    finetune)
      timeout ${FINETUNE_TIMEOUT:-300} python3 benchmarks/gpu_finetune_demo.py --output_dir /tmp/finetune ${FINETUNE_ARGS:-} 2>&1 \
        | tee "$RES/finetune.log" | tail -15
      cp /tmp/finetune/benchmark.json "$RES/finetune_benchmark.json" 2>/dev/null ;;
    bench-quick)
      timeout ${QUICK_TIMEOUT:-330} python3 benchmarks/benchmark.py --sizes tiny --frames 8 16 32 64 128 \
        --backends triton mamba_ssm torch --peers videomae timesformer --train-frames 16 64 --max-minutes ${QUICK_MINUTES:-4.6} --time-per-case 2 \
        $(picked) --out "$RES/bench_tiny.json" 2>&1 | tail -3 ;;
    bench-sizes)
      timeout ${SIZES_TIMEOUT:-240} python3 benchmarks/benchmark.py --sizes small middle --frames 16 64 --backends triton mamba_ssm \
        --peers videomae --train-frames --max-minutes ${SIZES_MINUTES:-3} --time-per-case 2 $(picked) --out "$RES/bench_sizes.json" 2>&1 | tail -3 ;;
    bench-train)
      timeout ${TRAIN_TIMEOUT:-150} python3 benchmarks/benchmark.py --sizes tiny --frames 16 --backends triton mamba_ssm \
        --peers --train-frames 16 64 --max-minutes 2 --time-per-case 2 $(picked) --out "$RES/bench_train.json" 2>&1 | tail -6 ;;
    scan)
      timeout ${SCAN_TIMEOUT:-240} python3 benchmarks/bench_scan.py --out "$RES" ${SCAN_ARGS:-} 2>&1 | tee "$RES/bench_scan.log" | tail -40 ;;
  esac
done
echo "=== done $(date +%T)"
