"""Prometheus metrics of the gateway. Under gunicorn with several workers, set
PROMETHEUS_MULTIPROC_DIR so /metrics adds up every worker (the dev script does)."""
import os
import time
from contextlib import contextmanager

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

REQUESTS = Counter("crm_gateway_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("crm_gateway_request_seconds", "HTTP request latency", ["method", "endpoint"],
                    buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
RPC_LATENCY = Histogram("crm_gateway_rpc_seconds", "RPC call latency", ["service", "method"],
                        buckets=(.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5))
RPC_ERRORS = Counter("crm_gateway_rpc_errors_total", "RPC calls that failed",
                     ["service", "method", "code"])


class Metrics:
    """Labelled children are kept in dicts: prometheus' labels() validates and takes a lock
    on every call."""

    def __init__(self):
        self._requests = {}
        self._rpc = {}

    def observe_request(self, method, endpoint, status, seconds):
        key = (method, endpoint, status)
        children = self._requests.get(key)
        if children is None:
            children = self._requests[key] = (REQUESTS.labels(method, endpoint, str(status)),
                                              LATENCY.labels(method, endpoint))
        children[0].inc()
        children[1].observe(seconds)

    @contextmanager
    def rpc_timer(self, service, method):
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            RPC_ERRORS.labels(service, method, getattr(exc, "code", type(exc).__name__)).inc()
            raise
        finally:
            child = self._rpc.get((service, method))
            if child is None:
                child = self._rpc[(service, method)] = RPC_LATENCY.labels(service, method)
            child.observe(time.perf_counter() - start)

    def render(self):
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(), CONTENT_TYPE_LATEST
