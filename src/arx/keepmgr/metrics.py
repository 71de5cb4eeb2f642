"""keepmgr's Prometheus metrics, in a registry of its own (not the process-global one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from arx.protocol.messages import KeepStateName

STATES: tuple[KeepStateName, ...] = (
    "starting",
    "ready",
    "attested",
    "provisioned",
    "running",
    "exited",
    "failed",
)
# API latency buckets in seconds: the target is p99 < 20 ms for queries,
# while creating a Keep takes about a second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _KeepsByState(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("arx_keeps", "Keeps keepmgr knows, by state", labels=["state"])
        counts = self._counts()
        for state in STATES:
            family.add_metric([state], counts.get(state, 0))
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.creations = Counter(
            "arx_keep_creations", "Keeps created and started", registry=self.registry
        )
        self.failures = Counter(
            "arx_keep_failures",
            "Keeps that failed, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "arx_api_refusals",
            "API requests refused at a limit, by limit",
            ["limit"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "arx_api_request_seconds",
            "API request latency, by route and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch_keeps(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_KeepsByState(counts))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
