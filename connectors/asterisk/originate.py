"""Click-to-call over the connector's own AMI login: a small HTTP endpoint telephony (any
replica) calls, so a PBX sees one AMI login, the connector's.

  POST /originate         {"call_id", "fields": [[header, value], ...], "wait_s", "at"}
      -> 200 {"status": "queued"|"failed", "reason"}: the Originate's Response
  POST /originate/result  {"call_id", "wait_s", "at"}
      -> 200 {"done": bool, "response": {Response, Reason, Uniqueid, Channel}|null}, waiting
         up to wait_s for the OriginateResponse (404: an unknown call id)

Both signed as contracts.telephony_webhooks describes (401 otherwise). A repeated request
for the same call id answers the first one's answer and dials nothing."""
import collections
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from connectors.asterisk.ami import AmiError
from contracts.telephony_webhooks import (CONNECTOR_MAX_SKEW_S, CONNECTOR_ORIGINATE_FIELDS,
                                          CONNECTOR_SIGNATURE_HEADER, valid_connector_signature)

log = logging.getLogger("connectors.asterisk")
RESPONSE_TIMEOUT_S = 5      # the Originate's own Response ("successfully queued")
MAX_WAIT_S = 120
KEPT = 1000                 # call ids remembered (repeats, results not yet fetched)
MAX_BODY = 64 * 1024


class Originator:
    def __init__(self, client):
        self.client = client
        self.calls = collections.OrderedDict()  # call id -> {"answer", "response", "done"}
        self.cond = threading.Condition()

    def originate(self, call_id, fields, wait_s):
        with self.cond:
            known = self.calls.get(call_id)
            if known is not None:
                return known["answer"]
            entry = self.calls[call_id] = {"answer": None, "response": None, "done": False}
            while len(self.calls) > KEPT:
                self.calls.popitem(last=False)
        try:
            action_id, waiter = self.client.send_action("Originate", fields)
        except AmiError as exc:
            return self._finish(entry, {"status": "failed", "reason": f"AMI: {exc}"})
        try:
            response = self._next(waiter, lambda m: "Response" in m and "Event" not in m,
                                  RESPONSE_TIMEOUT_S)
        except AmiError as exc:
            self.client.release(action_id)
            return self._finish(entry, {"status": "failed", "reason": f"AMI: {exc}"})
        if response.get("Response") != "Success":
            self.client.release(action_id)
            return self._finish(entry, {"status": "failed", "reason": response.get("Message")})
        entry["answer"] = {"status": "queued", "reason": response.get("Message")}
        threading.Thread(target=self._follow, args=(entry, action_id, waiter, wait_s),
                         name=f"originate-{call_id}", daemon=True).start()
        return entry["answer"]

    def _finish(self, entry, answer):
        with self.cond:
            entry["answer"], entry["done"] = answer, True
            self.cond.notify_all()
        return answer

    @staticmethod
    def _next(waiter, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AmiError("no answer from AMI in time")
            try:
                message = waiter.get(timeout=remaining)
            except Exception:  # queue.Empty
                raise AmiError("no answer from AMI in time")
            if "_error" in message:
                raise AmiError(message["_error"])
            if predicate(message):
                return message

    def _follow(self, entry, action_id, waiter, wait_s):
        try:
            event = self._next(waiter, lambda m: m.get("Event") == "OriginateResponse", wait_s)
            response = {k: event.get(k) for k in ("Response", "Reason", "Uniqueid", "Channel")}
        except AmiError as exc:
            response = {"Response": "Unknown", "Reason": None, "error": str(exc)}
        finally:
            self.client.release(action_id)
        with self.cond:
            entry["response"], entry["done"] = response, True
            self.cond.notify_all()

    def result(self, call_id, wait_s):
        with self.cond:
            entry = self.calls.get(call_id)
            if entry is None:
                return None
            self.cond.wait_for(lambda: entry["done"], timeout=wait_s)
            return {"done": entry["done"], "answer": entry["answer"],
                    "response": entry["response"]}


def _clean_fields(fields):
    """[[header, value], ...] of allowed Originate headers, no line breaks (an injected
    CRLF would start another AMI action); None when not so."""
    if not isinstance(fields, list):
        return None
    out = []
    for item in fields:
        if (not isinstance(item, list) or len(item) != 2 or item[0] not in CONNECTOR_ORIGINATE_FIELDS
                or not isinstance(item[1], str) or "\r" in item[1] or "\n" in item[1]):
            return None
        out.append((item[0], item[1]))
    return out


def make_handler(originator, key_of):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 - http.server's naming
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_BODY:
                return self._answer(400, {"error": "a JSON body of at most 64 KiB"})
            body = self.rfile.read(int(length))
            if not valid_connector_signature(body, key_of(),
                                             self.headers.get(CONNECTOR_SIGNATURE_HEADER)):
                return self._answer(401, {"error": "bad or missing signature"})
            try:
                data = json.loads(body)
                at, call_id = float(data["at"]), data["call_id"]
                wait_s = min(max(float(data.get("wait_s", 30)), 0), MAX_WAIT_S)
            except (ValueError, KeyError, TypeError):
                return self._answer(400, {"error": "call_id, at and a JSON body expected"})
            if abs(time.time() - at) > CONNECTOR_MAX_SKEW_S or not isinstance(call_id, str):
                return self._answer(401, {"error": "stale request"})
            if self.path == "/originate":
                fields = _clean_fields(data.get("fields"))
                if fields is None:
                    return self._answer(400, {"error": "fields: [[Originate header, value], ...]"})
                return self._answer(200, originator.originate(call_id, fields, wait_s))
            if self.path == "/originate/result":
                found = originator.result(call_id, wait_s)
                if found is None:
                    return self._answer(404, {"error": "unknown call id"})
                return self._answer(200, found)
            return self._answer(404, {"error": "not found"})

        def log_message(self, fmt, *args):
            log.debug("originate endpoint: " + fmt, *args)

    return Handler


def serve(listen, originator, key_of):
    """Starts the endpoint on "host:port" in a thread; returns the server."""
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(originator, key_of))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="originate-http", daemon=True).start()
    return server
