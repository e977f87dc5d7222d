"""``omgclip train``, ``evaluate`` and ``models``: their options and one call each."""

from __future__ import annotations

from omgclip.cli.common import add_command, config_default


# ----------------------------------------------------------------------------- train
def add_train(sub) -> None:
    from omgclip.learn.train import TrainConfig as C

    p = add_command(sub, "train", "train a 3D-CNN / ConvLSTM on a built dataset",
                     "Train a temporal model on the blocks of a built dataset, with person/link-"
                     "disjoint validation and early stopping on validation UAR.",
                     "  omgclip train --data data/omg --out runs --epochs 30\n"
                     "  omgclip train --data data/omg --out runs --model convlstm --max-time 60")
    p.add_argument("--data", required=True, help="a folder made by build-dataset")
    p.add_argument("--out", required=True, help="runs folder; each run gets a subfolder with "
                                                "checkpoints, logs and its config")
    p.add_argument("--model", help="a registered model (see `omgclip models`; default r2plus1d, or with "
                                   "--init-from the model in that file)")
    p.add_argument("--epochs", type=int, default=config_default(C, "epochs"), help="maximum epochs")
    p.add_argument("--max-time", help="stop after this long: minutes, or DD:HH:MM:SS")
    p.add_argument("--batch-size", type=int, default=config_default(C, "batch_size"), help="blocks per step")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {config_default(C, 'lr')})")
    p.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {config_default(C, 'weight_decay')})")
    p.add_argument("--schedule", choices=("cosine", "onecycle", "constant"),
                   help=f"learning-rate schedule (default {config_default(C, 'schedule')})")
    p.add_argument("--label-smoothing", type=float,
                   help=f"cross-entropy label smoothing (default {config_default(C, 'label_smoothing')})")
    p.add_argument("--seed", type=int, default=config_default(C, "seed"), help="seed: same seed, same run")
    p.add_argument("--workers", type=int, help="data-loading workers (default: min(4, cpus - 2))")
    p.add_argument("--val-split", choices=("group", "manifest"), default=config_default(C, "val_split"),
                   help="validation by whole groups (source link / person), or the manifest's split")
    p.add_argument("--val-fraction", type=float, default=config_default(C, "val_fraction"),
                   help="share of groups held out for validation with --val-split group")
    p.add_argument("--balance", choices=("loss", "sampler", "none"), default=config_default(C, "balance"),
                   help="class imbalance: weighted loss (default) or a balanced sampler")
    p.add_argument("--patience", type=int, default=config_default(C, "patience"),
                   help="early stopping: epochs without a better validation UAR")
    p.add_argument("--accelerator", default=config_default(C, "accelerator"), help="auto, cpu, gpu, ...")
    p.add_argument("--devices", default=config_default(C, "devices"), help="devices to train on (auto, 1, 2, ...)")
    p.add_argument("--strategy", default=config_default(C, "strategy"), help="e.g. ddp for several GPUs or nodes")
    p.add_argument("--num-nodes", type=int, default=config_default(C, "num_nodes"),
                   help="machines taking part (DDP; each runs --devices processes)")
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on GPU, else 32-true)")
    p.add_argument("--run-name", help="run folder name inside --out (default: <UTC time>-<model>)")
    p.add_argument("--resume-from", help="a checkpoints/last.ckpt to continue from")
    p.add_argument("--init-from", metavar="default|PATH",
                   help="start from trained weights: 'default' (the bundled model) or a .pt/.ckpt; the model "
                        "comes from that file and --lr defaults to 5e-4")
    p.add_argument("--calibrate", action="store_true",
                   help="fit a temperature on the validation groups into best.pt, so predict's confidences "
                        "are calibrated on people the run never trained on")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    from omgclip.learn.train import TrainConfig, train

    fields = dict(data=args.data, out=args.out, epochs=args.epochs, max_time=args.max_time,
                  batch_size=args.batch_size, seed=args.seed, val_split=args.val_split,
                  val_fraction=args.val_fraction, balance=args.balance, patience=args.patience,
                  accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                  num_nodes=args.num_nodes, progress=not args.no_progress, calibrate=args.calibrate)
    optional = dict(model=args.model, lr=args.lr, num_workers=args.workers,
                    weight_decay=args.weight_decay, schedule=args.schedule,
                    label_smoothing=args.label_smoothing, precision=args.precision,
                    run_name=args.run_name, resume_from=args.resume_from, init_from=args.init_from)
    if args.init_from is not None and args.lr is None:
        optional["lr"] = 5e-4  # fine-tuning: a gentler rate than training from scratch
    fields.update({k: v for k, v in optional.items() if v is not None})
    result = train(TrainConfig(**fields))
    if result.best_weights is None:  # a DDP process other than global rank 0: it reports nothing
        return 0
    print(f"best checkpoint: {result.best_checkpoint}  (validation UAR {result.best_val_uar:.3f})")
    print(f"compact weights for predict/evaluate: {result.best_weights}")
    return 0


# ----------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    from omgclip.learn.evaluate import INTERVAL_UNITS
    from omgclip.learn.evaluate import EvalConfig as E

    p = add_command(sub, "evaluate", "WAR, UAR, macro-F1, confusion matrix, majority baseline",
                     "Score a model on a built dataset, per block and per clip, with the "
                     "majority-class baseline beside every number.",
                     "  omgclip evaluate --checkpoint runs/<run>/best.pt --data data/omg --split validation\n"
                     "  omgclip evaluate --data data/mine --split all --out eval.json --confusion-png cm.png")
    p.add_argument("--checkpoint", help="a .ckpt / .pt from train (default: the bundled model)")
    p.add_argument("--data", required=True, help="a folder made by build-dataset")
    p.add_argument("--split", default=config_default(E, "split"),
                   help="index rows of this split; 'heldout' = the groups the checkpoint's training "
                        "run held out; 'all' = every labeled row; 'auto' (default) = 'validation' when "
                        "the dataset has it, else 'heldout'")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.add_argument("--confusion-png", help="write the confusion matrix picture here")
    p.add_argument("--batch-size", type=int, default=config_default(E, "batch_size"), help="blocks per forward pass")
    p.add_argument("--workers", type=int, help="data-loading workers")
    p.add_argument("--device", default=config_default(E, "device"), help="auto, cpu, cuda, ...")
    p.add_argument("--interval-by", choices=INTERVAL_UNITS, default=config_default(E, "interval_by"),
                   help="what the 95%% intervals resample whole: clips (default), or groups (people or "
                        "sources: the unit for claims about new people; wider)")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from omgclip.learn.evaluate import EvalConfig, evaluate, format_report

    result = evaluate(EvalConfig(checkpoint=args.checkpoint, data=args.data, split=args.split,
                                 out_json=args.out, confusion_png=args.confusion_png,
                                 batch_size=args.batch_size, num_workers=args.workers,
                                 device=args.device, interval_by=args.interval_by))
    print(format_report(result))
    return 0


# ----------------------------------------------------------------------------- models
def add_models(sub) -> None:
    p = add_command(sub, "models", "list the registered model architectures",
                     "List the model architectures `omgclip train --model` accepts.", "  omgclip models")
    p.set_defaults(run=run_models)


def run_models(args) -> int:
    from omgclip.learn.models import DEFAULT_MODEL, list_models

    for name in list_models():
        print(f"{name}{'  (default)' if name == DEFAULT_MODEL else ''}")
    return 0
