"""The call log, click-to-call and recordings."""
import base64

from flask import Response, json, request, stream_with_context

from contracts import telephony as s
from gateway.calls import call
from gateway.lists import from_index
from gateway.routes import api

TAG = "calls"
RECORDING_CHUNK = 1024 * 1024  # bytes per RPC (the telephony service caps it the same)
_AUDIO = {"schema": {"type": "string", "format": "binary"}}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_RANGE = {"Content-Range": {"description": "bytes <first>-<last>/<size>", "schema": {
    "type": "string"}}}
RECORDING_OPENAPI = {
    "parameters": [{"in": "header", "name": "Range", "required": False, "description": (
        "one byte range, `bytes=<first>-[<last>]` or `bytes=-<suffix length>`; any other form "
        "answers the whole recording"), "schema": {"type": "string", "maxLength": 200}}],
    "responses": {
        200: {"description": "The whole recording", "headers": {
            "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}}},
              "content": {"audio/*": _AUDIO, "application/octet-stream": _AUDIO}},
        206: {"description": "The requested range", "headers": _RANGE,
              "content": {"audio/*": _AUDIO, "application/octet-stream": _AUDIO}},
        416: {"description": "Range not satisfiable (it starts past the end); Content-Range "
                             "says the size", "headers": {"Content-Range": {
                  "description": "bytes */<size>", "schema": {"type": "string"}}},
              "content": _ERROR}}}


@api.route("/calls", "GET", "The call log (keyset pages; filters contact, agent, direction, "
           "outcome, missed, called_back, phone, from/to = started between)", TAG,
           query=s.CallListQuery, response=s.CallPage, permission="calls:read")
def list_calls(body, params):
    return from_index("call", "telephony", "list_calls", params)


@api.route("/calls", "POST", "Click-to-call: ring the agent's phone, then dial `to`, through "
           "the configured PBX adapter (Asterisk AMI or an HTTP callback URL). 503 with the "
           "reason (nothing recorded) when no PBX is configured or it refused the request; "
           "409 for a do_not_contact contact unless `override_reason` is sent", TAG,
           body=s.ClickToCallIn, response=s.CallOut, status=201,
           errors=(400, 409, 413, 415, 422, 503, 504), permission="calls:originate")
def click_to_call(body, params):
    return call("telephony", "click_to_call", body)


@api.route("/calls/{call_id}", "GET", "One call with its legs", TAG, response=s.CallOut,
           permission="calls:read")
def get_call(call_id, body, params):
    return call("telephony", "get_call", call_id)


@api.route("/calls/{call_id}/recording", "GET", "The call's recording as the platform stored "
           "it (fetched from the provider once announced; kept for the retention period), to "
           "whoever may see the call. HTTP Range requests (one range) answer 206 with "
           "Content-Range, an unsatisfiable range 416; 404 when no recording is stored", TAG,
           errors=(404, 503, 504), extra=RECORDING_OPENAPI, permission="calls:read")
def get_recording(call_id, body, params):
    found = call("telephony", "recording_info", call_id)  # 404 unless visible and stored
    size, content_type = found["size"], found["content_type"]
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=0"}
    header = request.headers.get("Range")
    span = _range(header, size) if header else (0, size - 1)
    if span is None:
        body = {"error": {"code": "range_not_satisfiable", "message": "Range not satisfiable",
                          "details": {"size": size, "range": header[:200]}}}
        return Response(json.dumps(body), status=416, content_type="application/json",
                        headers={**headers, "Content-Range": f"bytes */{size}"})
    if span == "ignore":  # not a byte range we answer: the whole recording
        span, header = (0, size - 1), None
    start, end = span
    if header:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    return Response(stream_with_context(_chunks(call_id, start, end)), status=206 if header else 200,
                    headers=headers, content_type=content_type)


def _range(header, size):
    """(first, last) byte of a single `bytes=` range; None: unsatisfiable (416); "ignore":
    a form not answered with a part (several ranges, other units), so the whole body."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return "ignore"
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or \
            (first and not first.isdigit()) or (last and not last.isdigit()):
        return "ignore"
    if not first:  # the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else None
    start = int(first)
    if start >= size:
        return None
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if end >= start else "ignore"


def _chunks(call_id, start, end):
    position = start
    while position <= end:
        part = call("telephony", "recording_range", call_id, position,
                    min(RECORDING_CHUNK, end - position + 1))
        data = base64.b64decode(part["data"])
        if not data:
            return
        yield data
        position += len(data)
