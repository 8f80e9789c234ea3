"""Inbound requests (docs/leads.md): web forms posted from any website, messages from
messenger integrations, Telegram bot webhooks; and the routes (forms) that say where they go.

Web form posts and Telegram updates are public: a form proves itself by its key (and the
browser's Origin against the form's allowed origins), Telegram by the secret token given to
setWebhook. Both are rate limited per client IP and overall before their body is read
(gateway/app.py, security.check_public_rate), then per form before any service is asked."""
import json
import threading
import time

from flask import Response, redirect, request

from crm_common.config import get_settings
from crm_common.errors import CrmError
from gateway import auth, security
from gateway.api import UnsupportedMediaType, json_response, read_json
from gateway.calls import call
from gateway.openapi import FIELDS, FORM_BODY, JSON_OBJECT
from gateway.routes import api
from contracts import contacts as s

TAG_FORMS, TAG_INBOUND = "forms", "inbound"
SETTINGS = get_settings().gateway
FORM_RATE_PER_FORM = SETTINGS.form_rate_per_form
PUBLIC_ERRORS = (403, 404, 413, 415, 422, 429, 503, 504)
FORM_CORS_HEADERS = "Content-Type, X-Request-Id"


FORM_INFO_TTL_S = 30
_form_info_cache, _form_info_lock = {}, threading.Lock()


def form_info(key):
    """A form's allowed origins and rate limit, kept 30 s per process so a post costs one
    RPC; an unknown key is asked again every time (a new form works at once)."""
    now = time.monotonic()
    with _form_info_lock:
        cached = _form_info_cache.get(key)
    if cached and cached[0] > now:
        return cached[1]
    info = call("contacts", "public_form", key)
    with _form_info_lock:
        if len(_form_info_cache) > 10000:
            _form_info_cache.clear()
        _form_info_cache[key] = (now + FORM_INFO_TTL_S, info)
    return info


def client_ip():
    return security.client_ip(SETTINGS.trusted_proxy_hops)


def _meta():
    return {"ip": client_ip(), "user_agent": (request.headers.get("User-Agent") or "")[:500],
            "origin": request.headers.get("Origin"),
            "referrer": (request.headers.get("Referer") or "")[:1000] or None}


def _limit(*subjects_and_limits):
    store = auth.current().store
    for subject, limit in subjects_and_limits:
        security.check_rate(store, subject, limit)


def _posted_fields():
    """A form post as {name: value or [values]}: JSON object, form-encoded or multipart."""
    if request.mimetype == "application/json":
        body = read_json()
        return {str(k): v if isinstance(v, (str, int, float, bool, list)) or v is None else json.dumps(v)
                for k, v in body.items()}
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {k: (v[0] if len(v) == 1 else v) for k, v in request.form.lists()}
    raise UnsupportedMediaType("Send the form as application/json, "
                               "application/x-www-form-urlencoded or multipart/form-data",
                               {"content_type": request.content_type})


def _allow_origin(response, origin):
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"
    return response


def form_preflight(key):
    """The browser asks before a cross-origin JSON post: allowed only for the form's origins."""
    origin = (request.headers.get("Origin") or "").rstrip("/")
    allowed = form_info(key)["allowed_origins"]
    response = Response(status=204)
    response.headers["Vary"] = "Origin"
    if origin and origin in allowed:
        _allow_origin(response, origin)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = FORM_CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return response


@api.route("/forms/{key}/submissions", "POST",
           "A website's form post (JSON, form-encoded or multipart; no sign-in): stored as "
           "received, then matched or created as a lead; UTM fields and the referrer are kept. "
           "A form-encoded post to a form with redirect_url is answered 303 to it", TAG_FORMS,
           response=s.SubmissionAnswer, status=202, public=True, rate_group="forms",
           max_body_bytes=SETTINGS.form_max_bytes, errors=PUBLIC_ERRORS, audit=False,
           extra={"preflight": form_preflight, "request_body": {
               "application/json": {"schema": FIELDS}, **FORM_BODY,
               "multipart/form-data": {"schema": FIELDS}}}, permission="public")
