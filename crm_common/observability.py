"""Metrics and structured logs for every service (nameko side).

ServiceMetrics: Prometheus counters/histograms of every entrypoint call (RPC, event handler,
timer) by outcome, and, read at scrape time, the outbox backlog. Served on
CRM_METRICS_PORT (no server when unset, e.g. several processes on one dev machine).

LogContext + JsonFormatter: one JSON object per log line with the service, the entrypoint and
the request id that came from the gateway in the RPC context (and travels in events).
"""
import gc
import json
import logging
import time

from eventlet.corolocal import local
from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from crm_common.config import get_settings

CALLS = Counter("crm_service_calls_total", "Entrypoint calls handled",
                ["service", "entrypoint", "outcome"])
DURATION = Histogram("crm_service_call_seconds", "Entrypoint call duration",
                     ["service", "entrypoint"],
                     buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))

_current = local()  # per greenlet: the worker being run


class ServiceMetrics(DependencyProvider):
    started_port = None

    def setup(self):
        port = get_settings().metrics_port
        if port and ServiceMetrics.started_port is None:
            start_http_server(port)
            ServiceMetrics.started_port = port
        self._timers = {}

    def start(self):
        REGISTRY.register(_OutboxCollector(self.container))
        # everything loaded at start (modules, schemas, clients) lives as long as the
        # process: out of the collector's way, so a full collection, which can stall every
        # greenlet of the service at once, walks only what requests created since
        gc.freeze()

    def worker_setup(self, worker_ctx):
        self._timers[worker_ctx.call_id] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._timers.pop(worker_ctx.call_id, None)
        name = worker_ctx.entrypoint.method_name
        service = self.container.service_name
        outcome = "ok" if exc_info is None else (
            "expected_error" if isinstance(exc_info[1], getattr(worker_ctx.entrypoint,
                                                                "expected_exceptions", ()) or ())
            else "error")
        labelled(CALLS, service, name, outcome).inc()
        if started is not None:
            labelled(DURATION, service, name).observe(time.perf_counter() - started)


_CHILDREN = {}


def labelled(metric, *values):
    """metric.labels(*values), kept: prometheus' labels() validates and takes a lock on every
    call (a tenth of a service worker's own Python time on a simple read). The gateway's
    metrics use it too."""
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


class _OutboxCollector:
    """crm_outbox_backlog: events waiting in this service's outbox (read when scraped)."""

    def __init__(self, container):
        self.container = container

    def collect(self):
        family = GaugeMetricFamily("crm_outbox_backlog", "Events waiting in the outbox",
                                   labels=["service"])
        from crm_common.messaging.outbox import OutboxDispatcher
        for dep in self.container.dependencies:
            if isinstance(dep, OutboxDispatcher) and dep.collection is not None:
                try:
                    family.add_metric([self.container.service_name], dep.backlog())
                except Exception:  # noqa: BLE001 - a scrape must not fail on a DB hiccup
                    pass
        yield family


class LogContext(DependencyProvider):
    """Makes the worker's service, entrypoint and request id visible to JsonFormatter."""

    def worker_setup(self, worker_ctx):
        _current.fields = {"service": self.container.service_name,
                           "entrypoint": worker_ctx.entrypoint.method_name,
                           "request_id": worker_ctx.context_data.get("request_id"),
                           "call_id": worker_ctx.call_id}

    def worker_teardown(self, worker_ctx):
        _current.fields = None


def current_log_fields():
    return getattr(_current, "fields", None) or {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, exception."""

    def __init__(self, *args, context=current_log_fields, **kwargs):
        super().__init__(*args, **kwargs)
        self.context = context

    def format(self, record):
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update({k: v for k, v in self.context().items() if v is not None})
        entry.update(getattr(record, "fields", None) or {})  # logger.info(..., extra={"fields": {}})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


JsonFormatter.converter = time.gmtime
