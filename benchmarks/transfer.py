"""Bytes on the wire per hospital per round, by ``transfer-dtype``; and the figures.

A round sends each hospital the global weights twice (the train instruction and
the evaluate instruction) and gets back its trained weights and its evaluation
counts. The messages are fedward's own (``fl/protocol.py``) for the seed CNN;
their size is what Flower 1.42 pushes: every object of the message (records,
arrays, array chunks) deflated, each distinct object once.

``--figures`` also runs the demo federation once per dtype and reports its
final and best global figures: what half precision on the wire costs.

Usage: ``python -m benchmarks.transfer [--image-size 150] [--figures]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import (
    ConfigRecord,
    Message,
    MessageType,
    Metadata,
    RecordDict,
)
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedward.fl.protocol import (
    MetricKey,
    RecordKey,
    counts_to_metrics,
    encode_arrays,
    site_record,
    to_arrays,
    train_metrics,
)
from fedward.learning.loops import EpochStats, TrainResult
from fedward.metrics.counts import EvalCounts
from fedward.models import get_model
from fedward.runfolder import RunFolder

DTYPES = ("float32", "float16", "bfloat16")


def wire_bytes(msg: Message) -> int:
    """What Flower pushes for a message: each of its objects, deflated, once."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())


def _instruction(content: RecordDict, message_type: str) -> Message:
    meta = Metadata(
        run_id=1, message_id="m", src_node_id=0, dst_node_id=7,
        reply_to_message_id="", group_id="1", created_at=time.time(), ttl=3600.0,
        message_type=message_type,
    )  # fmt: skip
    msg: Message = Message(content, metadata=meta)  # type: ignore[call-overload]
    return msg


def round_bytes(image_size: int, dtype: str) -> dict[str, int]:
    """Bytes of the four messages of one round between the server and a hospital."""
    torch.manual_seed(0)
    model = get_model("seed-cnn", num_classes=2, image_size=image_size)
    sent = encode_arrays(to_arrays(model), dtype)
    config = ConfigRecord({MetricKey.SERVER_ROUND: 1, MetricKey.RUN_ID: "0" * 32})
    content = RecordDict({RecordKey.ARRAYS: sent, RecordKey.CONFIG: config})
    train = _instruction(content, MessageType.TRAIN)
    evaluate = _instruction(content, MessageType.EVALUATE)
    result = TrainResult(200, 2.5, [EpochStats(0.3, 0.9, 0.35, 0.88)])
    trained = RecordDict(
        {
            RecordKey.ARRAYS: to_arrays(model, dtype),
            RecordKey.METRICS: train_metrics(result),
            RecordKey.SITE: site_record("hospital-1"),
        }
    )
    probs = np.tile([0.7, 0.3], (50, 1))
    counts = EvalCounts.of_batch(probs, np.zeros(50, dtype=np.int64), 12.0)
    scored = RecordDict(
        {
            RecordKey.METRICS: counts_to_metrics(counts),
            RecordKey.SITE: site_record("hospital-1"),
        }
    )
    return {
        "down": wire_bytes(train) + wire_bytes(evaluate),
        "up": wire_bytes(Message(trained, reply_to=train))
        + wire_bytes(Message(scored, reply_to=evaluate)),
    }


def demo_figures(dtype: str, work: Path) -> dict[str, Any]:
    """The demo federation with weights sent as ``dtype``: final and best figures."""
    run_dir = work / f"demo-{dtype}"
    subprocess.run(
        [sys.executable, "-m", "fedward", "simulate", "--run-dir", str(run_dir),
         "--set", f"transfer-dtype={dtype}"],
        check=True, capture_output=True,
    )  # fmt: skip
    summary = RunFolder(run_dir).read_json(RunFolder.SUMMARY)
    final = summary["final"]["global"]
    return {
        **{k: final[k] for k in ("accuracy", "recall", "f1", "auroc", "ece")},
        "best-round": summary["best-round"],
        "best-f1": summary["best"]["f1"],
    }


def measure(image_size: int, figures: bool) -> dict[str, Any]:
    """Bytes per dtype, and with ``figures`` the demo's figures per dtype."""
    results: dict[str, Any] = {"image-size": image_size, "bytes": {}, "figures": {}}
    for dtype in DTYPES:
        results["bytes"][dtype] = round_bytes(image_size, dtype)
    if figures:
        work = Path(tempfile.mkdtemp(prefix="fedward-transfer-"))
        for dtype in DTYPES:
            results["figures"][dtype] = demo_figures(dtype, work)
            print(dtype, results["figures"][dtype], flush=True)
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown: bytes per hospital per round and the demo's figures."""
    full = results["bytes"]["float32"]
    lines = [
        f"Bytes per hospital per round, seed CNN at {results['image-size']} px:",
        "",
        "| transfer-dtype | server -> hospital | hospital -> server | total | x |",
        "|---|---:|---:|---:|---:|",
    ]
    for dtype, b in results["bytes"].items():
        total = b["down"] + b["up"]
        lines.append(
            f"| {dtype} | {b['down'] / 1e6:.2f} MB | {b['up'] / 1e6:.2f} MB "
            f"| {total / 1e6:.2f} MB | {total / (full['down'] + full['up']):.3f} |"
        )
    if results["figures"]:
        lines += [
            "",
            "The demo (3 hospitals, 5 rounds x 2 epochs), global figures:",
            "",
            "| transfer-dtype | accuracy | recall | F1 | AUROC | ECE | best (F1) |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for dtype, f in results["figures"].items():
            lines.append(
                f"| {dtype} | {f['accuracy']:.3f} | {f['recall']:.3f} | {f['f1']:.3f} "
                f"| {f['auroc']:.3f} | {f['ece']:.3f} "
                f"| {f['best-round']} ({f['best-f1']:.3f}) |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--figures", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = measure(args.image_size, args.figures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (args.out / "transfer.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
