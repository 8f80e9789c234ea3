"""JSON log lines for the gateway, with the request id of the request being served."""
from flask import g, has_request_context, request

from crm_common.observability import JsonFormatter


def request_fields():
    if not has_request_context():
        return {"service": "gateway"}
    return {"service": "gateway", "request_id": g.get("request_id"),
            "method": request.method, "path": request.path}


class GatewayJsonFormatter(JsonFormatter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, context=request_fields, **kwargs)
