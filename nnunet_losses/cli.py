"""``nnunet-losses``: the command line of the toolkit.

Each command is a pair, side by side: ``run_<command>(args)`` does the work (importing what it needs, so that
``--help`` stays fast) and ``add_<command>(subparsers)`` declares its flags; :data:`COMMANDS` lists them in the order
``--help`` shows them. Errors a user can fix (:class:`~nnunet_losses.errors.UserError`: a bad value or name, a
missing input, an existing output, a failed step) and operating-system errors that name a file (no such file,
permission denied) are printed as one line with exit status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ._args import positive_int
from .errors import InvalidInput, MissingInput, UserError
from .report.catalogue import MEANS, PLOTS, REPORT_METRICS
from .synthetic_images import GENERATORS


def add_model_arguments(p, required: bool, trainer_help: str) -> None:
    """nnU-Net's -d -c -tr -p, as nnUNetv2_train and nnUNetv2_predict spell them."""
    p.add_argument("-d", required=required, default=None, help="dataset id or name")
    p.add_argument("-c", required=required, default=None, help="configuration, e.g. 2d or 3d_fullres")
    p.add_argument("-tr", required=required, default=None, help=trainer_help)
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")


def run_losses(args) -> int:
    from .registry import describe

    if args.markdown:
        from .doc_tables import LOSS_TABLES

        print(LOSS_TABLES[args.markdown]())
        return 0
    print(describe())
    return 0


def add_losses(sub) -> None:
    p = sub.add_parser("losses", help="list every loss with its paper, equation, parameters and defaults")
    p.add_argument("--markdown", choices=("losses", "references"), default=None,
                   help="print one table of documentation/losses.md instead: losses (name, class, paper and "
                        "equation, parameters, regions) or references (every work cited)")
    p.set_defaults(func=run_losses)


def run_loss_demo(args) -> int:
    from . import loss_demo

    losses = args.losses.split(",") if args.losses else loss_demo.DEFAULT_LOSSES
    loss_demo.run_demo(losses, steps=args.steps, batch_size=args.batch_size, seed=args.seed, json_out=args.json,
             log_every=args.log_every)
    return 0


def add_loss_demo(sub) -> None:
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
    p.set_defaults(func=run_loss_demo)


def run_trainers_path(args) -> int:
    from . import ext_trainers

    print(os.path.dirname(os.path.abspath(ext_trainers.__file__)))
    return 0


def add_trainers_path(sub) -> None:
    p = sub.add_parser("trainers-path", help="print the folder to export as nnUNet_extTrainer")
    p.set_defaults(func=run_trainers_path)


