"""What the README says about peers' code, checked: nnU-Net's TopK CE counts ignored voxels in its k%, and our focal
loss in label mode is C times MONAI's softmax focal loss (mean over voxels and channels of one-hot terms)."""
import math

import numpy as np
import torch

from nnunet_losses.losses import FocalLoss
from nnunet_losses.nnunet.baselines import nnunet_topk_ce


def test_topk_ce_takes_k_percent_of_all_voxels_ignored_ones_included():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 20, 20)
    target = torch.randint(0, 3, (2, 1, 20, 20))
    target[:, :, :10] = 4  # half of the voxels ignored (f = 0.5)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0].clamp(max=2), reduction="none")
    valid = ce[target[:, 0] != 4]
    k = 10
    kept = int(800 * k / 100)  # k% of all 800 voxels = 20% of the 400 valid ones
    expected = torch.sort(valid, descending=True).values[:kept].mean()
    assert torch.allclose(nnunet_topk_ce(k, 4, False)(logits, target), expected, rtol=1e-5)
    big = nnunet_topk_ce(80, 4, False)(logits, target)  # 80% of all > every valid voxel: zeros fill the mean
    assert torch.allclose(big, valid.sum() / int(800 * 0.8), rtol=1e-5)


def test_focal_in_label_mode_is_c_times_monais_softmax_focal():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 6, 6)
    target = torch.randint(0, 4, (2, 1, 6, 6))
    onehot = np.eye(4)[target[:, 0].numpy()].transpose(0, 3, 1, 2)
    log_p = torch.log_softmax(logits.double(), 1).numpy()
    monai = np.mean(-(1 - np.exp(log_p)) ** 2 * log_p * onehot)  # MONAI: loss.mean() over B x C x H x W
    ours = float(FocalLoss(gamma=2.0)(logits, target))
    assert math.isclose(ours, 4 * monai, rel_tol=1e-5)
