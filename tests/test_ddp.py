"""Batch Dice across DDP ranks: two CPU processes (gloo) give the loss of the whole batch, as nnU-Net's Dice does."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunet_losses.losses import ComboLoss, IoUxyLoss


def _losses():
    return {"iou_xy": lambda: IoUxyLoss(0.5, 1.5, batch_dice=True, ddp=True),
            "combo_dice": lambda: ComboLoss(alpha=0.0, batch_dice=True, ddp=True)}


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4, 1, 8, 8), generator=g)


def _worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    logits, target = _inputs()
    part = slice(rank * 2, rank * 2 + 2)
    for name, make in _losses().items():
        x = logits[part].clone().requires_grad_(True)
        value = make()(x, target[part])
        value.backward()
        # plain Python values: no tensor storage shared with the parent after this process exits
        out[(name, rank)] = (value.item(), x.grad.tolist())
    # no rank tears gloo down while the other still has a collective in flight (a rare SIGABRT,
    # "terminate called without an active exception", seen once under a loaded 2-core suite)
    dist.barrier()
    dist.destroy_process_group()


def test_batch_dice_is_gathered_across_ranks(tmp_path):
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), out), nprocs=2, join=True)
    logits, target = _inputs()
    for name, make in _losses().items():
        x = logits.clone().requires_grad_(True)
        full = make()(x, target)  # one process, the whole batch (ddp is a no-op without a process group)
        full.backward()
        for rank in range(2):
            value, grad = out[(name, rank)]
            grad = torch.tensor(grad)
            assert value == pytest.approx(full.item(), abs=1e-6), name
            # like nnU-Net's AllGatherGrad, the gathered sums' gradients are summed over the ranks
            assert torch.allclose(grad, 2 * x.grad[rank * 2: rank * 2 + 2], atol=1e-6), name
