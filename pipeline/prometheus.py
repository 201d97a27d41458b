"""Helpers for prometheus_client shared by the workers' and the edge's metrics."""

from __future__ import annotations

from typing import Any


class LabelledChildren:
    """A labelled metric's children, each looked up once: ``metric.labels(...)`` hashes
    and locks on every call, which the hot paths (an event in, a frame out) pay per
    record otherwise."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
