"""``nnunet-losses``: the command line of the toolkit."""
from __future__ import annotations

import argparse
import sys


def _cmd_losses(args) -> int:
    from .registry import describe

    print(describe())
    return 0


def _cmd_loss_demo(args) -> int:
    from .loss_demo import DEFAULT_LOSSES, run_demo

    losses = args.losses.split(",") if args.losses else DEFAULT_LOSSES
    run_demo(losses, steps=args.steps, batch_size=args.batch_size, seed=args.seed, json_out=args.json,
             log_every=args.log_every)
    return 0


def _cmd_trainers_path(args) -> int:
    import os

    from . import ext_trainers

    print(os.path.dirname(os.path.abspath(ext_trainers.__file__)))
    return 0


def _cmd_trainers(args) -> int:
    from .nnunet.naming import GRAMMAR
    from .nnunet.trainers import FAMILIES, MAP_FAMILIES
    from .registry import get_spec

    print("nnU-Net trainers (export nnUNet_extTrainer=$(nnunet-losses trainers-path)):")
    print(f"  name grammar: {GRAMMAR}")
    print("  training tokens: _ep<epochs> _it<iterations per epoch> _adam|_sgd _lr<initial lr> _s<seed>; "
          "map-based families also take _online (maps computed in the loader workers)")
    for family in FAMILIES.values():
        spec = get_spec(family.loss)
        print(f"\n{family.name}  (loss {family.loss!r}: {spec.paper}, {spec.equation})")
        print(f"    {family.doc}")
        defaults = spec.defaults()
        for p in family.name_params:
            if p.kind == "flag":
                print(f"    _{p.code}: sets {p.loss_param}={p.flag_value!r} (default {defaults[p.loss_param]!r})")
            else:
                print(f"    _{p.code}<number>: {p.loss_param} (default {defaults[p.loss_param]!r})")
        if family.name in MAP_FAMILIES:
            print(f"    map: {spec.needs_map}")
        print(f"    example: {family.example or family.name}")
    return 0


def _cmd_precompute_maps(args) -> int:
    from .nnunet.precompute import precompute_maps, resolve_dataset

    data_folder, label_manager, is_2d, spacing = resolve_dataset(args.d, args.c, args.p)
    if label_manager.has_regions:
        raise ValueError("region-based datasets: the map-based losses (RW, boundary) are softmax-only")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    summary = precompute_maps(data_folder, kinds, label_manager.num_segmentation_heads, is_2d,
                              None if args.voxel_units else spacing, num_processes=args.np,
                              progress=not args.no_progress)
    print(f"maps in {summary['folder']}: {summary['computed']} case(s) computed, {summary['up_to_date']} up to "
          f"date ({summary['stale_before']} stale before), kinds {', '.join(summary['kinds'])}")
    return 0


def _cmd_demo(args) -> int:
    from .nnunet.demo import DEFAULT_TRAINERS, run_demo

    trainers = args.trainers.split(",") if args.trainers else DEFAULT_TRAINERS
    run_demo(args.root, trainers, epochs=args.epochs, iterations=args.iterations, json_out=args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-losses",
        description="Class-imbalance losses for nnU-Net v2: Combo, Region-wise (RRW, boundary, AC), IoU_xy, "
                    "TopK Dice, and the baselines they compare against.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("losses", help="list every loss with its paper, equation, parameters and defaults")
    p.set_defaults(func=_cmd_losses)

    p = sub.add_parser("trainers", help="list the nnU-Net trainer families, their name grammar, parameters and "
                                        "defaults")
    p.set_defaults(func=_cmd_trainers)

    p = sub.add_parser("trainers-path", help="print the folder to export as nnUNet_extTrainer")
    p.set_defaults(func=_cmd_trainers_path)

    p = sub.add_parser("precompute-maps", help="write RRW/boundary maps beside nnU-Net's preprocessed data",
                       description="Computes the maps of the map-based trainers (RRWTrainer: rrw; RWBoundaryTrainer, "
                                   "DiceBoundaryTrainer, CEBoundaryTrainer: boundary) for every preprocessed case "
                                   "into <data_identifier>_maps/ beside the data folder. Per slice for 2D "
                                   "configurations, 3D for 3D ones. Resumes: up-to-date maps are skipped, stale "
                                   "ones (re-preprocessed data) recomputed.")
    p.add_argument("-d", required=True, help="dataset id or name (as for nnUNetv2_train)")
    p.add_argument("-c", required=True, help="configuration, e.g. 2d or 3d_fullres")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-np", type=int, default=1, help="number of processes (default 1)")
    p.add_argument("--kinds", default="rrw,boundary", help="comma-separated map kinds (default rrw,boundary)")
    p.add_argument("--voxel-units", action="store_true",
                   help="distances in voxels (as the RW paper's code) instead of the configuration's spacing "
                        "(the default; 2D configurations use the in-plane spacing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_precompute_maps)

    p = sub.add_parser("demo", help="the main job: every trainer family end to end with nnU-Net's own commands on "
                                    "a generated imbalanced 2D dataset (CPU, ~10 min)",
                       description="Generates a small imbalanced 2D dataset in nnU-Net raw format, runs "
                                   "nnUNetv2_plan_and_preprocess, nnunet-losses precompute-maps, nnUNetv2_train for "
                                   "every trainer (a short CPU run), nnUNetv2_predict on the test images, and prints "
                                   "per-class Dice as a table. Every step resumes: rerun after an interruption.")
    p.add_argument("--root", default="nnunet_losses_demo",
                   help="working folder holding nnUNet_raw/preprocessed/results (default ./nnunet_losses_demo)")
    p.add_argument("--trainers", default=None, help="comma-separated trainer names (default: one per family)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per training (default 4)")
    p.add_argument("--iterations", type=int, default=50, help="iterations per epoch (default 50)")
    p.add_argument("--json", default=None, help="results JSON (default ROOT/demo_results.json)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("loss-demo", help="train a small U-Net in-process with each loss (no nnU-Net pipeline) on a "
                                         "generated imbalanced 2D dataset and print per-class Dice (CPU, ~1 min)",
                       description="Generates 96 training and 24 test images (64x64, three foreground classes of "
                                   "very different sizes), trains nnU-Net's PlainConvUNet with deep supervision "
                                   "for --steps steps with every loss, and prints per-class Dice on the test "
                                   "images.")
    p.add_argument("--losses", default=None,
                   help="comma-separated loss names (default: all; see `nnunet-losses losses`)")
    p.add_argument("--steps", type=int, default=60, help="training steps per loss (default 60)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, network and sampling (default 0)")
    p.add_argument("--log-every", type=int, default=20, help="print the loss every N steps (0: never)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(func=_cmd_loss_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (KeyError, ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"nnunet-losses {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
