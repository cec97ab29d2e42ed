"""What ``/metrics`` shows, in the Prometheus text format.

=====================================  ======================================================
``runtime_http_requests_total``        requests answered, by ``method``, ``route`` and ``status``
``runtime_http_request_seconds``       time to answer (histogram), by ``method`` and ``route``
``runtime_schedule_seconds``           time to choose a worker (histogram)
``runtime_heartbeats_total`` ...       the state's counters and gauges, read at scrape time
                                       (:class:`RuntimeCollector`); with a shared state, every
                                       replica counts the fleet's heartbeats
``runtime_state_stale_seconds``        how long this replica's mirror has been out of touch
=====================================  ======================================================

``route`` is the route's template (``/v1/hives/{hive_id}``), never the raw path, so the number of
series stays the number of routes; a request that matches no route counts as ``unmatched``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.service.state import State

UNMATCHED = "unmatched"
_HTTP_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0)
_SCHEDULE_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025)


class RequestMetrics:
    """The per-route request counter and latency histogram of one app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "runtime_http_requests",
            "HTTP requests answered, by route template and status",
            ("method", "route", "status"),
            registry=registry,
        )
        self.seconds = Histogram(
            "runtime_http_request_seconds",
            "Time to answer an HTTP request, by route template",
            ("method", "route"),
            registry=registry,
            buckets=_HTTP_BUCKETS,
        )

    def route(self, method: str, route: str) -> RouteMeter:
        """The meter of one route template."""
        return RouteMeter(self, method, route)


class RouteMeter:
    """Counts and times the answers of one route; its series are looked up once each."""

    def __init__(self, metrics: RequestMetrics, method: str, route: str) -> None:
        self._metrics = metrics
        self._labels = (method, route)
        self._latency = metrics.seconds.labels(method, route)
        self._by_status: dict[int, Counter] = {}

    def record(self, status: int, seconds: float) -> None:
        """One answer with ``status`` that took ``seconds``."""
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._metrics.requests.labels(*self._labels, str(status))
            self._by_status[status] = counter
        counter.inc()
        self._latency.observe(seconds)


def schedule_latency(registry: CollectorRegistry) -> Histogram:
    """The histogram of the time the scheduler takes to choose a worker."""
    return Histogram(
        "runtime_schedule_seconds",
        "Time to choose a worker",
        registry=registry,
        buckets=_SCHEDULE_BUCKETS,
    )


class RuntimeCollector(Collector):
    """Reads the state's counters at scrape time."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> list[Metric]:
        """The state's figures now."""
        hives = self.state.hives
        total, online = hives.hive_count()
        c = hives.counters
        stale = self.state.stale_for()
        return [
            CounterMetricFamily("runtime_heartbeats", "Hive heartbeats received", c.heartbeats),
            CounterMetricFamily(
                "runtime_worker_heartbeats", "Worker heartbeats received", c.worker_heartbeats
            ),
            CounterMetricFamily("runtime_evictions", "Hives evicted after their TTL", c.evictions),
            CounterMetricFamily("runtime_freezes", "Times eviction froze", c.freezes),
            GaugeMetricFamily("runtime_hives_online", "Hives heard from within the TTL", online),
            GaugeMetricFamily("runtime_hives", "Hives held", total),
            GaugeMetricFamily("runtime_frozen", "1 while eviction is frozen", int(hives.frozen)),
            GaugeMetricFamily("runtime_services", "Registered services", len(self.state.services)),
            GaugeMetricFamily(
                "runtime_state_stale_seconds",
                "Seconds this replica has been out of touch with the shared state (0 in sync)",
                stale or 0.0,
            ),
        ]
