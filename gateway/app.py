"""The API gateway: Flask app factory. HTTP only: auth, validation, routing to RPC."""
import importlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, Response, g, request, send_from_directory
from werkzeug.exceptions import HTTPException

from crm_common.config import SERVICES, get_settings
from crm_common.errors import CrmError
from gateway import auth, limits, security
from gateway.api import json_response
from gateway.metrics import Metrics
from gateway.openapi import build_spec
from gateway.routes import ROUTE_MODULES, api
from crm_common.messaging.rpc import RpcPool

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

OPS_PATHS = [("/healthz", "get", "The gateway process is alive"),
             ("/readyz", "get", "The broker and every service answer, each reported separately"),
             ("/metrics", "get", "Prometheus metrics")]

HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
              413: "payload_too_large", 415: "unsupported_media_type"}


class GatewayFlask(Flask):
    def make_default_options_response(self):
        """OPTIONS (CORS preflight) answers with the methods of the matched path pattern
        only: werkzeug would also list those of every other pattern the URL happens to
        match (/contacts/export also matches /contacts/{contact_id})."""
        response = self.response_class(status=200)
        rule = request.url_rule
        methods = self.extensions["crm.methods"].get(rule.rule) if rule is not None else None
        response.allow.update(methods or super().make_default_options_response().allow)
        return response


def create_app(settings=None, rpc_pool=None):
    settings = settings or get_settings()
    app = GatewayFlask(__name__)
    limits.install_json_provider(app)
    app.extensions["crm.settings"] = settings
    app.extensions["crm.rpc"] = rpc_pool or RpcPool(settings.amqp_uri, timeout=settings.rpc_timeout)
    app.extensions["crm.metrics"] = metrics = Metrics()

    for name in ROUTE_MODULES:
        importlib.import_module(f"gateway.routes.{name}")
    api.register(app)
    methods = app.extensions["crm.methods"] = {}
    for rule in app.url_map.iter_rules():
        methods.setdefault(rule.rule, set()).update(rule.methods)
    spec = build_spec(api, OPS_PATHS)
    auth.init_app(app, settings)  # users/keys store, security headers, CORS, audit

    # every request body bounded on the bytes read, per route (gateway/limits.py)
    app.wsgi_app = limits.BodyLimit(
        app.wsgi_app, app.url_map,
        lambda endpoint: getattr(api.route_for(endpoint), "max_body_bytes", None),
        settings.max_body_bytes)

    @app.before_request
    def start_request():
        g.started = time.perf_counter()
        g.request_id = limits.request_id(request.headers.get("X-Request-Id"), new_request_id)
        limits.check_declared_body(request.environ)
        limits.check_headers(request.headers)
        route = api.route_for(request.endpoint)
        if route is not None and route.public:
            # per client IP and overall, before the body is read or any service asked
            # ready(): the gateway's collections exist before the first counter upsert
            # (SecantusDB can deadlock an upsert racing the creation of its collection)
            security.check_public_rate(auth.current().ready(), route.rate_group or "public",
                                       security.client_ip(settings.gateway.trusted_proxy_hops),
                                       settings.gateway.public_rates)
        if request.path.startswith(api.prefix):
            auth.authenticate()

    @app.after_request
    def finish_request(response):
        if limits.body_was_refused(request.environ) and response.status_code != 413:
            # a route that swallowed the 413 of its body stream still answers it
            error = limits.PayloadTooLarge("Request body too large", {})
            response = json_response({"error": error.to_dict()}, 413)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe_request(request.method, endpoint, response.status_code, seconds)
        access_log.info("%s %s %s", request.method, request.path, response.status_code,
                        extra={"fields": {"status": response.status_code,
                                          "duration_ms": round(seconds * 1000, 2),
                                          "user_id": (g.get("identity") or {}).get("user_id")}})
        return response

    @app.errorhandler(CrmError)
    def crm_error(error):
        return json_response({"error": error.to_dict()}, error.status)

    @app.errorhandler(HTTPException)
    def http_error(error):
        code = HTTP_CODES.get(error.code, "http_error")
        response = json_response({"error": {"code": code, "message": error.description,
                                            "details": {}}}, error.code)
        for name, value in error.get_headers():
            if name.lower() != "content-type":  # Allow on 405, Retry-After...
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(error):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": {"code": "internal_error", "message": "Internal error",
                                        "details": {"request_id": g.get("request_id")}}}, 500)

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        checks = readiness(app.extensions["crm.rpc"])
        ready = all(c["ok"] for c in checks.values())
        return json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                             200 if ready else 503)

    @app.get("/metrics")
    def metrics_view():
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.get("/api/v1/openapi.json")
    def openapi():
        from gateway.custom_fields_doc import describe  # the company's custom fields
        return json_response(describe(spec))

    register_docs(app)
    register_console(app, settings.stream.web_dist)
    return app