def run_doctor(args) -> int:
    from .nnunet.doctor import FAIL, report, run_checks

    checks = run_checks(args.d, args.c, args.tr, args.p)
    print(report(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


def add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check the set-up a training or prediction needs, one line per check with "
                                      "its fix (exit status 1 when a check fails)",
                       description="Checks and explains, one line each (ok, warn, FAIL): nnU-Net and torch "
                                   "versions; the device and whether nnU-Net compiles there; nnUNet_raw, "
                                   "nnUNet_preprocessed, nnUNet_results; nnUNet_extTrainer, with nnU-Net's own "
                                   "trainer lookup; the C compiler of Combo's CPU kernel. -tr: the trainer name. "
                                   "-d/-c: the preprocessed dataset, the precomputed maps the trainer reads (every "
                                   "byte verified, as at training start) and the disk space for them. Writes "
                                   "nothing.")
    add_model_arguments(p, required=False, trainer_help="trainer name, e.g. RRWTrainer or ComboTrainer_a0p5_b0p7")
    p.set_defaults(func=run_doctor)


def run_trainers(args) -> int:
    from .naming import GRAMMAR
    from .catalogue import FAMILIES, map_source
    from .maps import DEVICE, ONLINE, PRECOMPUTED
    from .registry import REGISTRY, cited_by, get_spec, references_text

    if args.markdown:
        from .doc_tables import TRAINER_TABLES

        print(TRAINER_TABLES[args.markdown]())
        return 0
    print("nnU-Net trainers (export nnUNet_extTrainer=$(nnunet-losses trainers-path)):")
    print(f"  name grammar: {GRAMMAR}")
    print("  training tokens: _ep<epochs> _it<iterations per epoch> _adam|_sgd _lr<initial lr> _s<seed>; "
          "map-based families also take _online (maps computed in the loader workers)")
    for family in FAMILIES.values():
        spec = get_spec(family.loss)
        print(f"\n{family.name}  (loss {family.loss!r}: {spec.paper}, {spec.equation})")
        print(f"    {family.doc}")
        defaults = {**spec.defaults(), **family.default_params}
        for p in family.name_params:
            if p.kind == "flag":
                print(f"    _{p.code}: sets {p.loss_param}={p.flag_value!r} (default {defaults[p.loss_param]!r})")
            else:
                print(f"    _{p.code}<number>: {p.loss_param} (default {defaults[p.loss_param]!r})")
        source = map_source(family)
        if source is not None:
            made = {PRECOMPUTED: "precomputed", ONLINE: "computed in the loader workers",
                    DEVICE: "built on the training device from the labels"}[source.made]
            online = "; _online: computed in the loader workers instead" if source.online_option else ""
            print(f"    map: {source.kind} ({made}{online})")
        if family.optimizer:
            print(f"    default optimizer: {family.optimizer} lr {family.lr} (nnU-Net's SGD: _sgd; see docs/learning.md)")
        print(f"    example: {family.example or family.name}")
    print("\n" + references_text(cited_by(REGISTRY[f.loss] for f in FAMILIES.values())))
    return 0


def add_trainers(sub) -> None:
    p = sub.add_parser("trainers", help="list the nnU-Net trainer families, their name grammar, parameters and "
                                        "defaults")
    p.add_argument("--markdown", choices=("families", "name-parameters"), default=None,
                   help="print one table of documentation/trainers.md instead: families (loss, name parameters, "
                        "maps, optimiser) or name-parameters (every token of a trainer name)")
    p.set_defaults(func=run_trainers)


def run_precompute_maps(args) -> int:
    from .nnunet.datasets import resolve_dataset
    from .nnunet.precompute import precompute_maps

    data_folder, label_manager, is_2d, spacing = resolve_dataset(args.d, args.c, args.p)
    if label_manager.has_regions:
        raise InvalidInput("region-based datasets: the map-based losses (RW, boundary) are softmax-only")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        summary = precompute_maps(data_folder, kinds, label_manager.num_segmentation_heads, is_2d,
                                  None if args.voxel_units else spacing, num_processes=args.np,
                                  progress=not args.no_progress)
    except OSError as err:  # read-only data, full disk, no data: one line that names the folder or file
        print(f"nnunet-losses precompute-maps: error: {err}", file=sys.stderr)
        return 2
    leftovers = summary.get("leftovers_removed", 0)
    print(f"maps in {summary['folder']}: {summary['computed']} case(s) computed, {summary['up_to_date']} up to "
          f"date ({summary['stale_before']} stale, {summary['corrupt_before']} corrupt before), kinds "
          f"{', '.join(summary['kinds'])}" + (f"; {leftovers} temporary file(s) of killed writes removed"
                                              if leftovers else ""))
    return 0


def add_precompute_maps(sub) -> None:
    from .maps import STORED_KINDS

    p = sub.add_parser("precompute-maps", help="write RRW/boundary maps beside nnU-Net's preprocessed data",
                       description="Computes the maps of the map-based trainers (RRWTrainer: rrw; RWBoundaryTrainer, "
                                   "DiceBoundaryTrainer, CEBoundaryTrainer: boundary) for every preprocessed case "
                                   "into <data_identifier>_maps/ beside the data folder. Per slice for 2D "
                                   "configurations, 3D for 3D ones. Resumes: up-to-date maps (every byte "
                                   "checked) are skipped, stale or corrupt ones recomputed. Several runs on one "
                                   "dataset at once (jobs of several folds) all finish.")
    p.add_argument("-d", required=True, help="dataset id or name (as for nnUNetv2_train)")
    p.add_argument("-c", required=True, help="configuration, e.g. 2d or 3d_fullres")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-np", type=positive_int, default=1, help="number of processes (default 1)")
    p.add_argument("--kinds", default=",".join(STORED_KINDS),
                   help=f"comma-separated map kinds (default {','.join(STORED_KINDS)})")
    p.add_argument("--voxel-units", action="store_true",
                   help="distances in voxels (as the RW paper's code) instead of the configuration's spacing "
                        "(the default; 2D configurations use the in-plane spacing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_precompute_maps)


def run_small_plans(args) -> int:
    from .nnunet.small_plans import write_small_plans

    small = write_small_plans(args.d, args.c, features=args.features, batch_size=args.batch_size, source=args.p)
    done = {"wrote": f"wrote {small.path} ({small.configuration})",
            "added": f"added {small.configuration} to {small.path} (it holds {', '.join(small.configurations)})",
            "unchanged": f"{small.path} already holds {small.configuration} with these settings (unchanged)"}
    print(f"{done[small.action]}: features per stage {small.features_per_stage}, batch {small.batch_size}; shares "
          f"the preprocessed data {small.data_identifier} (and its maps) of {small.source_file}; use it with "
          f"-p {small.name}")
    return 0


def add_small_plans(sub) -> None:
    p = sub.add_parser("small-plans", help="write CPU-sized plans (narrower network, CPU batch) that share nnU-Net's "
                                           "preprocessed data and maps; use them with -p",
                       description="Copies one configuration of nnU-Net's plans <plans>.json (-p) into "
                                   "<plans>_small_f<F>_b<B>.json beside it with features per stage F, 2F, 4F, ... "
                                   "(capped at 16F) and batch size B; everything else, including the "
                                   "data_identifier (so the preprocessed data and precomputed maps are shared), "
                                   "stays nnU-Net's. Another -c adds its configuration to the same file; a file of "
                                   "that name from other plans or settings is never overwritten. Use the printed "
                                   "name with -p in nnUNetv2_train, nnUNetv2_predict, nnunet-losses precompute-maps "
                                   "and in experiment specs (plans = ...).")
    p.add_argument("-d", required=True, help="dataset id or name")
    p.add_argument("-c", required=True, help="configuration, e.g. 2d")
    p.add_argument("-p", default="nnUNetPlans", help="source plans identifier (default nnUNetPlans)")
    p.add_argument("--features", type=int, default=8, help="features of the first stage (default 8; nnU-Net: 32)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 8 for 2D, 2 for 3D)")
    p.set_defaults(func=run_small_plans)


def run_export_model(args) -> int:
    from .nnunet.export import describe_export, export_model

    record = export_model(args.d, args.c, args.tr, args.o, plans=args.p, folds=args.f, checkpoints=args.chk)
    print(describe_export(record, args.o))
    return 0


def add_export_model(sub) -> None:
    p = sub.add_parser("export-model", help="write a trained model as nnU-Net's model zip that a stock nnU-Net "
                                            "without nnunet-losses installs and predicts with (as nnUNetTrainer)",
                       description="As nnUNetv2_export_model_to_zip, for a model trained with one of our trainers: "
                                   "the model folder and each checkpoint's trainer_name say nnUNetTrainer (our "
                                   "trainers build nnU-Net's own network), the checkpoints hold plain data only, and "
                                   "nnunet_losses_export.json (with each fold's nnunet_losses.json) records the "
                                   "original trainer and loss. nnUNetv2_install_pretrained_model_from_zip OUT.zip, "
                                   "then nnUNetv2_predict ... -tr nnUNetTrainer give the original model's "
                                   "predictions.")
    add_model_arguments(p, required=True, trainer_help="the trainer the model was trained with, e.g. RRWTrainer")
    p.add_argument("-f", nargs="+", default=None, help="folds (numbers or all; default: every fold with the "
                                                       "checkpoint)")
    p.add_argument("--chk", nargs="+", default=["checkpoint_final.pth"],
                   help="checkpoint file names in the fold folders (default checkpoint_final.pth)")
    p.add_argument("-o", required=True, help="output zip file (must not exist)")
    p.set_defaults(func=run_export_model)


def run_demo(args) -> int:
    from . import demo

    trainers = demo.ALL_TRAINERS if args.trainers == "all" else args.trainers.split(",") if args.trainers else None
    demo.run_demo(args.root, trainers, epochs=args.epochs, iterations=args.iterations, json_out=args.json,
                  full_plans=args.full_plans, dry_run=args.dry_run, jobs=args.jobs, fair=args.fair)
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: nnU-Net's default and one trainer per paper end to end with "
                                    "nnU-Net's own commands on a generated imbalanced 2D dataset (CPU)",
                       description="Runs the experiment spec configs/demo.toml with the reproduce runner, nnU-Net's "
                                   "folders under --root: generates a small imbalanced 2D dataset in nnU-Net raw "
                                   "format, runs nnUNetv2_plan_and_preprocess, nnunet-losses small-plans (8-128 "
                                   "features, batch 8, the same preprocessed data), precompute-maps, and per trainer "
                                   "nnUNetv2_train -p (a short CPU run, whose final validation predicts fold 0's "
                                   "held-out cases) and nnunet-losses evaluate; then nnunet-losses report, and prints per-class Dice and "
                                   "HD95 as a table. Every step resumes: rerun after an interruption.")
    p.add_argument("--root", default="nnunet_losses_demo",
                   help="working folder holding nnUNet_raw/preprocessed/results (default ./nnunet_losses_demo)")
    p.add_argument("--trainers", default=None,
                   help="comma-separated trainer names, or 'all' (every family); default: those of "
                        "configs/demo.toml, nnU-Net's DiceCETrainer and one per paper (Combo, RRW, Dice+Boundary, "
                        "IoU_xy, CE + TopK Dice)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs per training (default: the spec's, 8)")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="iterations per epoch (default: the spec's, 100)")
    p.add_argument("--fair", action="store_true",
                   help="also train Dice+CE with every optimiser the other trainers use (the defaults: Adam 1e-3 for "
                        "RRW, Dice+Boundary and IoU_xy), and test each loss against Dice+CE trained with its own "
                        "optimiser: one more training")
    p.add_argument("--full-plans", action="store_true",
                   help="train with nnU-Net's own plans (32-512 features) instead of the CPU-sized small plans")
    p.add_argument("--jobs", "-j", type=positive_int, default=None,
                   help="trainings side by side, each with cores/jobs torch threads (OMP_NUM_THREADS); default: 2 "
                        "when the machine has 2 cores or more (measured faster than one at a time with every core)")
    p.add_argument("--json", default=None, help="results JSON (default ROOT/demo_results.json)")
    p.add_argument("--dry-run", action="store_true", help="print every command with its status [done]/[todo]")
    p.set_defaults(func=run_demo)


