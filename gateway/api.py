"""Routes declared once with their schemas: the same declaration validates the request,
calls the handler and writes the operation into the OpenAPI document."""
import json
import re
from dataclasses import dataclass, field

from flask import Response, g, request
from marshmallow import Schema

from crm_common.errors import CrmError, ValidationFailed
from crm_common.validation import load

_PATH_PARAM = re.compile(r"{(\w+)}")


class ErrorBody(Schema):
    from marshmallow import fields as _f
    error = _f.Dict(metadata={"description": '{"code", "message", "details"}'})


@dataclass
class Route:
    path: str
    method: str
    handler: object
    summary: str
    tag: str
    body: type = None
    query: type = None
    response: type = None
    status: int = 200
    partial: bool = False
    errors: tuple = (400, 404, 422, 503, 504)
    # auth: `public` routes skip sign-in (provider webhooks, web forms: they verify a
    # signature or key themselves); `scopes` are what an API key needs to call it.
    public: bool = False
    scopes: tuple = ()
    # the per-IP and overall rate limits a public route counts against (security.py,
    # crm_common.config public_rates); None = the "public" group
    rate_group: str = None
    # the route's cell of the permission matrix (gateway/permissions.py); every route has one
    permission: str = None
    # a larger body limit for this route (file uploads); None = the global limit
    max_body_bytes: int = None
    # machine ingest (call events, form posts) whose service stores every request itself
    # (call log, inbound requests): no audit entry per request
    audit: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def flask_rule(self):
        return _PATH_PARAM.sub(r"<\1>", self.path)

    @property
    def endpoint(self):
        return f"{self.method.lower()}_{self.handler.__module__.rsplit('.', 1)[-1]}_{self.handler.__name__}"


class Api:
    def __init__(self, prefix="/api/v1"):
        self.prefix = prefix
        self.routes = []

    def route(self, path, method, summary, tag, **options):
        def decorator(handler):
            self.routes.append(Route(self.prefix + path, method.upper(), handler, summary, tag,
                                     **options))
            return handler
        return decorator

    def route_for(self, endpoint):
        return self._by_endpoint.get(endpoint)

    def register(self, app):
        from gateway.permissions import check_routes
        check_routes(self.routes)  # a route without a known permission stops the start
        self._by_endpoint = {route.endpoint: route for route in self.routes}
        for route in self.routes:
            # a route with its own CORS preflight (web forms) answers OPTIONS itself
            preflight = route.extra.get("preflight")
            app.add_url_rule(route.flask_rule, route.endpoint, _view(route),
                             methods=[route.method] + (["OPTIONS"] if preflight else []),
                             provide_automatic_options=False if preflight else None)


def _view(route):
    body_schema = route.body() if route.body else None
    query_schema = route.query() if route.query else None

    def view(**path_params):
        from gateway import auth, field_access, idempotency
        from gateway.permissions import permission_of
        if request.method == "OPTIONS":
            return route.extra["preflight"](**path_params)
        auth.authorize(route)
        # a custom role's field grants (gateway/field_access.py); None for everyone else
        fields_guard = field_access.guard(g.get("identity"), route, permission_of(route))
        replay = idempotency.begin(route, lambda: auth.current().ready())
        if replay is not None:  # the stored answer to this Idempotency-Key
            return replay
        params = request.args.to_dict()
        if query_schema is not None:
            _validate(query_schema, params)
        body = None
        if body_schema is not None:
            body = read_json()
            _validate(body_schema, body, partial=route.partial, json_body=True)
        if fields_guard is not None:
            fields_guard.check(params, body)
        result = route.handler(**path_params, body=body, params=params)
        if isinstance(result, Response):  # downloads (export, CSV) stream their own body
            return result
        status = route.status
        if isinstance(result, tuple):
            result, status = result
        if fields_guard is not None:
            result = fields_guard.redact(result)
        return json_response(result, status)

    return view


def read_json():
    if not request.mimetype or request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the body as application/json",
                                   {"content_type": request.content_type})
    from gateway.limits import parse_json_body
    body = parse_json_body(request.get_data(cache=True))
    if not isinstance(body, dict):
        raise ValidationFailed("Invalid input", {"fields": {"_schema": ["Expected a JSON object."]}})
    return body


def _validate(schema, data, partial=False, json_body=False):
    # a JSON body's types are strict; query parameters arrive as text (validation.load)
    load(schema, data, partial=partial, json_body=json_body)
    from gateway import user_refs
    user_refs.check(type(schema), data)  # the people it names exist (422 before any RPC)


class UnsupportedMediaType(CrmError):
    code, status = "unsupported_media_type", 415


def json_response(payload, status=200):
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    response = Response(body, status=status, mimetype="application/json")
    return response


def caller_context():
    """The nameko context data every RPC from this request carries."""
    identity = g.get("identity") or {}
    return {"request_id": g.get("request_id"), "user_id": identity.get("user_id"),
            "user_role": identity.get("role"), "user_team": identity.get("team"),
            "user_team_members": identity.get("team_members"),
            "user_scope": g.get("route_scope")}
