"""Conversations with clients (e-mail, Telegram, WhatsApp, SMS): mailboxes and channels,
the inbox, messages and replies, and WhatsApp's webhook (Meta signs it with
X-Hub-Signature-256 = HMAC-SHA256 of the raw body with the app secret)."""
import base64
import hashlib
import hmac
import threading
import time

from flask import Response, abort, request

from contracts import conversations as s
from contracts.telephony_webhooks import TWILIO_SIGNATURE_HEADER, valid_twilio_signature
from crm_common.errors import Forbidden
from crm_common.fields import PageQuery
from gateway.api import UnsupportedMediaType, read_json
from gateway.calls import call
from gateway.downloads import content_disposition, servable_type
from gateway.openapi import FORM_BODY, JSON_OBJECT
from gateway.routes import api
from gateway.routes.templates import sender

TAG, TAG_SETUP = "conversations", "mailboxes"
WRITE_ERRORS = (400, 403, 404, 409, 413, 415, 422, 503, 504)
SECRETS_CACHE_S = 2.0
_secrets = {"at": None, "value": None}
_secrets_lock = threading.Lock()


# --- mailboxes and channels ---------------------------------------------------------------

@api.route("/mailboxes", "GET", "Connected mailboxes with their sync state (passwords are "
           "never returned)", TAG_SETUP, query=PageQuery,
           response=s.MailboxPage, permission="mailboxes:manage")
def list_mailboxes(body, params):
    return call("conversations", "list_mailboxes", params)


@api.route("/mailboxes", "POST", "Connect a mailbox: IMAP (TLS, STARTTLS or plain; IDLE where "
           "offered) for reading, SMTP for sending; passwords are stored encrypted and never "
           "returned. A shared mailbox (sales@) turns unknown senders into leads, once",
           TAG_SETUP, body=s.MailboxIn, response=s.MailboxOut, status=201,
           errors=WRITE_ERRORS, permission="mailboxes:manage")
def create_mailbox(body, params):
    return call("conversations", "create_mailbox", body)


@api.route("/mailboxes/{mailbox_id}", "GET", "A mailbox and its sync state (last error, "
           "failures, next attempt)", TAG_SETUP, response=s.MailboxOut,
           permission="mailboxes:manage")
def get_mailbox(mailbox_id, body, params):
    return call("conversations", "get_mailbox", mailbox_id)


@api.route("/mailboxes/{mailbox_id}", "PATCH", "Change a mailbox (it is checked again at once)",
           TAG_SETUP, body=s.MailboxIn, partial=True, response=s.MailboxOut,
           errors=WRITE_ERRORS, permission="mailboxes:manage")
def update_mailbox(mailbox_id, body, params):
    return call("conversations", "update_mailbox", mailbox_id, body)


@api.route("/mailboxes/{mailbox_id}", "DELETE", "Disconnect a mailbox (its messages stay)",
           TAG_SETUP, errors=(404, 503, 504), permission="mailboxes:manage")
def delete_mailbox(mailbox_id, body, params):
    return call("conversations", "delete_mailbox", mailbox_id)


@api.route("/mailboxes/{mailbox_id}/sync", "POST", "Check the mailbox now", TAG_SETUP,
           response=s.MailboxOut, errors=(404, 503, 504), permission="mailboxes:manage")
def sync_mailbox(mailbox_id, body, params):
    return call("conversations", "sync_mailbox", mailbox_id)


@api.route("/channels", "GET", "Telegram bots, WhatsApp numbers and SMS gateways (secrets "
           "never returned)", TAG_SETUP, query=PageQuery,
           response=s.ChannelPage, permission="channels:manage")
def list_channels(body, params):
    return call("conversations", "list_channels", params)


@api.route("/channels", "POST", "Set up a Telegram bot, a WhatsApp Cloud API number or an "
           "SMS gateway", TAG_SETUP, body=s.ChannelIn, response=s.ChannelOut, status=201,
           errors=WRITE_ERRORS, permission="channels:manage")
def create_channel(body, params):
    return call("conversations", "create_channel", body)


@api.route("/channels/{channel_id}", "GET", "A channel", TAG_SETUP, response=s.ChannelOut,
           permission="channels:manage")