def submit_form(key, body, params):
    fields = _posted_fields()
    info = form_info(key)
    _limit((f"form:{key}", info.get("rate_limit_per_minute") or FORM_RATE_PER_FORM))
    origin = (request.headers.get("Origin") or "").rstrip("/") or None
    try:
        answer = call("contacts", "receive_form", key, fields, _meta())
    except CrmError as error:
        # past the origin check (a 422): the page's script may read why
        response = json_response({"error": error.to_dict()}, error.status)
        return _allow_origin(response, origin) if error.status == 422 else response
    target = answer.pop("redirect_url", None)
    if target and request.mimetype != "application/json":
        return redirect(target, code=303)
    return _allow_origin(json_response(answer, 202), origin)


@api.route("/inbound/messages", "POST",
           "A message from a messenger or another system (API key with inbound:write, or an "
           "admin): stored, then matched or created as a lead; a repeated external_id is "
           "stored once", TAG_INBOUND, body=s.InboundMessageIn, response=s.SubmissionAnswer,
           status=202, scopes=("inbound:write",), audit=False,
           errors=(400, 401, 403, 404, 413, 415, 422, 503, 504), permission="inbound:ingest")
def inbound_message(body, params):
    _limit((f"inbound-ip:{client_ip()}", FORM_RATE_PER_FORM))
    return call("contacts", "receive_message", body, _meta())


@api.route("/inbound/telegram/{key}", "POST",
           "Telegram Bot API webhook: an Update object as Telegram sends it, proved by the "
           "X-Telegram-Bot-Api-Secret-Token given to setWebhook", TAG_INBOUND,
           response=s.SubmissionAnswer, public=True, rate_group="telegram",
           max_body_bytes=SETTINGS.form_max_bytes, errors=PUBLIC_ERRORS, audit=False,
           extra={"request_body": JSON_OBJECT}, permission="public")
def telegram_update(key, body, params):
    update = read_json()  # 415 unless JSON, 400 malformed, 422 unless an object
    _limit((f"form:{key}", FORM_RATE_PER_FORM))
    meta = {**_meta(), "secret_token": request.headers.get("X-Telegram-Bot-Api-Secret-Token")}
    return call("contacts", "receive_telegram", key, update, meta)


@api.route("/inbound/requests", "GET", "Every inbound request as received, newest first, "
           "with what became of it", TAG_INBOUND, query=s.InboundRequestListQuery,
           response=s.InboundRequestPage, permission="inbound:read")
def list_requests(body, params):
    return call("contacts", "list_inbound_requests", params)


@api.route("/inbound/requests/{request_id}", "GET", "One inbound request with its raw payload",
           TAG_INBOUND, response=s.InboundRequestOut, permission="inbound:read")
def get_request(request_id, body, params):
    return call("contacts", "get_inbound_request", request_id)


@api.route("/forms", "GET", "Web forms and channel routes", TAG_FORMS,
           query=s.LeadFormListQuery, response=s.LeadFormPage, permission="forms:read")
def list_forms(body, params):
    return call("contacts", "list_forms", params)


@api.route("/forms", "POST", "Create a web form or channel route; its public key is in the "
           "answer", TAG_FORMS, body=s.LeadFormIn, response=s.LeadFormOut, status=201,
           errors=(400, 403, 413, 415, 422, 503, 504),
           permission="forms:write")
def create_form(body, params):
    return call("contacts", "create_form", body)


@api.route("/forms/{form_id}", "GET", "A form or channel route", TAG_FORMS,
           response=s.LeadFormOut, permission="forms:read")
def get_form(form_id, body, params):
    return call("contacts", "get_form", form_id)


@api.route("/forms/{form_id}", "PATCH", "Change some settings of a form", TAG_FORMS,
           body=s.LeadFormIn, partial=True, response=s.LeadFormOut,
           errors=(400, 403, 404, 413, 415, 422, 503, 504), permission="forms:write")
def update_form(form_id, body, params):
    return call("contacts", "update_form", form_id, body)


@api.route("/forms/{form_id}", "DELETE", "Delete a form (its key stops working)", TAG_FORMS,
           response=s.LeadFormOut, permission="forms:write")
def delete_form(form_id, body, params):
    return call("contacts", "delete_form", form_id)
