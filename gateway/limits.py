"""What the gateway accepts before any route runs: request bodies bounded on the bytes
actually read, JSON that parses into something the services can use, request ids of a
safe shape, and gunicorn's own error answers (request line, headers) in the API's JSON.

Bodies: `BodyLimit` wraps the WSGI app; every request's `wsgi.input` is replaced by a
`BoundedInput` that raises 413 as soon as more than the route's limit has been read,
whatever the framing (Content-Length or chunked), so no route and no parser ever sees
more. A declared Content-Length above the limit is refused before any byte is read. The
route's limit is its declaration's `max_body_bytes` (forms and Telegram updates:
CRM_FORM_MAX_BYTES, imports: CRM_IMPORT_MAX_BYTES), else CRM_MAX_BODY_BYTES.
"""
import json
import re

from werkzeug.exceptions import HTTPException

from crm_common.errors import BadRequest, CrmError, ValidationFailed

# Up to this much of a refused body is read and dropped, so the client gets the 413 instead
# of a reset connection; past it the connection is closed (gunicorn drains 64 KiB at most).
DRAIN_MIN = 1024 * 1024
DRAIN_MAX = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class PayloadTooLarge(CrmError):
    code, status = "payload_too_large", 413


def drain_cap(limit):
    return min(max(4 * limit, DRAIN_MIN), DRAIN_MAX)


class BoundedInput:
    """A request body stream that never gives more than `limit` bytes: the read that would
    cross it raises PayloadTooLarge (after dropping what the client still sends, up to
    drain_cap, so the answer reaches it)."""

    def __init__(self, stream, limit, declared=None):
        self._stream = stream
        self.limit = limit
        self.declared = declared
        self.count = 0
        self.exceeded = declared is not None and declared > limit

    def refuse(self):
        self.exceeded = True
        self._drain()
        raise PayloadTooLarge("Request body too large", {
            "limit_bytes": self.limit,
            "received_bytes": self.declared if self.declared is not None else self.count})

    def _drain(self):
        cap = drain_cap(self.limit)
        if self.declared is not None and self.declared > cap:
            return  # too large to be worth reading: the connection is closed instead
        try:
            while self.count < cap:
                chunk = self._stream.read(min(65536, cap - self.count))
                if not chunk:
                    return
                self.count += len(chunk)
        except Exception:  # noqa: BLE001 - the client went away: nothing to drain
            return

    def _allowed(self, size):
        room = self.limit + 1 - self.count  # one byte more tells "over the limit"
        return room if size is None or size < 0 or size > room else size

    def _take(self, data):
        self.count += len(data)
        if self.count > self.limit:
            self.refuse()
        return data

    def read(self, size=-1):
        if self.exceeded:
            self.refuse()
        return self._take(self._stream.read(self._allowed(size)))

    def read1(self, size=-1):
        return self.read(size)

    def readline(self, size=-1):
        if self.exceeded:
            self.refuse()
        return self._take(self._stream.readline(self._allowed(size)))

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def close(self):
        close = getattr(self._stream, "close", None)
        if close:
            close()


class BodyLimit:
    """WSGI middleware: the route's body limit over every request's input stream."""

    def __init__(self, wsgi_app, url_map, limit_of_endpoint, default_limit):
        self.wsgi_app = wsgi_app
        self.url_map = url_map
        self.limit_of_endpoint = limit_of_endpoint
        self.default_limit = default_limit

    def limit_for(self, environ):
        try:
            endpoint, _ = self.url_map.bind_to_environ(environ).match()
        except HTTPException:  # no such route or method: the global limit
            return self.default_limit
        return self.limit_of_endpoint(endpoint) or self.default_limit

    def __call__(self, environ, start_response):
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0) if environ.get(
                "CONTENT_LENGTH") else None
        except ValueError:
            declared = None  # werkzeug answers the malformed header itself
        environ["wsgi.input"] = environ["crm.body"] = BoundedInput(
            environ["wsgi.input"], self.limit_for(environ), declared)
        return self.wsgi_app(environ, start_response)


def check_declared_body(environ):
    """First thing of every request: a declared length above the limit is 413 at once."""
    body = environ.get("crm.body")
    if body is not None and body.exceeded:
        body.refuse()


def body_was_refused(environ):
    body = environ.get("crm.body")
    return body is not None and body.exceeded


IDEMPOTENCY_KEY_MAX = 200


def check_headers(headers):
    """Request headers the API documents with bounds (OpenAPI): refused above them."""
    key = headers.get("Idempotency-Key")
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise ValidationFailed("Invalid input", {"fields": {"Idempotency-Key": [
            f"Longer than {IDEMPOTENCY_KEY_MAX} characters."]}})


# JSON ------------------------------------------------------------------------------------

def loads(raw):
    """json.loads for request bodies: ValueError (never RecursionError or a value the
    services cannot encode) for nesting deeper than MAX_JSON_DEPTH and for lone UTF-16
    surrogates (\\ud800 without its pair), which no UTF-8 text can hold."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    _check_json(value)
    return value


def _check_json(value):
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ValueError("JSON text holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if _SURROGATE.search(key):
                        raise ValueError("JSON text holds a lone UTF-16 surrogate "
                                         "(\\ud800-\\udfff)")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def parse_json_body(raw):
    try:
        return loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Malformed JSON", {"reason": str(exc)[:300]})


def install_json_provider(app):
    """Flask's own get_json (the audit reads body keys with it) parses the same way."""
    from flask.json.provider import DefaultJSONProvider

    class RequestJSONProvider(DefaultJSONProvider):
        def loads(self, s, **kwargs):
            return loads(s)

    app.json_provider_class = RequestJSONProvider
    app.json = RequestJSONProvider(app)


# request ids -----------------------------------------------------------------------------

def request_id(header_value, new_id):
    """The client's X-Request-Id when it is a plain token (letters, digits, . _ : -, at
    most 64), else a new one: it goes into logs, the audit and every service's context."""
    if header_value and _REQUEST_ID.fullmatch(header_value):
        return header_value
    return new_id()


# gunicorn's own answers ------------------------------------------------------------------

_GUNICORN_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long",
                   417: "expectation_failed", 431: "headers_too_large",
                   500: "internal_error", 501: "not_implemented"}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error, answering in the API's JSON error shape (gunicorn calls it
    for a request line, header or framing it refuses before the app sees the request)."""
    from gunicorn import util
    code = _GUNICORN_CODES.get(status_int, "bad_request")
    if status_int == 414:
        # a URL too long is bad input like any other (a 10,000-character search box)
        status_int, reason = 400, "Request line too long"
    body = json.dumps({"error": {"code": code,
                                 "message": reason, "details": {"reason": str(mesg)[:200]}}})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\n")
    util.write_nonblock(sock, (head + body).encode("latin-1", "replace"))
