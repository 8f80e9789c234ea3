"""Inbound call events: the canonical JSON format, and the providers' own formats.

Provider webhooks are public (a PBX has no API key) and prove themselves with their
signature, checked here where the raw URL and form are at hand; an unsigned or wrongly
signed request is 403 and reaches no service."""
import threading
import time

from flask import Response, abort, request

from crm_common.errors import Forbidden
from gateway.api import UnsupportedMediaType
from gateway.calls import call
from gateway.openapi import FORM_BODY
from gateway.routes import api
from contracts import telephony as s
from contracts.telephony_webhooks import (TWILIO_SETTINGS_HEADER, TWILIO_SIGNATURE_HEADER,
                                          ZADARMA_HANDLED, valid_twilio_signature,
                                          valid_zadarma_signature)

TAG = "telephony"
# the webhook secrets in force (environment, or what an admin set: /settings/telephony),
# asked of the telephony service and kept this long by each gateway process
SECRETS_CACHE_S = 2.0
_secrets = {"at": None, "value": None}
_secrets_lock = threading.Lock()
WRITE = ("telephony:write",)
WEBHOOK_ERRORS = (403, 413, 415, 422, 429, 503, 504)
# provider webhooks are public: limited per client IP and overall (security.check_public_rate)
PUBLIC_RATES = "provider_webhooks"


def _form():
    if request.mimetype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Send the body form-encoded",
                                   {"content_type": request.content_type})
    return request.form


def webhook_secrets():
    cached = _secrets["value"]
    if cached is not None and time.monotonic() - _secrets["at"] < SECRETS_CACHE_S:
        return cached
    value = call("telephony", "webhook_secrets")
    with _secrets_lock:
        _secrets.update(at=time.monotonic(), value=value)
    return value


def _provider_answer(result):
    answer = result.get("answer") or {}
    return {"ok": True, "ignored": answer.get("call") is None, "call": answer.get("call"),
            "contact": answer.get("contact"), "route_to": answer.get("route_to")}


@api.route("/telephony/events", "POST",
           "A call event in the canonical format; a ringing answer names the contact and the "
           "owner's extension to route to", TAG, body=s.CanonicalEvent, response=s.IngestAnswer,
           scopes=WRITE, errors=(400, 401, 403, 413, 415, 422, 503, 504), audit=False,
           permission="telephony:ingest")
def canonical_event(body, params):
    return call("telephony", "ingest", body)


@api.route("/telephony/twilio", "POST",
           "Twilio voice status callback or <Dial> action (form-encoded, X-Twilio-Signature: "
           "the auth token and HMAC-SHA1, or a SharedKey and the algorithm "
           "X-Twilio-Webhooks-Signature-Settings names); a <Dial> action is answered with "
           "an empty TwiML <Response/>", TAG,
           response=s.ProviderAnswer, public=True, rate_group=PUBLIC_RATES,
           errors=WEBHOOK_ERRORS, audit=False, extra={"request_body": FORM_BODY}, permission="public")
def twilio_callback(body, params):
    form = _form()
    secrets = webhook_secrets()
    base = secrets["public_base_url"]
    url = base + request.full_path.rstrip("?") if base else request.url
    if not valid_twilio_signature(url, list(form.items(multi=True)), secrets["twilio_auth_token"],
                                  request.headers.get(TWILIO_SIGNATURE_HEADER),
                                  request.headers.get(TWILIO_SETTINGS_HEADER),
                                  secrets["twilio_shared_key_secret"]):
        raise Forbidden("Invalid Twilio signature", {})
    result = call("telephony", "ingest_provider", "twilio", form.to_dict())
    if form.get("DialCallStatus"):
        # the <Dial> action URL: Twilio runs the TwiML answered; an empty one ends the call
        abort(Response('<?xml version="1.0" encoding="UTF-8"?><Response/>',
                       mimetype="text/xml"))
    return _provider_answer(result)


@api.route("/telephony/zadarma", "GET", "Zadarma's URL check: answers the zd_echo value as text",
           TAG, query=s.ZadarmaEcho, public=True, rate_group=PUBLIC_RATES, errors=(422, 429), permission="public")
def zadarma_echo(body, params):
    # the echo must be the bare value, not JSON: hand Flask a finished response
    abort(Response(params["zd_echo"], mimetype="text/plain"))


@api.route("/telephony/zadarma", "POST",
           "Zadarma PBX webhook NOTIFY_* (form-encoded, Signature); NOTIFY_START is answered "
           'with {"redirect": <owner extension>, "caller_name"} when the caller is known',
           TAG, public=True, rate_group=PUBLIC_RATES, errors=WEBHOOK_ERRORS, audit=False,
           extra={"request_body": FORM_BODY}, permission="public")
def zadarma_webhook(body, params):
    form = _form().to_dict()
    if not valid_zadarma_signature(form, webhook_secrets()["zadarma_api_secret"],
                                   request.headers.get("Signature")):
        raise Forbidden("Invalid Zadarma signature", {})
    if form.get("event") not in ZADARMA_HANDLED:  # e.g. NOTIFY_IVR: nothing for the call log
        return {"ok": True, "ignored": True, "call": None, "contact": None, "route_to": None}
    result = call("telephony", "ingest_provider", "zadarma", form)
    if form.get("event") == "NOTIFY_START":
        return result.get("reply") or {}
    return _provider_answer(result)


@api.route("/telephony/asterisk", "POST",
           "One Asterisk AMI event forwarded as JSON by a connector (Newchannel, DialBegin, "
           "DialEnd, BridgeEnter, Hangup, Cdr; others are ignored)", TAG, body=s.AmiEvent,
           response=s.ProviderAnswer, scopes=WRITE, errors=(400, 401, 403, 413, 415, 422, 503, 504),
           audit=False, permission="telephony:ingest")
def asterisk_event(body, params):
    return _provider_answer(call("telephony", "ingest_provider", "asterisk", body))


@api.route("/telephony/connector-settings", "GET",
           "For the AMI connector: the AMI login and originate secret stored through the "
           "settings API (absent: the connector's environment value)", TAG,
           response=s.ConnectorSettingsOut, scopes=("telephony-connector:read",),
           errors=(401, 403, 503, 504), permission="telephony:connector")
def connector_settings(body, params):
    return call("telephony", "connector_settings")
