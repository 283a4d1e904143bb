"""Ranker variants on the candidate lists training builds, judged by the gate's own measure.

Two steps, on a data directory that already holds an import (``served_quality.py
--data-dir`` keeps one):

    # 1. run `recloop train`'s code with every candidate of every list kept (no negative
    #    sampling, no cross-fitting, nothing promoted) and save the ranker's parts
    .venv/bin/python benchmarks/ranker_variants.py dump /tmp/sq-beauty/beauty /tmp/parts \
        --max-cases 2500
    # 2. fit each variant on the same parts with several seeds and order the test lists
    .venv/bin/python benchmarks/ranker_variants.py compare /tmp/parts /tmp/sq-beauty/beauty \
        --variants old,sum,catreg,sum+catreg --seeds 0,1,2

Training's own sampling is redone in step 2 (``max_negatives`` random negatives per train
and validation list, then ``negative_rate``), so one dump serves every variant. The figure
is the gate's: mean NDCG@10 over the test part's candidate lists with a positive, the ideal
counting every item the user engaged with next. Every variant is printed beside the blend
and two single sources on the same lists, with a 90% paired interval of learned - blend.
A fit seed moves the learned figure by as much as the variants differ: compare means over
seeds. Quality only; times are not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: Each variant: whether the summed source score is a feature, features left out, and any
#: other key a ``train.ranker`` setting it changes (the categorical smoothing, whose
#: LightGBM defaults are 10 and 100; early stopping; the learning rate).
VARIANTS: dict[str, dict[str, Any]] = {
    "old": {"sum": False, "cat_smooth": 10.0, "min_data_per_group": 100},
    "sum": {"sum": True, "cat_smooth": 10.0, "min_data_per_group": 100},
    "catreg": {"sum": False},
    "sum+catreg": {"sum": True},
    "sum-cat": {"sum": True, "drop": ("item_category", "item_creator")},
    "patient": {"sum": True, "early_stopping_rounds": 100},
    "auc-stop": {"sum": True, "stopping_metric": "auc"},
    "fast": {"sum": True, "learning_rate": 0.15},
}
_NOT_SETTINGS = frozenset({"sum", "drop"})
PARTS = ("train", "validation", "test")


def _use(data_dir: Path) -> None:
    """Read this data directory's recloop.toml, and nothing from the environment."""
    for key in [k for k in os.environ if k.startswith("RECLOOP_")]:
        del os.environ[key]
    os.environ["RECLOOP_DATA_DIR"] = str(data_dir)
    os.environ["RECLOOP_CONFIG"] = str(data_dir / "recloop.toml")


def dump(data_dir: Path, out: Path, max_cases: int) -> None:
    """Train as ``recloop train`` does, with every candidate kept, and save the ranker's
    parts and features to ``out`` (the model version is not promoted)."""
    _use(data_dir)
    import recloop.training.job as job
    from recloop.config import Settings
    from recloop.store.bootstrap import prepare_store

    settings = Settings()
    ranker = settings.train.ranker.model_copy(
        update={"max_negatives": 10**9, "max_cases": max_cases, "cross_fit_folds": 1}
    )
    train = settings.train.model_copy(update={"ranker": ranker})
    settings = settings.model_copy(update={"train": train})
    out.mkdir(parents=True, exist_ok=True)
    fit = job.fit_ranker

    def saving(parts: Mapping[str, pa.Table], config: Any, **kw: Any) -> Any:
        for name, part in parts.items():
            pq.write_table(part, out / f"{name}.parquet")
        (out / "features.json").write_text(json.dumps(list(kw["features"])))
        return fit(parts, config, **kw)

    job.fit_ranker = saving  # type: ignore[assignment]
    store = prepare_store(settings)
    try:
        result = job.train(settings, store, promote=False)
    finally:
        store.close()
    print(f"model version {result.version} (not promoted); parts in {out}")