def get_channel(channel_id, body, params):
    return call("conversations", "get_channel", channel_id)


@api.route("/channels/{channel_id}", "PATCH", "Change a channel", TAG_SETUP, body=s.ChannelIn,
           partial=True, response=s.ChannelOut, errors=WRITE_ERRORS,
           permission="channels:manage")
def update_channel(channel_id, body, params):
    return call("conversations", "update_channel", channel_id, body)


@api.route("/channels/{channel_id}", "DELETE", "Remove a channel", TAG_SETUP,
           errors=(404, 503, 504), permission="channels:manage")
def delete_channel(channel_id, body, params):
    return call("conversations", "delete_channel", channel_id)


# --- the inbox ----------------------------------------------------------------------------

@api.route("/conversations", "GET", "The inbox: one conversation per client across channels, "
           "latest first (filters: status, assignee_id = id | me | none, contact_id, channel, "
           "waiting=true with the time waiting)", TAG, query=s.ConversationListQuery,
           response=s.ConversationPage, permission="conversations:read")
def list_conversations(body, params):
    return call("conversations", "list_conversations", params)


@api.route("/conversations/{conversation_id}", "GET", "A conversation", TAG,
           response=s.ConversationOut, permission="conversations:read")
def get_conversation(conversation_id, body, params):
    return call("conversations", "get_conversation", conversation_id)


@api.route("/conversations/{conversation_id}/messages", "GET", "Its messages in time order "
           "(HTML sanitised, attachments listed)", TAG, query=s.MessageListQuery,
           response=s.MessagePage, permission="conversations:read")
def list_messages(conversation_id, body, params):
    return call("conversations", "list_messages", conversation_id, params)


@api.route("/conversations/{conversation_id}/messages", "POST", "Answer the client: stored "
           "as queued at once, then sent exactly once (e-mail threads under the client's "
           "last message, a copy goes to the mailbox's Sent folder). 409 with the reason: "
           "do_not_contact, opted_out, whatsapp_window_closed (only a template), no_mailbox, "
           "no_channel, no_address. `template_id`: a message template filled for the "
           "client (what the body gives itself wins)", TAG, body=s.SendIn, response=s.MessageOut, status=202,
           errors=WRITE_ERRORS, permission="conversations:write")
def reply(conversation_id, body, params):
    return call("conversations", "reply", conversation_id, body, _sender_for(body))


@api.route("/contacts/{contact_id}/messages", "POST", "Write to a contact (their conversation "
           "is made on first use); same rules as a reply", TAG, body=s.SendIn,
           response=s.MessageOut, status=202, errors=WRITE_ERRORS,
           permission="conversations:write")
def start_conversation(contact_id, body, params):
    return call("conversations", "start_conversation", contact_id, body, _sender_for(body))


def _sender_for(body):
    """A send from a template fills `{{ user.<field> }}` with the caller's profile."""
    return sender() if (body or {}).get("template_id") else None


@api.route("/conversations/{conversation_id}/assign", "POST", "Give the conversation to "
           "someone (null: unassigned)", TAG, body=s.AssignIn, response=s.ConversationOut,
           errors=WRITE_ERRORS, permission="conversations:write")
def assign(conversation_id, body, params):
    return call("conversations", "assign", conversation_id, body)


@api.route("/conversations/{conversation_id}/close", "POST", "Close it (the client's next "
           "message reopens it)", TAG, response=s.ConversationOut, errors=(404, 503, 504),
           permission="conversations:write")
def close(conversation_id, body, params):
    return call("conversations", "close", conversation_id)


@api.route("/conversations/{conversation_id}/reopen", "POST", "Reopen it", TAG,
           response=s.ConversationOut, errors=(404, 503, 504), permission="conversations:write")
def reopen(conversation_id, body, params):
    return call("conversations", "reopen", conversation_id)


@api.route("/conversations/{conversation_id}/attachments/{attachment_id}", "GET",
           "An attachment's content", TAG, errors=(404, 503, 504),
           permission="conversations:read")
