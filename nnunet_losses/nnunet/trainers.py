"""nnU-Net trainers for every loss, generated from their names (see :mod:`nnunet_losses.naming`).

``nnUNetv2_train 27 2d 0 -tr ComboTrainer_a0p5_b0p7`` finds the class through the shim module in
``trainers/`` (installed as ``nnunet_losses/ext_trainers/``; ``nnUNet_extTrainer``, printed by ``nnunet-losses
trainers-path``), which re-exports this module's module-level ``__getattr__`` (PEP 562): a name that parses
is turned into a subclass of :class:`LossTrainer`, cached, with ``__name__`` equal to the requested name, so the
output folder, the checkpoint's ``trainer_name`` and pickling all see one stable class.
"""
from __future__ import annotations

import difflib
import glob
import os
import random
import sys
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from nnunetv2.configuration import default_num_processes
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from .._files import atomic_file, atomic_write_json, remove_partial_files
from ..catalogue import FAMILIES, ONLINE_MAP_FAMILIES, map_source
from ..errors import StepFailed
from ..losses import compile_loss
from ..registry import build_loss, get_spec
from .map_pipeline import MapPipeline
from .precompute import describe_units, ensure_maps, maps_folder, units_flag
from ..naming import ParsedName, TrainerNameError, check_name, explain



