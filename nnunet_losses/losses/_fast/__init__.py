"""The losses' speed machinery: how two losses compute fast, never what they compute.

Each loss file one level up (``losses/<loss>.py``) holds its paper's equation, its documented choices and its
autograd function, and calls in here for one step it does not need to spell out:

* :mod:`.combo_cpu` (with ``combo_cpu.c``): Combo's softmax sums in a fused C kernel on the CPU, eager (its switch
  ``nnUNet_losses_fused``, its build and its verified cache). Combo's PyTorch path is the reference it is tested
  against and the path everywhere else.
* :mod:`.topk_selection`: TopK Dice's selection of the K% hardest voxels without a loop over (sample, class) rows and
  without a host sync: one sort per sample of (class, TP) keys (label mode), a batched lowest-K of all rows (multi-hot
  targets), and the custom operator ``nnunet_losses::sorted_rows`` that sorts with numpy on the CPU.

Each module's docstring names the BENCHMARKS.md section that measured it. Nothing here imports nnunetv2.
"""