def attachment(conversation_id, attachment_id, body, params):
    found = call("conversations", "get_attachment", conversation_id, attachment_id)
    # the name is the sender's: any character (a line break, a control) may be in it
    return Response(base64.b64decode(found["content_base64"]),
                    content_type=servable_type(found.get("content_type")),
                    headers={"Content-Disposition": content_disposition(
                                 found.get("filename") or "attachment"),
                             "X-Content-Type-Options": "nosniff"})


# --- WhatsApp Cloud API webhook -----------------------------------------------------------

def _channel_secrets(kind):
    cached = _secrets["value"]
    if cached is None or time.monotonic() - _secrets["at"] >= SECRETS_CACHE_S:
        cached = call("conversations", "webhook_secrets")
        with _secrets_lock:
            _secrets.update(at=time.monotonic(), value=cached)
    return [c for c in cached if c.get("kind", "whatsapp") == kind]


def _whatsapp_secrets():
    return _channel_secrets("whatsapp")


@api.route("/inbound/whatsapp", "GET", "Meta's webhook verification: answers hub.challenge "
           "when hub.verify_token is a WhatsApp channel's verify token (403 otherwise)", TAG,
           query=s.WhatsAppVerifyQuery, public=True, rate_group="provider_webhooks",
           errors=(403, 422, 429), permission="public")
def whatsapp_verify(body, params):
    token = params.get("hub.verify_token") or ""
    known = [c.get("verify_token") for c in _whatsapp_secrets() if c.get("verify_token")]
    if params.get("hub.mode") != "subscribe" or not any(
            hmac.compare_digest(token.encode(), k.encode()) for k in known):
        raise Forbidden("Unknown verify token", {})
    abort(Response(params.get("hub.challenge") or "", mimetype="text/plain"))


@api.route("/inbound/whatsapp", "POST", "WhatsApp Cloud API webhook (messages): accepted when "
           "X-Hub-Signature-256 is the HMAC-SHA256 of the body with a channel's app secret",
           TAG, response=s.WebhookAck, public=True, rate_group="provider_webhooks",
           errors=(403, 413, 415, 422, 429, 503, 504), audit=False,
           extra={"request_body": JSON_OBJECT}, permission="public")
def whatsapp_webhook(body, params):
    raw = request.get_data(cache=True)
    header = request.headers.get("X-Hub-Signature-256") or ""
    secrets = [c["app_secret"] for c in _whatsapp_secrets() if c.get("app_secret")]
    if not header.startswith("sha256=") or not any(
            hmac.compare_digest(header[7:], hmac.new(k.encode(), raw, hashlib.sha256).hexdigest())
            for k in secrets):
        raise Forbidden("Invalid X-Hub-Signature-256", {})
    payload = read_json()
    return call("conversations", "receive_whatsapp", payload, {"ip": request.remote_addr})


# --- SMS: Twilio's incoming-message webhook --------------------------------------------------

@api.route("/inbound/sms/twilio", "POST", "Twilio's incoming SMS/MMS webhook (form-encoded): "
           "accepted when X-Twilio-Signature is the HMAC-SHA1 of the URL and the sorted "
           "fields with an SMS channel's auth token (its app_secret); answered with an empty "
           "TwiML <Response/>", TAG, public=True, rate_group="provider_webhooks",
           errors=(403, 415, 422, 429, 503, 504), audit=False,
           extra={"request_body": FORM_BODY}, permission="public")
def twilio_sms(body, params):
    if request.mimetype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Send the body form-encoded",
                                   {"content_type": request.content_type})
    form = request.form
    pairs = list(form.items(multi=True))
    header = request.headers.get(TWILIO_SIGNATURE_HEADER)
    # the URL Twilio called, as the proxy in front handed it on (X-Forwarded-*)
    if not any(valid_twilio_signature(request.url, pairs, c["app_secret"], header)
               for c in _channel_secrets("sms") if c.get("app_secret")):
        raise Forbidden("Invalid X-Twilio-Signature", {})
    call("conversations", "receive_sms", form.to_dict(), {"ip": request.remote_addr})
    abort(Response('<?xml version="1.0" encoding="UTF-8"?><Response/>', mimetype="text/xml"))
