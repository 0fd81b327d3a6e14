"""``facestream train``, ``facestream train classifier`` and ``facestream eval``.

Heavy imports (torch, mlflow, matplotlib) stay inside the handlers so that
``facestream --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from facestream.errors import FacestreamError
from facestream.stream.cli.common import add_common_options, load_args_config
from facestream.stream.config import Config

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune the embedder on identity folders (MLflow-tracked); 'train classifier' for labels",
        description="Fine-tune the face embedder on DIR/<person>/*.jpg, compare it with the pretrained model on "
                    "held-out identities, log the run to MLflow and register the model (the 'champion' alias "
                    "moves only if it wins on the same test split).",
    )
    p.add_argument("--data", action="append", metavar="DIR", help="identity folders: DIR/<person>/*.jpg (repeatable)")
    p.add_argument("--epochs", type=int, help="passes over the training identities (train.epochs)")
    p.add_argument("--mlflow", metavar="URI", help="tracking store, e.g. sqlite:///mlflow.db or http://host:5000")
    p.add_argument("--freeze", metavar="STAGE", help="freeze the backbone up to and including this stage")
    p.add_argument("--loss", choices=["arcface", "cosface", "triplet"], help="train.loss")
    p.add_argument("--model", metavar="ARCH", help="architecture: dlib_resnet (pretrained) or small_net (scratch)")
    p.add_argument("--lr", type=float, help="backbone learning rate (train.lr)")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--seed", type=int, help="split and training seed (train.seed)")
    p.add_argument("--out", metavar="DIR", help="where model directories are written (default: the cache)")
    p.add_argument("--no-register", action="store_true", help="log the run but do not register the model")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_common_options(p)
    p.set_defaults(handler=cmd_train)
    tsub = p.add_subparsers(dest="train_command", metavar="classifier")
    c = tsub.add_parser("classifier", help="train a per-image classifier head on face embeddings",
                        description="Train a head on face embeddings for per-image labels: a CSV (image, label "
                                    "columns of 0/1) or CelebA's list_attr_celeba.txt.")
    c.add_argument("--labels", required=True, metavar="FILE", help="CSV or list_attr_celeba.txt")
    c.add_argument("--images", metavar="DIR", help="folder the image names are relative to (default: the file's)")
    c.add_argument("--model", metavar="URI", help="embedder: name, model directory or models:/ URI")
    c.add_argument("--mlflow", metavar="URI", help="tracking store URI")
    c.add_argument("--out", metavar="DIR", help="where the classifier is written")
    c.add_argument("--seed", type=int, default=0)
    add_common_options(c)
    c.set_defaults(handler=cmd_train_classifier)

    e = sub.add_parser("eval", help="evaluate an embedder vs the pretrained one on held-out identities",
                       description="Verification (ROC AUC, EER, TAR@FAR, accuracy) and identification (top-1/5) "
                                   "on the test identities of the same seeded split that training uses.")
    e.add_argument("--data", action="append", required=True, metavar="DIR", help="identity folders (repeatable)")
    e.add_argument("--model", metavar="URI", help="model name, directory or models:/ URI (default: embedder.model)")
    e.add_argument("--mlflow", metavar="URI", help="tracking store for models:/ URIs")
    e.add_argument("--split", choices=["test", "all"], default="test",
                   help="'test': held-out identities of the training split; 'all': every identity")
    e.add_argument("--seed", type=int, help="split seed (train.seed)")
    e.add_argument("--out", metavar="DIR", default="facestream-eval", help="folder for roc.png and metrics.json")
    e.add_argument("--json", action="store_true")
    add_common_options(e)
    e.set_defaults(handler=cmd_eval)


def _config(args: argparse.Namespace, extra: dict | None = None) -> Config:
    """The config from --config/--set, then the command's own options (validated like every config value)."""
    return load_args_config(args, extra)


def cmd_train(args: argparse.Namespace) -> int:
    if not args.data:
        raise FacestreamError("facestream train needs --data DIR.", "Pass a folder of identity folders.")
    from facestream.trainer.train import train_embedder

    cfg = _config(args, {"train.epochs": args.epochs, "train.freeze": args.freeze, "train.loss": args.loss,
                         "train.model": args.model, "train.lr": args.lr, "train.batch_size": args.batch_size,
                         "train.seed": args.seed})
    result = train_embedder(args.data, cfg, tracking_uri=args.mlflow, out_dir=args.out,
                            register=not args.no_register)
    for path, why in result.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps({"run_id": result.run_id, "model_dir": str(result.model_dir),
                          "model_id": result.spec.model_id, "fine_tuned": result.metrics,
                          "pretrained": result.pretrained_metrics, "version": result.version,
                          "champion": result.promoted, "decision": result.decision}, indent=2))
    else:
        print(result.summary())
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from facestream.trainer.classifier import train_classifier

    cfg = _config(args, {"embedder.model": args.model})
    result = train_classifier(args.labels, cfg, images_dir=args.images, tracking_uri=args.mlflow,
                              out_dir=args.out, seed=args.seed)
    for path, why in result.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(result.summary())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from facestream.trainer.eval_cmd import run_eval

    cfg = _config(args, {"train.seed": args.seed})
    result = run_eval(args.data, cfg, model=args.model, tracking_uri=args.mlflow, split=args.split,
                      out_dir=Path(args.out))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(result["table"])
        print(f"plots and metrics: {args.out}")
    return 0
