"""``recloop monitor`` reads the drift gauges of a ``/metrics`` exposition, several
processes' included, and judges them by the thresholds of its settings."""

from __future__ import annotations

import pytest

from recloop.cli.monitor import parse_metrics
from recloop.config.drift import DriftSettings

pytestmark = pytest.mark.unit

EXPOSITION = """\
# HELP recloop_drift_feature_psi PSI.
# TYPE recloop_drift_feature_psi gauge
recloop_drift_feature_psi{app="a",feature="item_category",pid="1"} 0.1
recloop_drift_feature_psi{app="a",feature="item_category",pid="2"} 0.9
recloop_drift_feature_psi{app="a",feature="session_length",pid="1"} 0.6
recloop_drift_feature_psi{app="b",feature="item_category",pid="1"} 0.9
# HELP recloop_drift_feature_p_value p.
# TYPE recloop_drift_feature_p_value gauge
recloop_drift_feature_p_value{app="a",feature="item_category",pid="1"} 0.5
recloop_drift_feature_p_value{app="a",feature="item_category",pid="2"} 0.001
recloop_drift_feature_p_value{app="a",feature="session_length",pid="1"} 0.2
recloop_drift_feature_p_value{app="b",feature="item_category",pid="1"} 0.0001
# HELP recloop_drift_sampled_requests n.
# TYPE recloop_drift_sampled_requests gauge
recloop_drift_sampled_requests{app="a",pid="1"} 30
recloop_drift_sampled_requests{app="a",pid="2"} 30
recloop_drift_sampled_requests{app="b",pid="1"} 10
# HELP recloop_drift_embedding_shift s.
# TYPE recloop_drift_embedding_shift gauge
recloop_drift_embedding_shift{app="b",entity="item",pid="1",source="als"} 0.4
# HELP recloop_drift_head_share h.
# TYPE recloop_drift_head_share gauge
recloop_drift_head_share{app="a",pid="1"} 0.2
# HELP recloop_catalog_coverage c.
# TYPE recloop_catalog_coverage gauge
recloop_catalog_coverage{app="a",pid="1",surface="home",variant="default"} 0.35
"""


def test_processes_are_combined_and_judged_by_the_thresholds() -> None:
    apps = parse_metrics(EXPOSITION)
    a, b = apps["a"], apps["b"]
    assert a.requests == 60  # summed over the processes
    # The largest PSI and the smallest p-value, as the alert rules take them.
    assert a.features["item_category"] == (0.9, 0.001)
    assert a.coverage == {("home", "default"): 0.35}
    assert a.head_share == 0.2
    settings = DriftSettings(min_requests=50)
    assert [o.split(":")[0] for o in a.over(settings)] == ["item_category"]
    # b: too few sampled requests to judge its features; its embeddings are over 0.3.
    assert b.over(settings) == ["als item embeddings: shift 0.40 > 0.3"]
    assert a.over(DriftSettings(min_requests=100)) == []
    assert parse_metrics("") == {}
