#!/usr/bin/env bash
# The GPU measurements in one script within a time budget (nothing downloaded). Stages, in order of value:
#   loss_eager           loss cost against nnU-Net's DC_and_CE, 2D and 3D, every loss, eager (loss_cost.py)
#   train_step_eager     a whole train_step per paper family against nnUNetTrainer, nnUNet_compile=f (train_step.py)
#   loss_compiled        loss cost compiled, the three slowest eager losses (Combo, CE + TopK Dice, Dice+Boundary)
#   train_step_compiled  train_step with nnUNet_compile=t (network and loss compiled as the trainers do on CUDA)
#   trainings            a short real `nnUNetv2_train` per family with nnUNet_compile on (wall time, epoch time);
#                        its wall time includes nnU-Net's final validation, which compiles again for batch 1
# Usage: bash benchmarks/gpu_check.sh [OUTDIR]    (on the device machine, first the wheels: benchmarks/gpu_wheels.sh)
#   BUDGET=540      seconds for all stages; a stage starts only if its estimate fits in what is left, and is cut at
#                   what is left (`timeout`), so the script ends within BUDGET plus the set-up of the data
#   STAGES=a,b      run only these stages (e.g. the ones a first run skipped)
#   PYTHON=...      the interpreter; QUICK=1 a smoke run; DEVICE=cpu to try the script on a machine without a GPU
# OUTDIR (default benchmarks/gpu_out) gets one Markdown table and one JSON per stage, stages.md (what ran, its exit
# status and seconds, or why it was skipped) and the training logs. Each stage writes its own files, so a stage that
# is cut or skipped loses nothing of the others.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
OUT_DIR=${1:-benchmarks/gpu_out}
BUDGET=${BUDGET:-540}
STAGES=${STAGES:-loss_eager,train_step_eager,loss_compiled,train_step_compiled,trainings}
ITERATIONS=${ITERATIONS:-100}
FAMILIES=${FAMILIES:-DiceCETrainer ComboTrainer_b0p7 TopKDiceTrainer}
STEP_TRAINERS=DiceCETrainer,ComboTrainer_b0p7,RRWTrainer,DiceBoundaryTrainer,IoUxyTrainer_a0p5_b1p5,TopKDiceTrainer
mkdir -p "$OUT_DIR"
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick) && ITERATIONS=5
start=$SECONDS

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import torch, nnunetv2; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } \
  | tee "$OUT_DIR/machine.txt"
printf '| stage | result | seconds |\n|---|---|---|\n' > "$OUT_DIR/stages.md"
# train_step and trainings run nnU-Net's whole pipeline; the loss stages need only nnunetv2 and edt (gpu_wheels.sh)
missing=$("$PYTHON" -c "import SimpleITK, blosc2, batchgeneratorsv2, acvl_utils, imagecodecs" 2>&1 | tail -1)

# stage NAME ESTIMATE_S COMMAND...: run COMMAND (stdout to NAME.md) if selected and ESTIMATE_S fits in the budget
stage() {
  local name=$1 estimate=$2 left
  shift 2
  [[ ",$STAGES," == *",$name,"* ]] || return 0
  if [[ "$name" != loss_* && -n "$missing" ]]; then
    echo "| $name | skipped: nnU-Net's pipeline cannot be imported here ($missing) | 0 |" | tee -a "$OUT_DIR/stages.md"
    return 0
  fi
  left=$((BUDGET - (SECONDS - start)))
  if [ "$left" -lt "$estimate" ]; then
    echo "| $name | skipped: ${left} s of the budget left, estimate ${estimate} s (rerun with STAGES=$name) | 0 |" \
      | tee -a "$OUT_DIR/stages.md"
    return 0
  fi
  local t0=$SECONDS rc=0
  timeout "$left" "$@" > "$OUT_DIR/$name.md" 2> "$OUT_DIR/$name.err" || rc=$?
  local result="done"
  [ "$rc" = 124 ] && result="cut at the budget (partial output)"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] && result="failed, exit $rc (see $name.err)"
  echo "| $name | $result | $((SECONDS - t0)) |" | tee -a "$OUT_DIR/stages.md"
}

trainings() {
  # the generated dataset, nnU-Net's plan, maps precomputed, nnUNet_compile on
  local root bin
  root=$(mktemp -d)
  export nnUNet_raw=$root/raw nnUNet_preprocessed=$root/preprocessed nnUNet_results=$root/results
  bin=$(dirname "$(command -v "$PYTHON")")
  export nnUNet_compile=1 nnUNet_extTrainer=$("$bin/nnunet-losses" trainers-path)
  "$bin/nnunet-losses" synthetic-dataset -d 951 --num-train 12 >/dev/null
  "$bin/nnUNetv2_plan_and_preprocess" -d 951 -c 2d -np 4 >/dev/null 2>&1
  "$bin/nnunet-losses" precompute-maps -d 951 -c 2d --no-progress >&2
  echo "| trainer | iterations | wall s (with the final validation) | last epoch time (log) |"
  echo "|---|---|---|---|"
  for family in $FAMILIES; do
    local name="${family}_ep1_it${ITERATIONS}" t0=$SECONDS epoch
    "$bin/nnUNetv2_train" 951 2d 0 -tr "$name" -device "$DEVICE" >"$OUT_DIR/train_$family.log" 2>&1
    epoch=$(grep -o "Epoch time: [0-9.]* s" "$OUT_DIR/train_$family.log" | tail -1)
    echo "| $name | $ITERATIONS | $((SECONDS - t0)) | ${epoch:-failed: see train_$family.log} |"
  done
  rm -rf "$root"
}

stage loss_eager 90 "$PYTHON" benchmarks/loss_cost.py --device "$DEVICE" --repeats 5 "${quick[@]}" \
  --json "$OUT_DIR/loss_eager.json"
stage train_step_eager 150 env nnUNet_compile=f "$PYTHON" benchmarks/train_step.py --device "$DEVICE" "${quick[@]}" \
  --trainers "$STEP_TRAINERS" --json "$OUT_DIR/train_step_eager.json"
stage loss_compiled 150 "$PYTHON" benchmarks/loss_cost.py --device "$DEVICE" --repeats 5 --compile "${quick[@]}" \
  --losses combo,topk_dice,dice_boundary --json "$OUT_DIR/loss_compiled.json"
stage train_step_compiled 150 env nnUNet_compile=t "$PYTHON" benchmarks/train_step.py --device "$DEVICE" \
  "${quick[@]}" --rounds 3 --trainers ComboTrainer_b0p7,TopKDiceTrainer --json "$OUT_DIR/train_step_compiled.json"
export OUT_DIR PYTHON DEVICE ITERATIONS FAMILIES
export -f trainings
stage trainings 120 bash -c trainings
echo "total $((SECONDS - start)) s of a budget of $BUDGET s" | tee -a "$OUT_DIR/stages.md"
