"""gunicorn settings, from the gateway section of crm_common.config. gthread workers: each
thread takes one pooled RPC client at a time (gunicorn has no eventlet worker any more)."""
from crm_common.config import get_settings

GATEWAY = get_settings().gateway
bind = GATEWAY.bind
worker_class = "gthread"
workers = GATEWAY.workers
threads = GATEWAY.threads
timeout = GATEWAY.timeout
graceful_timeout = 20
keepalive = 5
# what gunicorn itself refuses before the app sees a request (answered 400/431 in the
# API's JSON error shape, gateway.limits.write_json_error): request line, header count and
# size of one header line
limit_request_line = GATEWAY.limit_request_line
limit_request_fields = GATEWAY.limit_request_fields
limit_request_field_size = GATEWAY.limit_request_field_size
accesslog = GATEWAY.access_log or None  # the app logs each request itself
logger_class = "gateway.logs.GunicornLogger"  # no access line built unless accesslog is set
errorlog = "-"
# one JSON object per line, with the request id (gateway/logs.py)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "gateway.logs.GatewayJsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                             "stream": "ext://sys.stderr"}},
    "root": {"level": GATEWAY.log_level, "handlers": ["console"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False}},
}


def _json_error_pages():
    from gunicorn import util

    from gateway.limits import write_json_error
    util.write_error = write_json_error  # the workers call it through the module


_json_error_pages()


def child_exit(server, worker):
    # multiprocess Prometheus: forget the gauges of a worker that is gone
    if GATEWAY.prometheus_multiproc_dir:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