def _sample(
    table: pa.Table, max_negatives: int, rng: np.random.Generator, label: str = "label_click"
) -> pa.Table:
    """Every positive and at most ``max_negatives`` random negatives of each list."""
    rid = np.asarray(table.column("request_id").to_pylist(), dtype=object)
    y = np.asarray(table.column(label).to_numpy(zero_copy_only=False), float)
    order = np.argsort(rid, kind="stable")
    _, starts, sizes = np.unique(rid[order], return_index=True, return_counts=True)
    keep = []
    for start, size in zip(starts, sizes, strict=True):
        rows = order[start : start + size]
        negatives = rows[y[rows] <= 0]
        if len(negatives) > max_negatives:
            negatives = rng.choice(negatives, max_negatives, replace=False)
        keep += [rows[y[rows] > 0], negatives]
    return table.take(np.sort(np.concatenate(keep)))


def compare(parts_dir: Path, data_dir: Path, variants: Sequence[str], seeds: Sequence[int]) -> None:
    """Fit each variant with each seed and print the gate's figures on the test lists."""
    _use(data_dir)
    from recloop.config import Settings
    from recloop.ranking.learned import SCORE_SUM_FEATURE, LearnedRankerConfig
    from recloop.training.gate import alternatives, list_values, paired_interval
    from recloop.training.ranker import fit_ranker

    settings = Settings()
    surface = settings.surfaces["home"]
    sources = [slot.name for slot in surface.sources]
    config = LearnedRankerConfig.model_validate(surface.ranker.params)
    features = json.loads((parts_dir / "features.json").read_text())
    parts = {name: pq.read_table(parts_dir / f"{name}.parquet") for name in PARTS}
    print({name: part.num_rows for name, part in parts.items()})
    shown = ("learned", "blend", "source:sasrec", "source:ease")
    means: dict[str, list[float]] = {}
    for name in variants:
        spec = VARIANTS[name]
        update = {k: v for k, v in spec.items() if k not in _NOT_SETTINGS}
        ranker_settings = settings.train.ranker.model_copy(update=update)
        used = [
            f
            for f in features
            if (spec["sum"] or f != SCORE_SUM_FEATURE) and f not in spec.get("drop", ())
        ]
        for seed in seeds:
            rng = np.random.default_rng(seed)
            sampled = {
                "train": _sample(parts["train"], ranker_settings.max_negatives, rng),
                "validation": _sample(parts["validation"], ranker_settings.max_negatives, rng),
                "test": parts["test"].slice(0, 0),
            }
            fitted = fit_ranker(
                sampled, ranker_settings, version="variant", features=used, ranking=True, seed=seed
            )
            if fitted.model is None:
                print(f"{name} seed {seed}: no ranker ({fitted.skipped})")
                continue
            rankers = alternatives(fitted.model, None, sources, config)
            chosen = {k: rankers[k] for k in shown if k in rankers}
            values = list_values(
                chosen, candidates=parts["test"], logged=None, weights=config.weights
            )
            per = {k: values.per_list[k]["interactions"] for k in chosen}
            low, high = paired_interval(per["learned"], per["blend"], 0.05)
            figures = "  ".join(f"{k} {np.mean(v):.4f}" for k, v in per.items())
            print(
                f"{name:12s} seed {seed}  {figures}  learned-blend 90% [{low:+.4f}, {high:+.4f}]"
                f"  ({values.lists['interactions']} lists)",
                flush=True,
            )
            means.setdefault(name, []).append(float(np.mean(per["learned"])))
            rounds = {h: r.get("rounds") for h, r in fitted.report.get("heads", {}).items()}
            print(f"{'':12s} rounds {rounds}", flush=True)
    print("mean learned NDCG@10 over seeds:")
    for name, values_ in means.items():
        print(
            f"  {name:12s} {np.mean(values_):.4f}  (seeds {', '.join(f'{v:.4f}' for v in values_)})"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dump", help="train with every candidate kept and save the parts")
    d.add_argument("data_dir", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--max-cases", type=int, default=2500)
    c = sub.add_parser("compare", help="fit the variants on saved parts")
    c.add_argument("parts", type=Path)
    c.add_argument("data_dir", type=Path)
    c.add_argument("--variants", default=",".join(VARIANTS))
    c.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    if args.step == "dump":
        dump(args.data_dir, args.out, args.max_cases)
    else:
        unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
        compare(
            args.parts,
            args.data_dir,
            args.variants.split(","),
            [int(s) for s in args.seeds.split(",")],
        )


if __name__ == "__main__":
    sys.exit(main())
