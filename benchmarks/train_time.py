"""Wall time of `recloop train` on a synthetic log of about 1M events (2 cores).

The log is the one `training_data.py` writes (20k items in 30 categories, 20k users with a
heavy tail, served lists of 10 with impressions, clicks, views, likes and skips over 30 days).
Then the training job runs with the default sources and the learned ranker (whose training
set is built from the log's served lists); each stage's wall time is printed.

    .venv/bin/python benchmarks/train_time.py [--events 1000000] [--sources covisitation,als]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from recloop.config import Settings, TrainSettings, TrainSourceConfig
from recloop.store import open_store
from recloop.training.job import train

sys.path.insert(0, str(Path(__file__).parent))
from training_data import _synthetic_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sources", help="comma-separated source names (default: all)")
    args = parser.parse_args()
    sources = (
        [TrainSourceConfig(name=s) for s in args.sources.split(",")]
        if args.sources
        else TrainSettings().sources
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        started = time.perf_counter()
        written = _synthetic_log(url, args.events, seed=1)
        print(f"wrote {written:,} events in {time.perf_counter() - started:.0f} s", flush=True)
        settings = Settings(data_dir=Path(tmp), store_url=url, train=TrainSettings(sources=sources))
        stages: dict[str, float] = {}
        marks: dict[str, float] = {}

        def progress(stage: str, advance: int, total: int | None) -> None:
            now = time.perf_counter()
            marks.setdefault(stage, now)
            stages[stage] = now - marks[stage]

        store = open_store(url)
        started = time.perf_counter()
        result = train(settings, store, progress=progress)
        total = time.perf_counter() - started
        store.close()
    print(
        f"recloop train: {total:.0f} s for {result.interactions:,} engagements, "
        f"{result.users:,} users, {result.items:,} items"
    )
    for stage, seconds in stages.items():
        print(f"  {stage:28s} {seconds:8.1f} s")
    for source in result.sources:
        state = (
            f"skipped: {source.skipped}"
            if source.skipped
            else (
                f"fit {source.fit_seconds:.1f} s, validation recall@100 "
                f"{source.metrics.get('recall@100', float('nan')):.4f}"
            )
        )
        print(f"  {source.name:14s} {state}")
    ranker = result.ranker
    nan = float("nan")
    if ranker.model is None:
        print(f"  ranker         skipped: {ranker.skipped}")
    else:
        rows = ranker.report["rows"]
        for head, report in ranker.report["heads"].items():
            test = report.get("test", {})
            print(
                f"  ranker {head:7s} fit {report['fit_seconds']:.1f} s on {report['train_rows']:,} "
                f"rows ({rows['train']:,} before downsampling), {report['rounds']} rounds, "
                f"test AUC {test.get('auc', nan):.4f}, ECE {test.get('ece', nan):.4f}"
            )
    out = Path(__file__).parent / "results" / "train_time.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "total_s": total,
                "stages_s": stages,
                "engagements": result.interactions,
                "ranker": ranker.report.get("summary", {}),
                "ranker_rows": ranker.report.get("rows", {}),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
