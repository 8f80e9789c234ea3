"""The stream process's WSGI app, served by eventlet (one green thread per open stream,
never a gunicorn request thread).

- `GET /api/v1/stream`: Server-Sent Events for the signed-in user (`Authorization: Bearer`,
  or `?ticket=` from `POST /api/v1/stream/tickets`); `Last-Event-ID` (header, or
  `?last_event_id=` for a client that opens a new EventSource) replays what was missed, else
  a `resync` event. A comment line every CRM_STREAM_HEARTBEAT_S keeps proxies from closing
  an idle stream; a stream ends after CRM_STREAM_MAX_S and the client reconnects (its
  identity and visibility are checked again then), or as soon as the client goes away
  (`_watch_client`).
- `GET /api/v1/stream/healthz`, `/api/v1/stream/readyz`: the process, and its broker feed.
- anything else: 404, or, with CRM_STREAM_UPSTREAM set (`./crm up`, tests), forwarded to the
  gateway, so one origin serves the console, the API and the stream (front.py).
"""
import json
import logging
import time
from urllib.parse import parse_qs

import eventlet
from eventlet.queue import Empty, Full, LightQueue

from crm_common.errors import CrmError
from gateway.auth import Auth, Unauthenticated
from gateway.stream import tickets
from gateway.stream.hub import RESYNC, Listener

log = logging.getLogger("gateway.stream")
STREAM_PATH = "/api/v1/stream"


class StreamAuth(Auth):
    """The gateway's own identity rules; the gateway makes the indexes and the first admin."""

    def ready(self):
        return self.store


def frame(stream_id, name, body):
    head = f"id: {stream_id}\n" if stream_id else ""
    return f"{head}event: {name}\ndata: {body}\n\n".encode()


def _json(start_response, status, payload, headers=()):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                            *headers])
    return [body]


def _error(start_response, error):
    status = f"{error.status} {'Unauthorized' if error.status == 401 else 'Error'}"
    headers = [("WWW-Authenticate", "Bearer")] if error.status == 401 else []
    return _json(start_response, status, {"error": error.to_dict()}, headers)


def _watch_client(rfile, listener):
    """Wake the stream when its client goes away: eventlet learns of a closed connection
    only when a write fails, a heartbeat or two later, so a reloaded page would hold its
    old stream (green thread, queue, buffers) for up to 30 s. An SSE client sends nothing
    after its request: peek (consumes nothing) returns at EOF or a reset."""
    try:
        rfile.peek(1)
    except (OSError, ValueError):
        pass
    try:
        listener.queue.put_nowait(None)
    except Full:  # it is behind: its next write finds the closed connection
        pass


class StreamApp:
    def __init__(self, settings, stream_settings, hub, bus, front=None, auth=None):
        self.settings = stream_settings
        self.hub = hub
        self.bus = bus
        self.front = front
        self.auth = auth or StreamAuth(settings)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == STREAM_PATH:
            return self.stream(environ, start_response)
        if path == STREAM_PATH + "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == STREAM_PATH + "/readyz":
            ready = self.bus.connected
            return _json(start_response, "200 OK" if ready else "503 Service Unavailable",
                         {"status": "ready" if ready else "not_ready",
                          "broker": self.bus.connected, **self.hub.stats()})
        if self.front is not None:
            return self.front(environ, start_response)
        return _json(start_response, "404 Not Found",
                     {"error": {"code": "not_found", "message": "Not found", "details": {}}})

    # identity ------------------------------------------------------------------------
    def identify(self, environ, query):
        ticket = (query.get("ticket") or [None])[0]
        if ticket:
            user_id = tickets.redeem(self.auth.store.db, ticket)
            user = self.auth.store.get_user(user_id) if user_id else None
            if user is None:
                raise Unauthenticated("Unknown, used or expired stream ticket",
                                      {"reason": "invalid_ticket"})
            if not user.get("active", True):
                raise Unauthenticated("This account is disabled", {"reason": "account_disabled"})
            return self.auth.user_identity(user)
        scheme, _, token = (environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Sign in: send Authorization: Bearer <token> or ?ticket= "
                                  "from POST /api/v1/stream/tickets")
        return self.auth.token_identity(token.strip())

    # the stream ----------------------------------------------------------------------
    def stream(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "GET":
            return _json(start_response, "405 Method Not Allowed",
                         {"error": {"code": "method_not_allowed", "message": "GET only",
                                    "details": {}}}, [("Allow", "GET")])
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            identity = self.identify(environ, query)
        except CrmError as error:
            return _error(start_response, error)
        last_id = (environ.get("HTTP_LAST_EVENT_ID")
                   or (query.get("last_event_id") or [None])[0])
        listener = Listener(identity, LightQueue(self.settings.queue_size))
        self.hub.add(listener)  # before the replay: nothing falls between the two
        replay = self.hub.replay(listener, last_id) if last_id else []
        environ["eventlet.minimum_write_chunk_size"] = 0  # every frame leaves at once
        start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8"),
                                  ("Cache-Control", "no-cache, no-transform"),
                                  ("X-Accel-Buffering", "no")])
        watcher = eventlet.spawn(_watch_client, environ["eventlet.input"].rfile, listener)
        return self._frames(listener, last_id, replay, watcher)

    def _frames(self, listener, last_id, replay, watcher):
        deadline = time.monotonic() + self.settings.max_stream_s
        try:
            hello = json.dumps({"user_id": listener.user_id,
                                "last_event_id": self.hub.stats()["last_event_id"]})
            yield b"retry: 3000\n" + frame(None, "hello", hello)
            if replay is None:
                yield frame(None, RESYNC, json.dumps({"reason": "missed_events_unknown",
                                                      "last_event_id": last_id}))
            else:
                for item in replay:
                    yield frame(*item)
            while True:
                if listener.overflowed:
                    yield frame(None, RESYNC, json.dumps({"reason": "too_slow"}))
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    item = listener.queue.get(timeout=min(self.settings.heartbeat_s, remaining))
                except Empty:
                    yield b": heartbeat\n\n"
                    continue
                if item is None:  # the client went away
                    return
                yield frame(*item)
        finally:
            # before eventlet reads the connection's next request (keep-alive): one reader
            watcher.kill()
            self.hub.remove(listener)