class _MapFedLoss(nn.Module):
    """Calls the deep-supervised loss with the maps of the current batch as third argument."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss
        self.maps: Optional[List[torch.Tensor]] = None

    def forward(self, output, target):
        if self.maps is None:
            raise RuntimeError("map-based loss called without maps for this batch")
        maps, self.maps = self.maps, None
        # DeepSupervisionWrapper would truncate silently
        if isinstance(output, (list, tuple)) and not (len(output) == len(target) == len(maps)):
            raise RuntimeError(f"deep supervision: {len(output)} outputs, {len(target)} targets, {len(maps)} maps")
        return self.loss(output, target, maps)


def _honour_omp_num_threads(device: torch.device) -> Optional[int]:
    """On the CPU, nnUNetv2_train gives torch every core (``torch.set_num_threads(cpu_count())``), overriding an
    ``OMP_NUM_THREADS`` the user set; two trainings side by side then fight over the cores. Our trainers give that
    variable back its meaning (``reproduce -j 2``, the demo). Returns the threads torch uses on the CPU, else None."""
    if device.type != "cpu":
        return None
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        torch.set_num_threads(int(wanted))
    return torch.get_num_threads()


class LossTrainer(nnUNetTrainer):
    """nnU-Net's trainer with the loss (and optimizer/epochs/seed) chosen by the class name."""

    parsed: ParsedName = None  # set on generated subclasses

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if self.parsed is None:
            raise TypeError("LossTrainer is a base class; use a generated name such as ComboTrainer")
        seed = self.parsed.seed
        if seed is not None:  # before nnU-Net builds anything random
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        # nnunetv2 >= 2.7 pops this key, which only nnUNetv2_train sets: code that builds a trainer itself works too
        plans.setdefault("continue_training", False)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.cpu_threads = _honour_omp_num_threads(self.device)
        p = self.parsed
        if p.epochs is not None:
            self.num_epochs = p.epochs
        if p.iterations is not None:
            self.num_iterations_per_epoch = p.iterations
            # keep nnU-Net's 5:1 ratio of training to validation iterations
            self.num_val_iterations_per_epoch = max(1, p.iterations // 5)
        if p.resolved_lr() is not None:  # the name's _lr, the family's default (docs/learning.md), Adam's 1e-4
            self.initial_lr = p.resolved_lr()
        self.loss_spec = get_spec(p.family.loss)
        if self.label_manager.has_regions and not self.loss_spec.supports_regions:
            raise StepFailed(f"{type(self).__name__}: the loss {p.family.loss!r} does not support region-based "
                             f"datasets (dataset.json 'regions'); use a softmax label dataset")
        # the map the loss takes and where it is made (catalogue.map_source, from the table maps.KINDS)
        self.map_pipeline = MapPipeline.from_source(map_source(p), self.label_manager.num_segmentation_heads)
        self.map_kind = self.map_pipeline.kind
        self.precomputed_maps = self.map_pipeline.precomputed

    # ----------------------------------------------------------------------------------------------- loss
    def _class_weights(self) -> List[float]:
        """Inverse class frequencies measured on this fold's training cases (preprocessed segmentations)."""
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        from ..losses import inverse_frequency_weights

        tr_keys, _ = self.do_split()
        dataset = infer_dataset_class(self.preprocessed_dataset_folder)(self.preprocessed_dataset_folder, tr_keys)
        num_classes = self.label_manager.num_segmentation_heads
        counts = np.zeros(num_classes, dtype=np.float64)
        for key in tr_keys:
            seg = np.asarray(dataset.load_case(key)[1])
            valid = seg[(seg >= 0) & (seg < num_classes)]
            counts += np.bincount(valid.astype(np.int64).ravel(), minlength=num_classes)[:num_classes]
        self.print_to_log_file(f"nnunet-losses: class voxel counts on {len(tr_keys)} training cases: "
                               f"{counts.astype(int).tolist()}")
        return inverse_frequency_weights(counts)

    def _build_loss(self):
        p = self.parsed
        class_weights = self._class_weights() if self.loss_spec.needs_class_weights else None
        self.loss_context = {"ignore_label": self.label_manager.ignore_label,
                             "regions": self.label_manager.has_regions,
                             "batch_dice": bool(self.configuration_manager.batch_dice), "ddp": self.is_ddp,
                             "class_weights": class_weights}
        # on the training device, with its constants (class weights): no copy to the device per call
        self.base_loss = build_loss(p.family.loss, **self.loss_context, **p.loss_kwargs()).to(self.device)
        self.loss_params = self.loss_spec.resolve(**p.loss_kwargs())
        loss = self.base_loss
        if self._do_i_compile():  # nnU-Net's switch (nnUNet_compile, CUDA only); nnU-Net compiles only its own Dice
            self.print_to_log_file("nnunet-losses: Using torch.compile for the loss...")
            loss = compile_loss(loss)
            if self.map_pipeline.compile_rebuild():
                self.print_to_log_file("nnunet-losses: Using torch.compile for the map rebuilt on the device...")
        if self.enable_deep_supervision:
            scales = self._get_deep_supervision_scales()
            weights = np.array([1 / (2 ** i) for i in range(len(scales))])
            weights[-1] = 1e-6 if self.is_ddp and not self._do_i_compile() else 0
            weights = weights / weights.sum()
            loss = DeepSupervisionWrapper(loss, weights)
        if self.map_kind is not None:
            loss = _MapFedLoss(loss)
        self.print_to_log_file(f"nnunet-losses: {type(self).__name__}: loss {p.family.loss!r} "
                               f"({self.loss_spec.paper}, {self.loss_spec.equation}) params {self.loss_params}; "
                               f"context {self.loss_context}; training {self._training_summary()}; "
                               f"module {self.base_loss!r}")
        return loss

    def _training_summary(self) -> Dict[str, Any]:
        return {"epochs": self.num_epochs, "iterations_per_epoch": self.num_iterations_per_epoch,
                "val_iterations_per_epoch": self.num_val_iterations_per_epoch,
                "optimizer": self.parsed.resolved_optimizer(), "initial_lr": self.initial_lr,
                "fused_adam": self.parsed.resolved_optimizer() == "adam" and self._fused_adam(),
                "seed": self.parsed.seed, "cpu_threads": self.cpu_threads,
                "maps": self.map_kind and self._map_source(), "combo_sums": self._combo_sums()}

    def _combo_sums(self) -> Optional[str]:
        """What computes Combo's softmax sums (label mode): the fused C kernel on the CPU, else PyTorch ops."""
        if self.parsed.family.loss != "combo" or self.label_manager.has_regions:
            return None
        if self.device.type != "cpu":
            return "PyTorch ops" + (", compiled" if self._do_i_compile() else "")
        return self.base_loss.implementation

    def _map_source(self) -> str:
        """Where the maps come from: precomputed files, the loader workers (online) or the training device."""
        return self.map_pipeline.made

    def write_settings(self) -> str:
        """Write the resolved settings to ``<output_folder>/nnunet_losses.json`` (atomically). ``paper`` is the short
        citation the registry shows; ``references`` the full reference, DOI and arXiv id of every work it cites."""
        settings = {"trainer": type(self).__name__, "family": self.parsed.family.name,
                    "loss": self.parsed.family.loss, "paper": self.loss_spec.paper,
                    "equation": self.loss_spec.equation,
                    "references": [paper.as_dict() for paper in self.loss_spec.references()],
                    "loss_params": self.loss_params,
                    "context": self.loss_context, "training": self._training_summary(),
                    "schedule": self.schedule_state()}
        return atomic_write_json(os.path.join(self.output_folder, "nnunet_losses.json"), settings, indent=2,
                                 default=str)

    # ------------------------------------------------------------------------------------------ optimizer
    def configure_optimizers(self):
        if self.parsed.resolved_optimizer() != "adam":
            return super().configure_optimizers()
        # torch's fused kernel where it has one: the same update, 70 -> 16 ms per step for nnU-Net's 2D network on
        # 2 CPU cores (BENCHMARKS.md, Whole train_step)
        optimizer = torch.optim.Adam(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                     fused=True if self._fused_adam() else None)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def _fused_adam(self) -> bool:
        return self.device.type in ("cpu", "cuda")

    # ----------------------------------------------------------------------------------------------- maps
    def precompute_command(self) -> str:
        return (f"nnunet-losses precompute-maps -d {self.plans_manager.dataset_name} -c {self.configuration_name} "
                f"-p {self.plans_manager.plans_name}")

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        if not self.precomputed_maps:
            if self.map_kind is not None:
                where = ("built on the training device from each deep-supervision scale's labels"
                         if self.map_pipeline.on_device else "computed in the loader workers after augmentation")
                self.print_to_log_file(f"nnunet-losses: {self.map_kind!r} maps {where}")
            return dataset_tr, dataset_val
        cases = list(dataset_tr.identifiers) + list(dataset_val.identifiers)
        kind = self.map_pipeline.stored_kind
        # missing or stale maps are made here, before the first iteration (nnUNet_losses_make_maps=f: refused)
        settings = ensure_maps(self.preprocessed_dataset_folder, cases, kind, self.precompute_command(),
                               num_classes=self.label_manager.num_segmentation_heads,
                               is_2d=len(self.configuration_manager.patch_size) == 2,
                               spacing=self.configuration_manager.spacing, log=self.print_to_log_file,
                               num_processes=min(default_num_processes, os.cpu_count() or 1))
        variant = " minus Y (the RW authors' variant)" if self.map_kind == "boundary_authors" else ""
        self.print_to_log_file(f"nnunet-losses: using precomputed {kind!r} maps{variant} from "
                               f"{maps_folder(self.preprocessed_dataset_folder)}, distances in "
                               f"{describe_units(settings)}")
        command = self.precompute_command() + units_flag(settings)
        return self.map_pipeline.wrap(dataset_tr, command), self.map_pipeline.wrap(dataset_val, command)

    def get_training_transforms(self, *args, **kwargs):
        return self.map_pipeline.add_to(nnUNetTrainer.get_training_transforms(*args, **kwargs))

    def get_validation_transforms(self, *args, **kwargs):
        return self.map_pipeline.add_to(nnUNetTrainer.get_validation_transforms(*args, **kwargs))

    def _take_maps(self, batch: dict) -> dict:
        if self.map_kind is None:
            return batch
        target, maps = self.map_pipeline.take(batch, self.device)
        self.loss.maps = [maps] if self.enable_deep_supervision and not isinstance(maps, list) else maps
        return {**batch, "target": target}

    def train_step(self, batch: dict) -> dict:
        return super().train_step(self._take_maps(batch))

    def validation_step(self, batch: dict) -> dict:
        return super().validation_step(self._take_maps(batch))

    # ------------------------------------------------------------------------------------- schedule state
    def schedule_state(self) -> Optional[dict]:
        schedule = getattr(getattr(self, "base_loss", None), "schedule", None)
        return schedule.state_dict() if schedule is not None else None

    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0:
            self.write_settings()
            # left by a kill during save_checkpoint; the checkpoint itself is whole
            partial = remove_partial_files(os.path.join(glob.escape(self.output_folder), "checkpoint_*.pth"))
            if partial:
                self.print_to_log_file(f"nnunet-losses: removed {len(partial)} partial checkpoint(s) of an "
                                       "interrupted save")

    def on_epoch_end(self):
        schedule = getattr(self.base_loss, "schedule", None)
        if schedule is not None:
            self.print_to_log_file(f"nnunet-losses: schedule alpha this epoch {schedule.alpha}")
            schedule.step()  # epochs done = the epoch counter nnU-Net's checkpoints of this epoch store
        super().on_epoch_end()
        if self.local_rank == 0:
            self.write_settings()  # nnunet_losses.json holds the schedule of the checkpoints just written

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written to a temporary file and renamed into place: a kill while it is written
        (SLURM preemption) leaves the previous checkpoint whole, so that ``--c`` can always continue."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)  # writes nothing
        with atomic_file(filename, "wb") as f:
            super().save_checkpoint(f)  # nnU-Net hands its argument to torch.save, which takes a file object

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """nnU-Net's ``--c``; the schedule is rebuilt from nnU-Net's epoch counter (alpha is a function of the
        epochs done), so that every checkpoint nnU-Net can continue from gives the schedule of its epoch."""
        super().load_checkpoint(filename_or_checkpoint)
        schedule = getattr(self.base_loss, "schedule", None)
        if schedule is None:
            return
        schedule.load_state_dict({"epochs_done": self.current_epoch})
        self.print_to_log_file(f"nnunet-losses: restored schedule from checkpoint (epoch {self.current_epoch}): "
                               f"{schedule!r}")


_CACHE: Dict[str, type] = {}


def trainer_class(name: str) -> type:
    """The trainer class for ``name`` (generated once, then cached). Raises TrainerNameError if malformed."""
    if name in _CACHE:
        return _CACHE[name]
    parsed = check_name(name)
    cls = type(name, (LossTrainer,), {"parsed": parsed, "__module__": __name__, "__qualname__": name,
                                      "__doc__": f"{parsed.family.doc}. Generated from the name {name!r}."})
    _CACHE[name] = cls
    return cls


def _looks_like_ours(name: str) -> bool:
    """A family name or a near miss (``ComboTrainr``); nnU-Net's own names and other words stay plain lookups."""
    head = name.split("_", 1)[0]
    if name.startswith(("__", "nnUNet")):
        return False
    return head in FAMILIES or bool(difflib.get_close_matches(head, FAMILIES, n=1, cutoff=0.85))


_REFUSED: List[str] = []


def _repeat_refusal_after_traceback(kind, value, traceback) -> None:
    """sys.excepthook after a refusal: nnU-Net's lookup answers a refused name with its own 'could not find
    trainer' error and traceback; our message, the actual reason, is printed again after it."""
    sys.__excepthook__(kind, value, traceback)
    print(f"\n{_REFUSED[-1]}\n  (nnU-Net's 'Could not find requested nnunet trainer' error above is this refusal)",
          file=sys.stderr)


def __getattr__(name: str):
    """PEP 562 hook: nnU-Net's ``hasattr(module, name)`` lookup generates the class on demand."""
    if not _looks_like_ours(name):
        raise AttributeError(name)
    try:
        return trainer_class(name)
    except TrainerNameError as err:
        message = explain(name, err, FAMILIES, ONLINE_MAP_FAMILIES, check_name)
        print(message, file=sys.stderr)  # nnU-Net's hasattr() swallows the AttributeError text
        _REFUSED.append(message)
        if sys.excepthook is sys.__excepthook__:
            sys.excepthook = _repeat_refusal_after_traceback
        raise AttributeError(message) from None


def __dir__():
    return sorted(list(globals()) + list(FAMILIES))
