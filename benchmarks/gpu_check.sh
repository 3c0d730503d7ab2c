#!/usr/bin/env bash
# The GPU check of issue 11, one script (about 8 minutes on one H200; nothing downloaded):
#   1. loss cost against nnU-Net's DC_and_CE, 2D and 3D, eager and compiled (benchmarks/loss_cost.py);
#   2. a whole train_step per trainer against nnUNetTrainer on the same batches (benchmarks/train_step.py);
#   3. a short real `nnUNetv2_train` per paper family with nnUNet_compile on (wall time and the log's epoch time).
# Usage: bash benchmarks/gpu_check.sh [OUTDIR]      (PYTHON=... to choose the interpreter; QUICK=1 for a smoke run,
#        DEVICE=cpu to try the script itself on a machine without a GPU)
# Everything is written to OUTDIR (default benchmarks/gpu_out): Markdown tables, JSON, the training logs' tails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
OUT_DIR=${1:-benchmarks/gpu_out}
ITERATIONS=${ITERATIONS:-250}
mkdir -p "$OUT_DIR"
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick) && ITERATIONS=5

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import torch, nnunetv2; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } \
  | tee "$OUT_DIR/machine.txt"

"$PYTHON" benchmarks/loss_cost.py --device "$DEVICE" --repeats 5 "${quick[@]}" --json "$OUT_DIR/loss_eager.json" \
  | tee "$OUT_DIR/loss_eager.md"
# compiled: the paper losses only (each compiles for 2D and 3D and again for dynamic shapes: minutes in all)
"$PYTHON" benchmarks/loss_cost.py --device "$DEVICE" --repeats 5 --compile "${quick[@]}" \
  --losses combo,rrw,dice_boundary,iou_xy,topk_dice_only,topk_dice \
  --json "$OUT_DIR/loss_compiled.json" | tee "$OUT_DIR/loss_compiled.md"
"$PYTHON" benchmarks/train_step.py --device "$DEVICE" "${quick[@]}" --json "$OUT_DIR/train_step.json" \
  | tee "$OUT_DIR/train_step.md"

# Short real trainings: the generated dataset, nnU-Net's plan, maps precomputed, nnUNet_compile on.
root=$(mktemp -d)
export nnUNet_raw=$root/raw nnUNet_preprocessed=$root/preprocessed nnUNet_results=$root/results
bin=$(dirname "$(command -v "$PYTHON")")
export nnUNet_compile=1 nnUNet_extTrainer=$("$bin/nnunet-losses" trainers-path)
"$bin/nnunet-losses" synthetic-dataset -d 951 --num-train 12 >/dev/null
"$bin/nnUNetv2_plan_and_preprocess" -d 951 -c 2d -np 4 >/dev/null
"$bin/nnunet-losses" precompute-maps -d 951 -c 2d --no-progress
echo "| trainer | iterations | wall s | last epoch time (log) |" | tee "$OUT_DIR/trainings.md"
echo "|---|---|---|---|" | tee -a "$OUT_DIR/trainings.md"
for family in DiceCETrainer ComboTrainer_b0p7 RRWTrainer DiceBoundaryTrainer IoUxyTrainer_a0p5_b1p5 TopKDiceTrainer; do
  name="${family}_ep1_it${ITERATIONS}"
  start=$SECONDS
  "$bin/nnUNetv2_train" 951 2d 0 -tr "$name" -device "$DEVICE" >"$OUT_DIR/train_$family.log" 2>&1 || true
  wall=$((SECONDS - start))
  epoch=$(grep -o "Epoch time: [0-9.]* s" "$OUT_DIR/train_$family.log" | tail -1 || true)
  echo "| $name | $ITERATIONS | $wall | ${epoch:-failed: see train_$family.log} |" | tee -a "$OUT_DIR/trainings.md"
done
rm -rf "$root"
