"""``facestream eval``: a model against the pretrained dlib ResNet on the same held-out identities.

Both models run through the runtime's ONNX Runtime engine from their model
directories, so the numbers are what the live system computes, and the split is
the one ``facestream train`` uses with the same data, seed and fractions.

A model is never scored on people it trained or calibrated on: its model directory
records them (``spec.json``), and those people are left out of the evaluation with a
warning (``excluded`` in the result); if none are left, the evaluation is refused.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from facestream.errors import FacestreamError
from facestream.stream.config import Config
from facestream.stream.engine.analyzer import FaceAnalyzer
from facestream.stream.engine.model_store import get_model
from facestream.trainer import evaluate as ev
from facestream.trainer import tracking
from facestream.trainer.data import chip_analyzer, load_chip_set, split_by_identity
from facestream.trainer.train import recorded_training_people

log = logging.getLogger(__name__)


def run_eval(data: list[str | Path], config: Config, model: str | None = None, tracking_uri: str | None = None,
             split: str = "test", out_dir: Path | None = None, analyzer: FaceAnalyzer | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` (default ``config.embedder.model``) and the pretrained model; write roc.png + metrics.json.

    Returns:
        ``{"model": ..., "pretrained": ..., "metrics": {...}, "pretrained_metrics": {...}, "table": str, ...}``.
    """

    if analyzer is None:
        analyzer = chip_analyzer(config)
    name = model or config.embedder.model
    uri = None
    if name.startswith(("models:/", "runs:/")):
        uri = tracking.resolve_tracking_uri(tracking_uri or config.mlflow.tracking_uri)
        tracking.check_store(uri)
    spec = get_model(name, tracking_uri=uri)
    base = get_model("dlib-resnet-v1")
    chips = load_chip_set(data, analyzer, cache=config.train.chip_cache, progress=progress)
    tc = config.train
    cs = chips if split == "all" else split_by_identity(chips, tc.seed, tc.val_fraction, tc.test_fraction)["test"]
    seen = recorded_training_people(spec) or set()
    excluded = sorted(set(cs.names) & seen)
    if excluded:
        log.warning("%s trained or calibrated on %d of these %d people; they are left out of the evaluation",
                    spec.model_id, len(excluded), len(cs.names))
        cs = cs.subset(np.array([cs.names[k] not in seen for k in cs.labels.tolist()], dtype=bool))
        if len(cs.names) < 2 or np.bincount(cs.labels).max(initial=0) < 2:
            raise FacestreamError(
                f"{spec.model_id} trained or calibrated on the people of this split ({len(excluded)} of them); "
                "too few unseen people are left to evaluate it fairly.",
                "Evaluate on other people (--data with new identity folders), or the split it held out "
                "(the same data with the seed and fractions it was trained with).")
    metrics, roc = ev.timed_evaluate(lambda c: ev.embed_spec(spec, c), cs.chips, cs.labels, tc.seed, tc.max_pairs)
    pre, pre_roc = ev.timed_evaluate(lambda c: ev.embed_spec(base, c), cs.chips, cs.labels, tc.seed, tc.max_pairs)
    result = {
        "model": spec.model_id, "pretrained": base.model_id, "split": split,
        "split_fingerprint": tracking.split_fingerprint(cs.fingerprint(), tc.max_pairs, tc.seed),
        "images": len(cs), "identities": len(cs.names), "metrics": metrics, "pretrained_metrics": pre,
        "excluded": excluded,
        "skipped": chips.report.lines(),
        "table": ev.comparison_table({spec.name[:15]: metrics, "pretrained": pre}),
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        ev.plot_roc({spec.model_id: roc, f"pretrained ({base.model_id})": pre_roc}, out_dir / "roc.png")
        (out_dir / "metrics.json").write_text(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))
    return result
