"""Server memory to average N updates: streamed into a running sum, or held.

Each update is a real train reply (an ``ArrayRecord`` of the seed CNN's shape,
its bytes freshly allocated as a reply pulled from the network is). fedward's
``FedwardFedAvg.aggregate_train`` gets them one at a time from a generator, as
:func:`fedward.fl.streaming.stream_replies` hands them over; Flower's ``FedAvg``
gets the list ``Grid.send_and_receive`` returns. The peak is what ``tracemalloc``
saw allocated on top of what the server held before (the global weights), in
multiples of the model's size: NumPy arrays and Python bytes are all traced.

Usage: ``python -m benchmarks.aggregation [--sizes 150,64] [--updates 10,100]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp.strategy import FedAvg

from fedward.config import FedwardConfig
from fedward.fl.protocol import MetricKey, RecordKey
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies import FedwardFedAvg
from fedward.models import get_model

HOLD_LIMIT = 2 * 2**30  # do not hold more than this on a shared machine


def _reply(node: int, template: ArrayRecord) -> Message:
    arrays = ArrayRecord(
        {
            k: Array(a.dtype, tuple(a.shape), a.stype, bytes(memoryview(a.data)))
            for k, a in template.items()
        }
    )
    content = RecordDict(
        {
            RecordKey.ARRAYS: arrays,
            RecordKey.METRICS: MetricRecord({MetricKey.NUM_EXAMPLES: 10 + node}),
            RecordKey.SITE: ConfigRecord({MetricKey.SITE_NAME: f"h{node}"}),
        }
    )
    meta = Metadata(
        run_id=1, message_id=f"m{node}", src_node_id=0, dst_node_id=node,
        reply_to_message_id="", group_id="1", created_at=time.time(), ttl=3600.0,
        message_type=MessageType.TRAIN,
    )  # fmt: skip
    sent: Message = Message(RecordDict(), metadata=meta)  # type: ignore[call-overload]
    return Message(content, reply_to=sent)


def _peak(run: Any) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before


def measure_one(image_size: int, updates: int, way: str, work: Path) -> dict[str, Any]:
    """Peak bytes to average ``updates`` replies of the seed CNN at ``image_size``."""
    torch.manual_seed(0)
    model = get_model("seed-cnn", num_classes=2, image_size=image_size)
    template = ArrayRecord(torch_state_dict=model.state_dict())
    model_bytes = sum(len(a.data) for a in template.values())
    del model
    if way == "flower" and updates * model_bytes > HOLD_LIMIT:
        return {"model-bytes": model_bytes, "peak-bytes": None}
    recorder = RunRecorder(work / f"{way}-{image_size}-{updates}", FedwardConfig())
    ours = FedwardFedAvg(recorder=recorder, class_names=["normal", "opacity"])
    ours._sent = template

    def streamed() -> Iterator[Message]:
        for node in range(updates):
            yield _reply(node, template)

    if way == "fedward":
        peak = _peak(lambda: ours.aggregate_train(1, streamed()))
    else:
        flower = FedAvg(arrayrecord_key=RecordKey.ARRAYS)
        peak = _peak(lambda: flower.aggregate_train(1, list(streamed())))
    return {"model-bytes": model_bytes, "peak-bytes": peak, "x": peak / model_bytes}


def measure(sizes: list[int], counts: list[int]) -> dict[str, Any]:
    """Every combination of image size, number of updates and way."""
    work = Path(tempfile.mkdtemp(prefix="fedward-agg-"))
    rows = []
    for size in sizes:
        for n in counts:
            for way in ("fedward", "flower"):
                row = {"image-size": size, "updates": n, "way": way}
                rows.append({**row, **measure_one(size, n, way, work)})
                print(rows[-1], flush=True)
    return {"rows": rows}


def table(results: dict[str, Any]) -> str:
    """Markdown: peak memory in multiples of the model's size."""
    lines = [
        "| model (seed CNN) | updates | streamed (fedward) | held (Flower FedAvg) |",
        "|---|---:|---:|---:|",
    ]
    rows = results["rows"]
    for r in rows:
        if r["way"] != "fedward":
            continue
        other = next(
            o
            for o in rows
            if o["way"] == "flower"
            and (o["image-size"], o["updates"]) == (r["image-size"], r["updates"])
        )
        mib = r["model-bytes"] / 2**20
        held = (
            f"not run (would hold {r['updates'] * r['model-bytes'] / 2**30:.1f} GiB)"
            if other["peak-bytes"] is None
            else f"{other['x']:.2f}x ({other['peak-bytes'] / 2**20:.0f} MiB)"
        )
        lines.append(
            f"| {r['image-size']} px, {mib:.1f} MiB | {r['updates']} "
            f"| {r['x']:.2f}x ({r['peak-bytes'] / 2**20:.0f} MiB) | {held} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="150,64")
    parser.add_argument("--updates", default="10,100")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = measure(
        [int(s) for s in args.sizes.split(",")],
        [int(n) for n in args.updates.split(",")],
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "aggregation.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (args.out / "aggregation.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