def new_request_id():
    return uuid.uuid4().hex


def readiness(pool, timeout=1.5):
    """Ask every service's `health` at once, each with a short timeout."""
    checks = {}
    try:
        with pool.client():
            checks["broker"] = {"ok": True}
    except CrmError as exc:
        checks["broker"] = {"ok": False, "error": exc.message}
        return checks

    def ask(service):
        try:
            return service, {"ok": True, **pool.call(service, "health", timeout=timeout)}
        except CrmError as exc:
            return service, {"ok": False, "error": exc.message, "code": exc.code}

    with ThreadPoolExecutor(max_workers=len(SERVICES)) as executor:
        for service, result in executor.map(ask, SERVICES):
            checks[service] = result
    return checks


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>CRM platform API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


def register_docs(app):
    """A browsable page over the OpenAPI document, served from the swagger-ui-bundle
    package so it works with no internet access."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # pragma: no cover - the package is a pinned dependency
        swagger_ui_path = None

    @app.get("/api/docs")
    def docs():
        return Response(DOCS_PAGE, mimetype="text/html")

    @app.get("/api/docs/static/<path:filename>")
    def docs_static(filename):
        return send_from_directory(swagger_ui_path, filename)


# the console's own policy: Mantine sets style attributes; scripts, API and stream are ours
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
               "object-src 'none'; base-uri 'self'; frame-ancestors 'none'")


# the console's text files, sent gzipped to a browser that takes it (3-4 times smaller: the
# contacts page fetched 706 KB of JavaScript uncompressed); nginx does the same in containers
COMPRESSED = (".js", ".css", ".svg", ".json", ".map", ".txt")
_GZIPPED = {}   # (file, mtime, size) -> gzipped bytes: a build's files, compressed once each


def gzipped(filename):
    import gzip
    import mimetypes
    import os
    stat = os.stat(filename)
    key = (filename, stat.st_mtime_ns, stat.st_size)
    body = _GZIPPED.get(key)
    if body is None:
        with open(filename, "rb") as handle:
            body = _GZIPPED[key] = gzip.compress(handle.read(), 6, mtime=0)
    response = Response(body, mimetype=mimetypes.guess_type(filename)[0] or "application/octet-stream")
    response.headers["Content-Encoding"] = "gzip"
    return response


def register_console(app, web_dist):
    """The console (web/, built into `web_dist` by `./crm up`) at `/`: its files, and
    index.html for every other path outside /api (client-side routes). Without a build the
    gateway serves the API only. /api/v1/stream is never this app's: the stream process
    serves it (gateway/stream/)."""
    import os

    from flask import current_app
    from werkzeug.exceptions import MethodNotAllowed, NotFound

    index = os.path.join(web_dist, "index.html")

    def page(path=""):
        if path.startswith("api/"):  # an API path only other methods serve: 405, not 404
            others = set(current_app.url_map.bind_to_environ(request.environ)
                         .allowed_methods()) - {"GET", "HEAD"}
            if others - {"OPTIONS"}:
                raise MethodNotAllowed(valid_methods=sorted(others))
        if path.startswith("api/") or not os.path.isfile(index):
            raise NotFound()
        if path and os.path.isfile(os.path.join(web_dist, path)):
            if path.endswith(COMPRESSED) and "gzip" in request.headers.get("Accept-Encoding", ""):
                response = gzipped(os.path.join(web_dist, path))
            else:
                response = send_from_directory(web_dist, path)
            response.headers["Vary"] = "Accept-Encoding"
            if path.startswith("assets/"):  # content-hashed names
                response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        elif path.startswith("assets/") or "." in path.rsplit("/", 1)[-1]:
            raise NotFound()  # a missing file, not a client-side route
        else:
            response = send_from_directory(web_dist, "index.html")
            response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = CONSOLE_CSP
        return response

    app.add_url_rule("/", "console_index", page, methods=["GET"])
    app.add_url_rule("/<path:path>", "console", page, methods=["GET"])