def run_evaluate(args) -> int:
    from .evaluation import format_summary, parse_class_arguments, parse_tolerances, validation_cases
    from .nnunet.evaluation import evaluate_folder

    classes = parse_class_arguments(args.l) if args.l else None
    if args.o and os.path.isdir(args.o):
        raise InvalidInput(f"-o {args.o} is a folder: -o takes a JSON file path (e.g. "
                           f"{os.path.join(args.o, 'metrics.json')})")
    output = args.o or os.path.join(args.pred_dir, "nnunet_losses_metrics.json")
    if (args.split is None) != (args.fold is None):
        raise InvalidInput("--split and --fold go together")
    expected = validation_cases(args.split, args.fold) if args.split else None
    result = evaluate_folder(args.pred_dir, args.gt_dir, classes=classes, dataset_json=args.dataset_json,
                             num_processes=args.np, output=output, progress=not args.no_progress,
                             both_empty=args.both_empty, nsd_tolerance=parse_tolerances(args.nsd_tolerance),
                             strict=args.strict, expected_cases=expected)
    print(format_summary(result, args.mean))
    print(f"wrote {output} and its per-case CSV")
    return 0


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="per-case, per-class Dice, IoU, HD, HD95 (pooled and max-directed), ASSD, "
                                        "NSD, FPR, FNR, precision, recall and volumes of a folder of predictions",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Evaluates every prediction in PRED_DIR against the file of the same name in "
                                   "GT_DIR (any format nnU-Net reads; spacing from the headers). Writes a JSON "
                                   "(per-case rows and a summary: mean, std, median, n, n_undefined per class) and "
                                   "a per-case CSV beside it.\n\n"
                                   "Surfaces are medpy's (mask minus its erosion, connectivity 1). hd95: 95th "
                                   "percentile of both directions pooled (medpy); hd95_max: the larger directed "
                                   "95th percentile (Metrics Reloaded, MONAI); nsd: share of both surfaces within "
                                   "the tolerance of the other.\n"
                                   "Empty masks: one empty -> Dice/IoU/NSD 0, distances = the image diagonal; both "
                                   "empty -> --both-empty exclude (default, nnU-Net's evaluator: undefined, left "
                                   "out of means, counted as n_undefined) or one (Dice/IoU/NSD 1, distances 0). "
                                   "FNR/recall undefined for an empty reference, precision for an empty "
                                   "prediction.\n"
                                   "Warnings (stderr and the JSON; errors with --strict): labels outside the "
                                   "classes and the ignore label, non-finite or non-integer values, a prediction "
                                   "whose direction or origin differs from its reference's, references without a "
                                   "prediction. Errors: a prediction without a reference, a file that cannot be "
                                   "read, a prediction whose shape or spacing differs from its reference's.")
    p.add_argument("pred_dir", help="folder of predicted segmentations")
    p.add_argument("gt_dir", help="folder of reference segmentations (e.g. nnUNet_preprocessed/DatasetX/"
                                  "gt_segmentations)")
    p.add_argument("-l", nargs="+", default=None, metavar="LABELS",
                   help="classes to evaluate: labels (-l 1 2 3) or regions as comma-separated labels "
                        "(-l 1,2,3 2,3 3). Default: the labels/regions of the dataset.json in or beside GT_DIR, "
                        "else every label found in the references")
    p.add_argument("-o", default=None, help="output JSON file path (default PRED_DIR/nnunet_losses_metrics.json); "
                                            "the CSV gets the same name with .csv")
    p.add_argument("--dataset-json", default=None, help="dataset.json giving labels, regions, ignore label and "
                                                        "file ending (default: found in or beside GT_DIR)")
    p.add_argument("-np", type=positive_int, default=1, help="number of processes (default 1)")
    p.add_argument("--both-empty", choices=("exclude", "one"), default="exclude",
                   help="a class absent from both masks: exclude (default; nnU-Net's evaluator: undefined, left out "
                        "of means and counted) or one (Dice/IoU/NSD 1, distances 0)")
    p.add_argument("--nsd-tolerance", nargs="+", default=None, metavar="MM",
                   help="NSD tolerance in mm: one value for every class, or CLASS=MM per class (default 1)")
    p.add_argument("--strict", action="store_true", help="turn every warning into an error (exit status 2)")
    p.add_argument("--split", default=None, help="nnU-Net's splits_final.json: with --fold, only that fold's "
                                                 "validation cases need a prediction")
    p.add_argument("--fold", default=None, help="fold of --split (a number or all)")
    p.add_argument("--mean", choices=MEANS, default="per-class",
                   help="the mean row printed: per-class (default) = the mean of the class means (nnU-Net's "
                        "foreground_mean); per-case = the mean over cases of each case's class mean. The JSON "
                        "holds both (foreground_mean, mean_foreground)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_evaluate)


def run_split(args) -> int:
    from .experiment.split import write_grouped_folds, write_half_split
    from .nnunet.datasets import resolve_dataset_folder

    if args.folds is not None and args.alternate is not None:
        raise InvalidInput("--folds and --alternate do not go together: --alternate writes one fold")
    folder = resolve_dataset_folder(args.d)
    if args.folds is None:
        path = write_half_split(folder, seed=args.seed, group=args.group, alternate=args.alternate, force=args.force)
    else:
        path = write_grouped_folds(folder, seed=args.seed, group=args.group, folds=args.folds, force=args.force)
    with open(path) as f:
        splits = json.load(f)
    if len(splits) == 1:
        print(f"{path}: fold 0 = {len(splits[0]['train'])} training / {len(splits[0]['val'])} validation cases")
    else:
        print(f"{path}: {len(splits)} folds, validation cases per fold: "
              f"{', '.join(str(len(fold['val'])) for fold in splits)}")
    return 0


def add_split(sub) -> None:
    p = sub.add_parser("split", help="write splits_final.json: the RW paper's half split (one fold), or N folds "
                                     "that keep --group's groups apart",
                       description="Writes nnU-Net's splits_final.json from the preprocessed cases. Default: one "
                                   "fold, half of the cases train and the other half validate (Valverde & Tohka, "
                                   "Region-wise loss for biomedical image segmentation, Pattern Recognition 2023), "
                                   "at random (--seed) or alternating (--alternate). --folds N: N folds (5 as "
                                   "nnU-Net's own split) in which every case validates once; the groups are "
                                   "shuffled with --seed and dealt to the folds, largest first, balancing case "
                                   "counts. Cases sharing --group's first capture group (e.g. the two frames of an "
                                   "ACDC patient) are never on both sides of a fold. Refuses to replace a different "
                                   "existing split unless --force.")
    p.add_argument("-d", required=True, help="dataset id or name")
    p.add_argument("--folds", type=int, default=None, metavar="N",
                   help="write N cross-validation folds by group instead of the one-fold half split (reproduce "
                        "writes --folds 5 for split = \"nnunet\" with a split_group)")
    p.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    p.add_argument("--alternate", type=int, choices=(0, 1), default=None,
                   help="instead of shuffling: every other sorted group trains, starting at this position (the "
                        "RW authors' scripts: 1 for ACDC17, 0 for BraTS18 and KiTS19)")
    p.add_argument("--group", default=None, help="regex whose first group names a case's group, e.g. "
                                                 "'^(patient\\d+)' for ACDC")
    p.add_argument("--force", action="store_true", help="replace an existing different split")
    p.set_defaults(func=run_split)


def run_synthetic_dataset(args) -> int:
    from .nnunet.synthetic import write_synthetic_dataset

    raw = args.o or os.environ.get("nnUNet_raw")
    if not raw:
        raise InvalidInput("give -o or set nnUNet_raw")
    others = [os.environ[k] for k in ("nnUNet_preprocessed", "nnUNet_results") if os.environ.get(k)]
    print(write_synthetic_dataset(raw, args.d, num_train=args.num_train, num_test=args.num_test, size=args.size,
                                  seed=args.seed, other_roots=others, kind=args.kind))
    return 0


def add_synthetic_dataset(sub) -> None:
    p = sub.add_parser("synthetic-dataset", help="write the generated imbalanced 2D dataset in nnU-Net raw format")
    p.add_argument("-d", type=int, default=901, help="dataset id (default 901)")
    p.add_argument("-o", default=None, help="nnUNet_raw folder (default: $nnUNet_raw)")
    p.add_argument("--num-train", type=int, default=12, help="training cases (default 12)")
    p.add_argument("--num-test", type=int, default=4, help="test cases (default 4)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--kind", choices=tuple(GENERATORS), default="discs",
                   help="discs: a large disc, a medium ellipse and a small dot (default); phantom: abdomen-like "
                        "slices (organ, kidney, lesion; the demo's); many: one large and five small classes")
    p.set_defaults(func=run_synthetic_dataset)


def run_reproduce(args) -> int:
    import shlex

    from .experiment import load_experiment
    from .experiment.plan import Paths, missing_raw_data_message
    from .experiment.runner import describe, run_local, run_prepare, run_report, run_task, writable_folder
    from .experiment.slurm import SlurmOptions, emit_slurm

    exp = load_experiment(args.config)
    paths = Paths.from_env(args.work_dir or os.path.join("nnunet_losses_experiments", exp.name))
    if args.dry_run:
        print(describe(exp, paths, args.device, args.np))
        problem = missing_raw_data_message(exp, paths)
        if problem:
            print(f"# before running: {problem}")
        return 0
    writable_folder(paths.work, "--work-dir")  # logs, evaluations, report, SLURM scripts: before anything runs
    if args.emit == "slurm":
        opts = SlurmOptions(partition=args.partition, account=args.account, time=args.time, gpus=args.gpus,
                            cpus=args.cpus, mem=args.mem, max_parallel=args.max_parallel, setup=args.setup)
        path = emit_slurm(exp, paths, opts, device=args.device, num_processes=args.np)
        print(f"wrote the SLURM scripts of {len(exp.matrix)} trainings; submit with: bash {shlex.quote(path)}")
        return 0
    if args.stage != "report":
        problem = missing_raw_data_message(exp, paths)
        if problem:
            raise MissingInput(problem)
    if args.stage == "prepare":
        run_prepare(exp, paths, args.np)
        return 0
    if args.stage == "report":
        run_report(exp, paths)
        return 0
    if args.task is not None:
        if not 0 <= args.task < len(exp.matrix):
            raise InvalidInput(f"--task {args.task}: the matrix has tasks 0..{len(exp.matrix) - 1}")
        run = exp.matrix[args.task]
        print(f"task {args.task}: {run.label} seed {run.seed} fold {run.fold}: "
              f"{run_task(exp, paths, run, args.device)}")
        return 0
    if args.local:
        return run_local(exp, paths, jobs=args.j, device=args.device, num_processes=args.np)
    raise InvalidInput("choose --dry-run, --local [-j N], --emit slurm, --stage prepare|report or --task I")


def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="run a paper's experiment matrix from configs/*.toml: here (--local), as "
                                         "SLURM job arrays (--emit slurm), or print it (--dry-run)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Plans the whole experiment of a spec (configs/*.toml): plan/preprocess, the "
                                   "paper's split, maps, one nnUNetv2_train per trainer x run x fold (its final "
                                   "validation predicts the held-out cases), nnunet-losses evaluate on them, and "
                                   "nnunet-losses report. Uses nnU-Net's environment variables (nnUNet_raw, "
                                   "nnUNet_preprocessed, nnUNet_results). Every step resumes: finished trainings "
                                   "and evaluations are skipped, interrupted trainings continue (--c). An "
                                   "evaluation counts as finished only when it is of the step's predictions (trainer, "
                                   "plans, configuration, fold), references and conventions, newer than the "
                                   "training; before the report, evaluations under the spec's labels that are not "
                                   "of its matrix and settings are moved to WORK/evaluation_superseded/.\n\n"
                                   "  nnunet-losses reproduce configs/regionwise_acdc.toml --dry-run\n"
                                   "  nnunet-losses reproduce configs/regionwise_acdc.toml --local -j 2\n"
                                   "  nnunet-losses reproduce configs/regionwise_acdc.toml --emit slurm "
                                   "--partition gpu")
    p.add_argument("config", help="experiment spec (TOML)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print every command with its status [done]/[todo]")
    mode.add_argument("--local", action="store_true", help="run everything on this machine")
    mode.add_argument("--emit", choices=("slurm",), help="write SLURM scripts (WORK/slurm/submit.sh)")
    mode.add_argument("--stage", choices=("prepare", "report"), help="run one stage (what the SLURM jobs call)")
    mode.add_argument("--task", type=int, default=None, help="run training task I of the matrix (train + "
                                                             "evaluate; what the SLURM array calls)")
    p.add_argument("--work-dir", default=None,
                   help="evaluations, report, logs, SLURM scripts (default ./nnunet_losses_experiments/NAME)")
    p.add_argument("-j", type=positive_int, default=1, help="--local: trainings at a time (default 1)")
    p.add_argument("-np", type=positive_int, default=1, help="processes for preprocessing and maps (default 1)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu", "mps"), help="nnUNetv2_train -device "
                                                                                    "(default cuda)")
    slurm = p.add_argument_group("SLURM (--emit slurm)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--time", default="48:00:00", help="per training (default 48:00:00)")
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs per training (default 1)")
    slurm.add_argument("--cpus", type=positive_int, default=8, help="CPUs per job (default 8)")
    slurm.add_argument("--mem", default="64G", help="memory per job (default 64G)")
    slurm.add_argument("--max-parallel", type=positive_int, default=None,
                       help="array throttle: trainings at a time")
    slurm.add_argument("--setup", default="", help="shell line run first in every job, e.g. 'module load cuda'")
    p.set_defaults(func=run_reproduce)


