"""Call recordings through the real stack: a call event announces a recording on a local
HTTP server; the telephony service fetches it in the background into GridFS, and the
gateway serves it (whole and by ranges) to whoever may see the call, also once the server
that held it is gone. Zadarma's recordings are asked of a local receiver following
Zadarma's API (GET /v1/pbx/record/request/, the request signed as its docs say)."""
import base64
import hashlib
import hmac
import io
import json
import math
import struct
import threading
import uuid
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.test_telephony import (ZADARMA_SECRET, key_headers, mobile, wait,  # noqa: F401
                                  zadarma_sign)



@pytest.fixture(scope="module", autouse=True)
def telephony_fetching_from_loopback(stack):
    """Telephony with a fast recordings timer, allowed to fetch from 127.0.0.1 (refused
    outside tests, like every outgoing request to the platform's own network)."""
    stack.stop_service("telephony")
    stack.start_service("telephony", CRM_WEBHOOK_ALLOW_LOOPBACK="1",
                        TELEPHONY_RECORDING_POLL_S="0.3")
    stack.wait_service("telephony")
    yield
    stack.stop_service("telephony")
    stack.start_service("telephony")
    stack.wait_service("telephony")


def make_wav(seconds=6.25, rate=8000):
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 7.0)))
                               for i in range(int(seconds * rate))))
    return out.getvalue()


@pytest.fixture
def recording_server():
    body = make_wav()
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.body, server.hits = body, hits
    server.url = f"http://127.0.0.1:{server.server_address[1]}/rec/"
    yield server
    server.shutdown()
    server.server_close()


