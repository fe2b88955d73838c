"""Prometheus metrics for `/metrics`: what the app served, what its models did.

Counting is plain dict and list arithmetic on the event loop; a request's own count and
latency are taken when its access-log line is written (`http.AccessLog`), a batch at a
time, and a scrape has what is pending written first (`Metrics.counted_by`).
`prometheus_client` is imported only to write the exposition when `/metrics` is
scraped. Labels hold route templates, methods, statuses, model names, auth modes and
rate-limit names: never a credential, a client address or a raw path.

On Modal each container counts its own requests, as every Prometheus target does: a
scrape reaches one container, and a dashboard sums the containers it has scraped.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from starlette.responses import Response

__all__ = ["METRICS", "Metrics", "exposition"]

# Seconds: Prometheus' client defaults, with room for slow model calls.
LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Counts per bucket (not yet cumulative), their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative, as the exposition writes them."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class Metrics:
    """Everything `/metrics` reports, for one process (one Modal container)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.model_latency: dict[tuple[str, str], Histogram] = {}
        self.batch_sizes: dict[str, Histogram] = {}
        self.in_flight: dict[str, int] = {}
        self.queues: dict[str, Callable[[], int]] = {}
        self.tokens: dict[str, int] = {}
        self.load_seconds: dict[str, float] = {}
        self.rate_limited_total: dict[str, int] = {}
        self.auth_failures: dict[str, int] = {}
        # Model calls finish in worker threads (batches, streams): their counts take this.
        self.lock = threading.Lock()
        # What counts a batch at a time (the access log): each is flushed before a scrape.
        self.flushes: list[Callable[[], None]] = []

    def counted_by(self, flush: Callable[[], None]) -> None:
        """`flush` counts what is pending (an app's access log, given by `http.app`); a
        scrape calls it first, so its counts are current."""
        if flush not in self.flushes:
            self.flushes.append(flush)

    # --- counted on the request path ---

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        route = route or "unmatched"  # a 404's path is the client's text: not a label
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = Histogram(LATENCY)
        histogram.observe(seconds)

    def rate_limited(self, limit: str) -> None:
        self.rate_limited_total[limit] = self.rate_limited_total.get(limit, 0) + 1

    def auth_failed(self, mode: str) -> None:
        self.auth_failures[mode] = self.auth_failures.get(mode, 0) + 1

    # --- counted by the models ---

    def model_call(self, model: str, call: str, seconds: float) -> None:
        with self.lock:
            histogram = self.model_latency.get((model, call))
            if histogram is None:
                histogram = self.model_latency[(model, call)] = Histogram(LATENCY)
            histogram.observe(seconds)

    def calling(self, model: str, change: int) -> None:
        with self.lock:
            self.in_flight[model] = self.in_flight.get(model, 0) + change

    def batch(self, model: str, size: int, seconds: float) -> None:
        """One batched model call: its inputs and its time."""
        with self.lock:
            histogram = self.batch_sizes.get(model)
            if histogram is None:
                histogram = self.batch_sizes[model] = Histogram(BATCH)
            histogram.observe(size)
        self.model_call(model, "batch", seconds)

    def generated(self, model: str, tokens: int) -> None:
        with self.lock:
            self.tokens[model] = self.tokens.get(model, 0) + tokens

    def loaded(self, model: str, seconds: float) -> None:
        self.load_seconds[model] = seconds

    def queue(self, model: str, depth: Callable[[], int]) -> None:
        """Where a model's waiting requests are counted (its batcher's queue)."""
        self.queues[model] = depth

    # --- the exposition ---

    def collect(self) -> Iterator[Any]:
        """Prometheus metric families, for `prometheus_client`'s registry."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        with self.lock:
            requests = dict(self.requests)
            latency = {k: (h.buckets(), h.sum) for k, h in self.latency.items()}
            model_latency = {k: (h.buckets(), h.sum) for k, h in self.model_latency.items()}
            batches = {k: (h.buckets(), h.sum) for k, h in self.batch_sizes.items()}
            waiting = {
                m: n + self.queues[m]() if m in self.queues else n
                for m, n in self.in_flight.items()
            }
            waiting.update({m: f() for m, f in self.queues.items() if m not in waiting})
            tokens, loads = dict(self.tokens), dict(self.load_seconds)
            limited, refused = dict(self.rate_limited_total), dict(self.auth_failures)

        yield family(
            CounterMetricFamily,
            "endpointgen_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            {(r, m, str(s)): n for (r, m, s), n in requests.items()},
        )
        histogram = HistogramMetricFamily
        yield family(
            histogram,
            "endpointgen_request_duration_seconds",
            "Time to answer, by route",
            ["route"],
            {(route,): h for route, h in latency.items()},
        )
        yield family(
            histogram,
            "endpointgen_model_duration_seconds",
            "Time of model calls, by model and call",
            ["model", "call"],
            model_latency,
        )
        yield family(
            histogram,
            "endpointgen_batch_size",
            "Inputs per batched model call",
            ["model"],
            {(m,): h for m, h in batches.items()},
        )
        yield family(
            GaugeMetricFamily,
            "endpointgen_queue_depth",
            "Model calls waiting or running (with batching: every request not yet answered)",
            ["model"],
            {(m,): n for m, n in waiting.items()},
        )
        yield family(
            CounterMetricFamily,
            "endpointgen_tokens_generated",
            "Tokens generated",
            ["model"],
            {(m,): n for m, n in tokens.items()},
        )
        yield family(
            GaugeMetricFamily,
            "endpointgen_model_load_seconds",
            "Time the model took to load",
            ["model"],
            {(m,): n for m, n in loads.items()},
        )
        yield family(
            CounterMetricFamily,
            "endpointgen_rate_limited",
            "Requests refused by a rate limit (429)",
            ["limit"],
            {(limit,): n for limit, n in limited.items()},
        )
        yield family(
            CounterMetricFamily,
            "endpointgen_auth_failures",
            "Requests refused by auth (401)",
            ["mode"],
            {(mode,): n for mode, n in refused.items()},
        )


def family(kind: Any, name: str, text: str, labels: list[str], values: dict[Any, Any]) -> Any:
    """One metric family of `kind`, a sample per label tuple: a number, or a histogram's
    (cumulative buckets, sum)."""
    made = kind(name, text, labels=labels)
    for key, value in sorted(values.items()):
        if isinstance(value, tuple):
            made.add_metric(list(key), value[0], value[1])
        else:
            made.add_metric(list(key), value)
    return made


METRICS = Metrics()
_registry: Any = None


def exposition() -> Response:
    """The Prometheus text format of this process's metrics, its CPU and memory too."""
    global _registry
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.process_collector import ProcessCollector

    for flush in METRICS.flushes:
        flush()  # requests are counted as their log lines are written: now

    if _registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(METRICS)
        ProcessCollector(registry=registry)
        _registry = registry
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE)
