#!/usr/bin/env bash
# Wheels for the GPU machine, which has PyTorch but not nnU-Net and cannot reach a package registry.
#   bash benchmarks/gpu_wheels.sh            # here, in the repository root: writes .whl/ (git-ignored), about 3 MB
# What they give: nnunetv2 (the baseline loss and deep supervision) and edt, all that the loss stages of
# gpu_check.sh import besides torch, numpy and tqdm; the project itself travels as the working tree (PYTHONPATH).
# Then, on the device machine (carry .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 &&
#   STAGES=loss_eager,loss_compiled PYTHON=python3 bash benchmarks/gpu_check.sh $OUT
# The train_step and trainings stages need nnU-Net's whole stack (SimpleITK alone is a 53 MB wheel, more than the
# 64 MiB a call carries with the rest): gpu_check.sh skips them, naming what is missing, when it cannot import it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
# Python 3.12: the device machine's interpreter (.library/device/KINDS.md)
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl nnunetv2==2.8.1 "edt>=3.0"
du -sh .whl
ls .whl
