"""How route handlers reach services: the app's RPC pool, with this request's context."""
from flask import current_app

from gateway.api import caller_context


def call(service, method, *args, **kwargs):
    pool = current_app.extensions["crm.rpc"]
    metrics = current_app.extensions["crm.metrics"]
    with metrics.rpc_timer(service, method):
        return pool.call(service, method, *args, context=caller_context(), **kwargs)