def run_convert(args) -> int:
    import importlib

    return importlib.import_module(f".convert.{args.dataset}", __package__).main(args.options)


def add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a downloaded dataset (ACDC, BraTS 2018, KiTS19) into nnU-Net raw "
                                       "format as the papers prepared it, or the INIA19 macaque template (Debian's "
                                       "mricron-data) into 2D slices",
                       description="nnunet-losses convert acdc|brats18|kits19|inia19 SOURCE [-d ID] [-o RAW] ...: "
                                   "the converter's own options follow the dataset name (nnunet-losses convert acdc "
                                   "--help; inia19's SOURCE defaults to Debian's folder). "
                                   "scripts/convert_<dataset>.py run the same code.")
    p.add_argument("dataset", choices=("acdc", "brats18", "kits19", "inia19"), help="which converter")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the converter's arguments (SOURCE first)")
    p.set_defaults(func=run_convert)


def run_report(args) -> int:
    from .report import build_report

    path = build_report(args.eval_root, args.o or os.path.join(os.path.dirname(os.path.abspath(args.eval_root)),
                                                               "report"),
                        reference=args.reference, order=args.order, metrics=args.metrics, plots=args.plots,
                        permutations=args.permutations, title=args.title, mean=args.mean)
    print(f"wrote {path}")
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="paper-style tables (Markdown, LaTeX, CSV) with significance marks and PNG "
                                      "plots from the evaluations of several trainers",
                       description="Reads EVAL_ROOT/<loss label>/<trainer>/fold_<f>.json (what `reproduce` writes; "
                                   "one `evaluate` JSON per training). Per case, values are averaged over the runs "
                                   "of a loss; the table shows mean +- std per class over the cases every loss "
                                   "has (the others are listed), * where a loss differs from --reference (paired "
                                   "permutation test, p < 0.05, as in the RW paper's Tables 2-4). Evaluations of "
                                   "other classes or empty-mask conventions are refused, and so are evaluations "
                                   "under one label that differ in more than the seed (trainer name apart from "
                                   "_s<N>, plans, configuration, evaluated set). fold_all.json (nnU-Net's "
                                   "fold all) counts as a fold. Plots: box (per-case values per class), cdf (final "
                                   "mean Dice of each run, RW paper Fig. 5), curves (validation pseudo Dice from "
                                   "nnU-Net's training logs).")
    p.add_argument("eval_root", help="folder of evaluations (WORK/evaluation)")
    p.add_argument("-o", default=None, help="output folder (default: 'report' beside EVAL_ROOT)")
    p.add_argument("--reference", default=None,
                   help="loss label the others are tested against (default: the first); several separated by commas "
                        "(e.g. DiceCE,DiceCE_adam): each loss is tested against the one trained with its optimiser")
    p.add_argument("--order", nargs="+", default=None, help="loss labels in table order (default alphabetical)")
    p.add_argument("--metrics", nargs="+", default=["dice", "hd"], choices=REPORT_METRICS,
                   help="table columns (default dice hd); hd95 is pooled (medpy), hd95_max max-directed (Metrics "
                        "Reloaded, MONAI); nsd at the tolerance the evaluations used")
    p.add_argument("--plots", nargs="*", default=["box"], choices=PLOTS,
                   help="figures (default box)")
    p.add_argument("--permutations", type=int, default=10000, help="permutations per test (default 10000)")
    p.add_argument("--title", default="Results", help="report title")
    p.add_argument("--mean", choices=MEANS, default="per-class",
                   help="the mean column over classes: per-class (default) = the mean of the class means, each over "
                        "the cases where the class is defined (nnU-Net's foreground_mean); per-case = the mean over "
                        "cases of each case's mean over its classes (a class absent from most cases hardly counts)")
    p.set_defaults(func=run_report)


COMMANDS = (add_losses, add_trainers, add_trainers_path, add_convert, add_synthetic_dataset, add_precompute_maps,
            add_small_plans, add_split, add_evaluate, add_reproduce, add_report, add_demo, add_loss_demo, add_doctor,
            add_export_model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-losses",
        description="Class-imbalance losses for nnU-Net v2: Combo, Region-wise (RRW, boundary, AC), IoU_xy, "
                    "TopK Dice, and the baselines they compare against.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as err:
        message = str(err)
    except OSError as err:
        if err.filename is None:  # names no file of the user's: a bug or the machine's, with its traceback
            raise
        message = str(err)
    print(f"nnunet-losses {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
