"""What drift monitoring costs the request path and a scrape.

A ``SampledRanker`` around a ranker that does nothing but return zeros, on one request of
``--candidates`` rows x every training feature plus three source scores, against the bare
ranker: the difference is what sampling adds, with every request sampled
(``sample_every = 1``) and with the default one in ten. Then one scrape's drift gauges
(every feature's PSI and chi-square test) after 200 sampled requests. Best of 5 x 2,000.

    .venv/bin/python benchmarks/drift_sampling.py
"""

from __future__ import annotations

import argparse
import timeit
from datetime import UTC, datetime

import numpy as np

from recloop.config.drift import DriftSettings
from recloop.domain import RequestContext
from recloop.features.candidates import FeatureMatrix
from recloop.features.definitions import CATEGORICAL, FEATURE_NAMES
from recloop.monitoring.drift import DriftReference, fit_binning
from recloop.monitoring.drift_monitor import DriftMonitor
from recloop.ranking.learned import RankerModel, RankerModels
from recloop.ranking.protocols import Scores
from recloop.serving.drift_sampling import SampledRanker

NAMES = (*FEATURE_NAMES, "source_score:popular", "source_score:als", "source_score_sum")


class Zeros:
    """A ranker that costs nothing: what is left is the sampling."""

    version = "zeros"

    def score(self, features: FeatureMatrix, ctx: RequestContext) -> Scores:
        return Scores(np.zeros(len(features.item_ids)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20_000, len(NAMES)))
    reference = DriftReference(
        "v1",
        tuple(
            fit_binning(n, train[:, i], categorical=n in CATEGORICAL) for i, n in enumerate(NAMES)
        ),
        fit_binning("score", rng.uniform(size=5000)),
    )
    ctx = RequestContext(
        app_id="a", user_id="u", surface="home", now=datetime.now(UTC), request_id="r"
    )
    matrix = FeatureMatrix(
        tuple(f"i{k}" for k in range(args.candidates)),
        NAMES,
        rng.normal(size=(args.candidates, len(NAMES))),
    )
    bare = Zeros()
    for every in (1, 10):
        monitor = DriftMonitor(DriftSettings(sample_every=every))
        monitor.publish("a", reference)
        models = RankerModels()
        models.publish("a", RankerModel("v1", (*NAMES, "position"), {}))
        sampled = SampledRanker(bare, models, monitor)
        n = 2000
        with_ = min(timeit.repeat(lambda s=sampled: s.score(matrix, ctx), number=n, repeat=5))
        without = min(timeit.repeat(lambda: bare.score(matrix, ctx), number=n, repeat=5))
        print(
            f"sample_every={every}: {1e6 * (with_ - without) / n:.1f} us a request over the "
            f"bare ranker ({args.candidates} candidates x {len(NAMES)} features)"
        )
    monitor = DriftMonitor()
    monitor.publish("a", reference)
    window = monitor.window("a", "v1")
    assert window is not None
    for _ in range(200):
        window.observe(NAMES, rng.normal(size=(50, len(NAMES))), rng.uniform(size=50))
    scrape = min(timeit.repeat(lambda: list(monitor.gauges()), number=50, repeat=5)) / 50
    print(f"a scrape's drift gauges ({len(NAMES)} features): {1e3 * scrape:.2f} ms")


if __name__ == "__main__":
    main()
