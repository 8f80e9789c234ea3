"""Prometheus metrics of the gateway. Under gunicorn with several workers, set
PROMETHEUS_MULTIPROC_DIR so /metrics adds up every worker (the dev script does)."""
import time
from contextlib import contextmanager

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

from crm_common.config import get_settings
from crm_common.observability import labelled

REQUESTS = Counter("crm_gateway_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("crm_gateway_request_seconds", "HTTP request latency", ["method", "endpoint"],
                    buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
RPC_LATENCY = Histogram("crm_gateway_rpc_seconds", "RPC call latency", ["service", "method"],
                        buckets=(.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5))
RPC_ERRORS = Counter("crm_gateway_rpc_errors_total", "RPC calls that failed",
                     ["service", "method", "code"])


class Metrics:
    """Labelled children through crm_common.observability.labelled (kept, not looked up)."""

    def observe_request(self, method, endpoint, status, seconds):
        labelled(REQUESTS, method, endpoint, str(status)).inc()
        labelled(LATENCY, method, endpoint).observe(seconds)

    @contextmanager
    def rpc_timer(self, service, method):
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            RPC_ERRORS.labels(service, method, getattr(exc, "code", type(exc).__name__)).inc()
            raise
        finally:
            labelled(RPC_LATENCY, service, method).observe(time.perf_counter() - start)

    def render(self):
        if get_settings().gateway.prometheus_multiproc_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(), CONTENT_TYPE_LATEST
