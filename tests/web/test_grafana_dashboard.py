"""docker/grafana-dashboard.json queries only metrics that livecoach exposes.

Every ``livecoach_*`` name in the dashboard's queries must be a sample name of a
running edge's ``/metrics`` or of a worker's (the registry every worker app serves,
:class:`agents.observability.WorkerMetrics`; tests/test_worker_metrics.py checks the
same against running worker processes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.observability import WorkerMetrics
from tests.web.conftest import Running
from web.observability import metrics_response

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana-dashboard.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}


def dashboard_metric_names() -> set[str]:
    """The ``livecoach_*`` series names the dashboard's panels query."""
    dashboard = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names.update(re.findall(r"\blivecoach_[a-z0-9_]+", target["expr"]))
    return names


def exposed_names(exposition: str) -> set[str]:
    """Every series name an exposition can hold (a family's, with its type's suffixes)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def _worker_names(queried: set[str]) -> set[str]:
    return {name for name in queried if name.startswith("livecoach_worker_")}


async def test_the_dashboard_queries_only_metrics_an_edge_exposes(edge: Running) -> None:
    queried = dashboard_metric_names()
    assert len(queried) >= 15, queried
    async with edge.session.get(edge.url("/healthz")) as response:  # a request counted
        assert response.status == 200
    edge_text = metrics_response(edge.edge.metrics.registry).text
    assert edge_text is not None
    edge_queried = queried - _worker_names(queried)
    assert "livecoach_http_requests_total" in edge_queried
    assert edge_queried - exposed_names(edge_text) == set()


def test_the_dashboard_queries_only_metrics_a_worker_exposes() -> None:
    # Built in a plain (not async) test: a Faust sensor made on a running test loop
    # leaves transports for the garbage collector.
    worker_queried = _worker_names(dashboard_metric_names())
    assert len(worker_queried) >= 6, worker_queried
    exposed = exposed_names(WorkerMetrics("livecoach").exposition().decode())
    assert worker_queried - exposed == set()