def test_recording_is_stored_and_served_with_ranges(stack, api, key_headers, make_user,
                                                    recording_server):
    owner = make_user("agent")
    outsider = make_user("agent")
    contact = api.post("/contacts", json={"first_name": "Rec", "phones": [mobile()],
                                          "owner_id": owner.user["id"]})
    assert contact.status_code == 201, contact.text
    number = contact.json()["phones"][0]["e164"]
    call_id = f"rec-{uuid.uuid4().hex[:12]}"
    base = {"provider": "pbx-rec", "call_id": call_id}
    ring = api.post("/telephony/events", headers=key_headers, json={
        **base, "event_id": f"{call_id}-1", "direction": "inbound", "from": number,
        "to": "+390212345678", "state": "ringing"})
    assert ring.status_code == 200, ring.text
    doc_id = ring.json()["call"]["id"]
    assert api.get(f"/calls/{doc_id}/recording").status_code == 404  # none announced yet

    ended = api.post("/telephony/events", headers=key_headers, json={
        **base, "event_id": f"{call_id}-2", "state": "ended", "outcome": "answered",
        "recording_url": recording_server.url + f"{call_id}.wav"})
    assert ended.status_code == 200, ended.text
    assert wait(lambda: api.get(f"/calls/{doc_id}").json()["recording_state"] == "stored",
                timeout=20), api.get(f"/calls/{doc_id}").json()
    body = recording_server.body
    assert len(recording_server.hits) == 1

    whole = api.get(f"/calls/{doc_id}/recording")
    assert whole.status_code == 200, whole.text
    assert whole.content == body
    assert whole.headers["Content-Type"] == "audio/wav"
    assert whole.headers["Accept-Ranges"] == "bytes"

    part = api.get(f"/calls/{doc_id}/recording", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == body[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(body)}"

    tail = api.get(f"/calls/{doc_id}/recording", headers={"Range": "bytes=50000-"})
    assert tail.status_code == 206 and tail.content == body[50000:]
    assert tail.headers["Content-Range"] == f"bytes 50000-{len(body) - 1}/{len(body)}"
    last = api.get(f"/calls/{doc_id}/recording", headers={"Range": "bytes=-500"})
    assert last.status_code == 206 and last.content == body[-500:]

    refused = api.get(f"/calls/{doc_id}/recording", headers={"Range": f"bytes={len(body)}-"})
    assert refused.status_code == 416
    assert refused.headers["Content-Range"] == f"bytes */{len(body)}"
    assert refused.json()["error"]["code"] == "range_not_satisfiable"
    # ... and the API's description says so
    spec = api.get("/openapi.json").json()
    answers = spec["paths"]["/api/v1/calls/{call_id}/recording"]["get"]["responses"]
    assert {"200", "206", "416"} <= set(answers) and "Content-Range" in answers["416"]["headers"]

    # the same visibility as the call itself
    assert owner.get(f"/calls/{doc_id}/recording", headers={"Range": "bytes=0-9"}).content == body[:10]
    assert outsider.get(f"/calls/{doc_id}").status_code == 404
    assert outsider.get(f"/calls/{doc_id}/recording").status_code in (403, 404)

    # stored, not proxied: the provider's copy is gone, the platform's stays
    recording_server.shutdown()
    recording_server.server_close()
    again = api.get(f"/calls/{doc_id}/recording", headers={"Range": "bytes=1000-1999"})
    assert again.status_code == 206 and again.content == body[1000:2000]
    assert len(recording_server.hits) == 1


def test_a_recording_that_cannot_be_fetched_is_retried_then_not_served(stack, api, key_headers):
    call_id = f"rec-{uuid.uuid4().hex[:12]}"
    answer = api.post("/telephony/events", headers=key_headers, json={
        "provider": "pbx-rec", "call_id": call_id, "event_id": f"{call_id}-1",
        "direction": "inbound", "from": mobile(), "to": "+390212345678", "state": "ended",
        "outcome": "no_answer", "recording_url": "http://127.0.0.1:9/nothing.wav"})
    assert answer.status_code == 200, answer.text
    doc_id = answer.json()["call"]["id"]
    record = wait(lambda: stack.db("telephony").calls.find_one(
        {"_id": doc_id, "recording_attempts": {"$gte": 1}, "recording_error": {"$ne": None}}),
        timeout=20)
    assert record and record["recording_state"] == "pending"  # retried later, with backoff
    assert record["recording_due"] > record["updated_at"]
    assert api.get(f"/calls/{doc_id}/recording").status_code == 404


def test_a_recording_on_a_forbidden_network_is_refused(stack, api, key_headers):
    """Whoever may post call events cannot make the platform read its own network."""
    call_id = f"rec-{uuid.uuid4().hex[:12]}"
    answer = api.post("/telephony/events", headers=key_headers, json={
        "provider": "pbx-rec", "call_id": call_id, "event_id": f"{call_id}-1",
        "direction": "inbound", "from": mobile(), "to": "+390212345678", "state": "ended",
        "outcome": "no_answer", "recording_url": "http://169.254.169.254/latest/meta-data"})
    assert answer.status_code == 200, answer.text
    doc_id = answer.json()["call"]["id"]
    assert wait(lambda: api.get(f"/calls/{doc_id}").json()["recording_state"] == "failed",
                timeout=20)
    assert "forbidden" in stack.db("telephony").calls.find_one({"_id": doc_id})["recording_error"]
    assert api.get(f"/calls/{doc_id}/recording").status_code == 404


ZADARMA_KEY = "zadarma-user-key"


@pytest.fixture
def zadarma_api():
    """Zadarma's API as its docs describe it: GET /v1/pbx/record/request/?call_id= with
    `Authorization: <key>:<base64(hex HMAC-SHA1(method + sorted query + md5(query)))>`,
    answering {"status": "success", "link", "lifetime_till"}; the link serves the file."""
    body = make_wav(2.0)
    seen = {"requests": [], "refused": 0, "downloads": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path.startswith("/download/"):
                seen["downloads"] += 1
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            query = urlencode(sorted(parse_qsl(parts.query)))
            data = parts.path + query + hashlib.md5(query.encode()).hexdigest()
            sign = base64.b64encode(hmac.new(ZADARMA_SECRET.encode(), data.encode(),
                                             hashlib.sha1).hexdigest().encode()).decode()
            if (parts.path != "/v1/pbx/record/request/"
                    or self.headers.get("Authorization") != f"{ZADARMA_KEY}:{sign}"):
                seen["refused"] += 1
                answer, status = {"status": "error", "message": "Not authorized"}, 401
            else:
                seen["requests"].append(dict(parse_qsl(parts.query)))
                port = self.server.server_address[1]
                answer, status = {"status": "success", "lifetime_till": "2026-12-31 00:00:00",
                                  "link": f"http://127.0.0.1:{port}/download/rec.mp3"}, 200
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.body, server.seen = body, seen
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_a_zadarma_recording_is_fetched_through_zadarmas_api(stack, api, zadarma_api):
    changed = api.patch("/settings/telephony", json={"zadarma_api_key": ZADARMA_KEY,
                                                     "zadarma_api_url": zadarma_api.url})
    assert changed.status_code == 200, changed.text
    try:
        unique = uuid.uuid4().hex[:10]
        caller = mobile()[1:]
        start = {"event": "NOTIFY_START", "call_start": "2026-11-20 10:00:00",
                 "pbx_call_id": f"in_{unique}", "caller_id": caller, "called_did": "390212345678"}
        end = {**start, "event": "NOTIFY_END", "duration": "12", "disposition": "answered",
               "status_code": "16", "is_recorded": "1", "call_id_with_rec": f"1700000000.{unique}"}
        for form in (start, end):
            answer = api.post("/telephony/zadarma", data=form,
                              headers={"Signature": zadarma_sign(form)})
            assert answer.status_code == 200, answer.text
        doc = wait(lambda: stack.db("telephony").calls.find_one(
            {"provider": "zadarma", "call_id": f"in_{unique}", "recording_state": "stored"}),
            timeout=30)
        assert doc, stack.db("telephony").calls.find_one({"call_id": f"in_{unique}"})
        assert zadarma_api.seen["requests"] == [{"call_id": f"1700000000.{unique}"}]
        assert zadarma_api.seen["refused"] == 0 and zadarma_api.seen["downloads"] == 1
        part = api.get(f"/calls/{doc['_id']}/recording", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == zadarma_api.body[100:200]
        assert part.headers["Content-Type"] == "audio/mpeg"
    finally:
        api.patch("/settings/telephony", json={"zadarma_api_key": None, "zadarma_api_url": None})
