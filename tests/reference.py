"""Independent numpy (float64) references of every loss, written from the papers' equations.

They share nothing with the package: plain loops over samples and classes, explicit one-hot, no torch.
"""
import math

import numpy as np


def softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def onehot(labels, num_classes):
    """labels (B, *spatial) -> (B, C, *spatial)."""
    return np.stack([(labels == c) for c in range(num_classes)], 1).astype(np.float64)


def combo(x, labels, alpha, beta, smooth=1.0, dice="flattened", regions=False, valid=None, batch_dice=False):
    """Taghanaki et al. (CMIG 2019), eq. 5 (eq. 3 of the arXiv preprint), on the foreground channels."""
    if regions:
        p, t = sigmoid(x), labels.astype(np.float64)
    else:
        p, t = softmax(x)[:, 1:], onehot(labels, x.shape[1])[:, 1:]
    if valid is None:
        valid = np.ones((x.shape[0],) + x.shape[2:], bool)
    m = valid[:, None].astype(np.float64)
    n = m.sum() * p.shape[1]
    bce = beta * t * np.log(p) + (1 - beta) * (1 - t) * np.log(1 - p)
    wce = -(bce * m).sum() / n
    p, t = p * m, t * m
    terms = []
    groups = [slice(None)] if batch_dice else [slice(b, b + 1) for b in range(x.shape[0])]
    for g in groups:
        if dice == "flattened":
            terms.append((2 * (p[g] * t[g]).sum() + smooth) / (p[g].sum() + t[g].sum() + smooth))
        else:
            for c in range(p.shape[1]):
                pc, tc = p[g][:, c], t[g][:, c]
                terms.append((2 * (pc * tc).sum() + smooth) / (pc.sum() + tc.sum() + smooth))
    return alpha * wce - (1 - alpha) * np.mean(terms)


def region_wise(x, z, valid=None):
    """Valverde eq. 1 divided by N * K."""
    p = softmax(x)
    if valid is None:
        return (p * z).mean()
    m = valid[:, None]
    return (p * z * m).sum() / (m.sum() * x.shape[1])


def region_wise_grad_eq2(x, z):
    """Eq. 2: dL/dphi_ik = p_ik sum_{l != k} p_il (z_ik - z_il), for the un-normalised sum of eq. 1."""
    p = softmax(x)
    grad = np.zeros_like(p)
    for k in range(x.shape[1]):
        for l in range(x.shape[1]):
            if l != k:
                grad[:, k] += p[:, k] * p[:, l] * (z[:, k] - z[:, l])
    return grad


def _probabilities_and_targets(x, labels, include_background, regions, valid):
    """(p, y) per channel: sigmoid and the region targets, or softmax and one-hot labels (without the background
    channel unless ``include_background``); both zero outside ``valid``."""
    if regions:
        p, y = sigmoid(x), labels.astype(np.float64)
    else:
        p, y = softmax(x), onehot(labels, x.shape[1])
        if not include_background:
            p, y = p[:, 1:], y[:, 1:]
    if valid is not None:
        p, y = p * valid[:, None], y * valid[:, None]
    return p, y


def iou_xy(x, labels, alpha, beta, include_background=True, smooth=1e-5, regions=False, valid=None):
    """Furtado: 1 - mean_c TP / (TP + alpha FP + beta FN), per sample and class."""
    p, y = _probabilities_and_targets(x, labels, include_background, regions, valid)
    scores = []
    for b in range(x.shape[0]):
        for c in range(p.shape[1]):
            tp = (p[b, c] * y[b, c]).sum()
            fp = (p[b, c] * (1 - y[b, c])).sum()
            fn = ((1 - p[b, c]) * y[b, c]).sum()
            scores.append((tp + smooth) / (tp + alpha * fp + beta * fn + smooth))
    return 1 - np.mean(scores)


