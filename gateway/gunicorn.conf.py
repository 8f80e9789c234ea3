"""gunicorn settings from the environment. gthread workers: each thread takes one pooled
RPC client at a time (gunicorn has no eventlet worker any more)."""
import os

bind = os.environ.get("GATEWAY_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("GATEWAY_WORKERS", "2"))
threads = int(os.environ.get("GATEWAY_THREADS", "8"))
timeout = int(os.environ.get("GATEWAY_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# what gunicorn itself refuses before the app sees a request (answered 400/414/431 in the
# API's JSON error shape, gateway.limits.write_json_error): request line, header count and
# size of one header line
limit_request_line = int(os.environ.get("GATEWAY_LIMIT_REQUEST_LINE", "8190"))
limit_request_fields = int(os.environ.get("GATEWAY_LIMIT_REQUEST_FIELDS", "100"))
limit_request_field_size = int(os.environ.get("GATEWAY_LIMIT_REQUEST_FIELD_SIZE", "8190"))
accesslog = os.environ.get("GATEWAY_ACCESS_LOG") or None  # the app logs each request itself
logger_class = "gateway.logs.GunicornLogger"  # no access line built unless accesslog is set
errorlog = "-"
# one JSON object per line, with the request id (gateway/logs.py)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "gateway.logs.GatewayJsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                             "stream": "ext://sys.stderr"}},
    "root": {"level": os.environ.get("LOG_LEVEL", "INFO"), "handlers": ["console"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False}},
}


def _json_error_pages():
    from gunicorn import util

    from gateway.limits import write_json_error
    util.write_error = write_json_error  # the workers call it through the module


_json_error_pages()


def child_exit(server, worker):
    # multiprocess Prometheus: forget the gauges of a worker that is gone
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