def topk_dice(x, labels, k, eps, include_background=False, regions=False, valid=None):
    """Hosseini eq. 2-7: per sample, per present class, keep ceil(k% n_c) lowest TP voxels; squared Dice."""
    p, y = _probabilities_and_targets(x, labels, include_background, regions, valid)
    losses = []
    kept_counts = []
    for b in range(x.shape[0]):
        dices = []
        for c in range(p.shape[1]):
            yc, pc = y[b, c].ravel(), p[b, c].ravel()
            fg = np.flatnonzero(yc > 0.5)
            if fg.size == 0:
                continue
            keep_n = max(1, math.ceil(k / 100 * fg.size - 1e-9))
            tp = yc[fg] * (pc[fg] + eps.ravel()[fg])
            order = np.argsort(tp, kind="stable")
            drop = fg[order[keep_n:]]
            keep = np.ones_like(yc)
            keep[drop] = 0
            kept_counts.append((keep_n, fg.size))
            yk, pk = yc * keep, pc * keep
            dices.append(2 * (yk * pk).sum() / ((yk ** 2).sum() + (pk ** 2).sum()))
        if dices:
            losses.append(1 - np.mean(dices))
    return (float(np.mean(losses)) if losses else 0.0), kept_counts


def squared_dice_present(x, labels):
    """Eq. 1 over the foreground classes present in each sample, averaged over samples that have one."""
    p, y = softmax(x)[:, 1:], onehot(labels, x.shape[1])[:, 1:]
    losses = []
    for b in range(x.shape[0]):
        d = [2 * (p[b, c] * y[b, c]).sum() / ((y[b, c] ** 2).sum() + (p[b, c] ** 2).sum())
             for c in range(p.shape[1]) if y[b, c].sum() > 0]
        if d:
            losses.append(1 - np.mean(d))
    return float(np.mean(losses))


def focal(x, labels, gamma, alpha=None, regions=False, valid=None):
    """Lin et al.: -alpha_t (1 - p_t)^gamma ln p_t, mean over valid voxels (and channels for sigmoid)."""
    if regions:
        p = sigmoid(x)
        y = labels.astype(np.float64)
        pt = np.where(y > 0.5, p, 1 - p)
        a = 1.0 if alpha is None else np.where(y > 0.5, alpha, 1 - alpha)
        loss = -a * (1 - pt) ** gamma * np.log(pt)
        if valid is not None:
            loss = loss * valid[:, None]
            return loss.sum() / (valid.sum() * x.shape[1])
        return loss.mean()
    p = softmax(x)
    total, count = 0.0, 0
    num_classes = x.shape[1]
    if alpha is None:
        weights = [1.0] * num_classes
    elif isinstance(alpha, float):
        weights = [1 - alpha] + [alpha] * (num_classes - 1)
    else:
        weights = list(alpha)
    for idx in np.ndindex(labels.shape):
        if valid is not None and not valid[idx]:
            continue
        c = labels[idx]
        pt = p[(idx[0], c) + idx[1:]]
        total += -weights[c] * (1 - pt) ** gamma * math.log(pt)
        count += 1
    return total / count


def weighted_ce(x, labels, weights, valid=None):
    """sum_i w_{y_i} (-ln p_{i, y_i}) / sum_i w_{y_i} over valid voxels."""
    logp = np.log(softmax(x))
    num, den = 0.0, 0.0
    for idx in np.ndindex(labels.shape):
        if valid is not None and not valid[idx]:
            continue
        c = labels[idx]
        num += -weights[c] * logp[(idx[0], c) + idx[1:]]
        den += weights[c]
    return num / den


def boundary_reference(labels, num_classes, spacing, inside_offset=0):
    """Per class k, by scipy's Euclidean distance transform: the distance to k outside k, minus (the distance to the
    outside of k - ``inside_offset``) inside k; an absent class is 0. ``inside_offset`` 1: the RW paper's eq. 3;
    0: the RW authors' BoundaryLoss code."""
    from scipy.ndimage import distance_transform_edt

    out = np.zeros((num_classes,) + labels.shape)
    for k in range(num_classes):
        pos = labels == k
        if pos.any():
            neg = ~pos
            out[k] = (distance_transform_edt(neg, sampling=spacing) * neg
                      - (distance_transform_edt(pos, sampling=spacing) - inside_offset) * pos)
    return out
