"""Conversations: one per client across channels, its messages in time order, the inbox
(unassigned, mine, waiting, closed), mailboxes and channels, consent on sending, and the
outgoing queue. Writes return (result, events) for the outbox."""
import base64
import hashlib
import logging
import re
from datetime import datetime, timedelta, timezone

import requests
from cryptography.fernet import Fernet, InvalidToken

from contracts import conversations as schemas
from crm_common.config import get_settings
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.ids import new_id
from crm_common.messaging.events import envelope
from crm_common.timeutil import as_utc, to_iso, utcnow
from crm_common.validation import load
from crm_common.workhours import due_in_working_hours
from services.conversations import mail
from services.conversations import media as fetch_media
from services.conversations import templates

log = logging.getLogger(__name__)
SERVICE = "conversations"
WHATSAPP_WINDOW = timedelta(hours=24)
PLACEHOLDER = re.compile(r"\{\{\s*(contact|deal|user|vars)\.([a-zA-Z0-9_]{1,60})\s*\}\}")
SECRET_FIELDS = ("token", "app_secret", "verify_token")
TELEGRAM_API = "https://api.telegram.org"
WHATSAPP_API = "https://graph.facebook.com/v19.0"
WHATSAPP_MEDIA = ("image", "document", "audio", "video", "sticker")


# --- secrets ------------------------------------------------------------------------------

def _fernet():
    """CRM_CONVERSATIONS_SECRET_KEY (a Fernet key), else one derived from the platform's
    shared secret; mailbox and channel secrets are stored only encrypted with it."""
    settings = get_settings()
    key = settings.conversations.secret_key
    if not key:
        digest = hashlib.sha256(b"conversations-secrets:" +
                                (settings.cursor_secret or "dev-only").encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    return Fernet(key.encode())


def seal(value):
    return _fernet().encrypt(value.encode()).decode() if value else None


def unseal(token):
    if not token:
        return None
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise Conflict("A stored secret cannot be read with the current key "
                       "(CRM_CONVERSATIONS_SECRET_KEY changed?): set it again", {})


# --- answers ------------------------------------------------------------------------------

def _server_out(server):
    server = server or {}
    return {"host": server.get("host"), "port": server.get("port"),
            "security": server.get("security"), "username": server.get("username"),
            "verify_tls": server.get("verify_tls", True),
            "password_set": bool(server.get("password"))}


def dump_mailbox(doc):
    return {"id": doc["_id"], "name": doc["name"], "address": doc["address"],
            "display_name": doc.get("display_name") or "", "shared": bool(doc.get("shared")),
            "owner_id": doc.get("owner_id"), "imap": _server_out(doc.get("imap")),
            "smtp": _server_out(doc.get("smtp")), "folder": doc.get("folder", "INBOX"),
            "sent_folder": doc.get("sent_folder", "Sent"),
            "poll_seconds": doc.get("poll_seconds", 60),
            "first_response_minutes": doc.get("first_response_minutes"),
            "working_hours": doc.get("working_hours"), "active": bool(doc.get("active")),
            "state": {"status": doc.get("status", "new"), "last_error": doc.get("last_error"),
                      "last_sync_at": to_iso(doc.get("last_sync_at")),
                      "failures": doc.get("failures", 0),
                      "next_sync_at": to_iso(doc.get("next_sync_at")),
                      "idle": bool(doc.get("idle")), "synced": doc.get("synced", 0)},
            "created_at": to_iso(doc.get("created_at")), "updated_at": to_iso(doc.get("updated_at"))}


def dump_channel(doc):
    return {"id": doc["_id"], "kind": doc["kind"], "name": doc["name"],
            "api_base": doc.get("api_base"), "url": doc.get("url"),
            "phone_number_id": doc.get("phone_number_id"), "from_number": doc.get("from_number"),
            "route_id": doc.get("route_id"),
            "secrets": {k: bool((doc.get("secrets") or {}).get(k)) for k in SECRET_FIELDS},
            "first_response_minutes": doc.get("first_response_minutes"),
            "working_hours": doc.get("working_hours"),
            "active": bool(doc.get("active")), "created_at": to_iso(doc.get("created_at")),
            "updated_at": to_iso(doc.get("updated_at"))}


def dump_conversation(doc, now=None):
    waiting_since = doc.get("waiting_since")
    now = now or utcnow()
    return {"id": doc["_id"], "contact_id": doc.get("contact_id"),
            "contact_name": doc.get("contact_name"), "owner_id": doc.get("owner_id"),
            "assignee_id": doc.get("assignee_id"), "deal_id": doc.get("deal_id"),
            "status": doc.get("status", "open"), "channels": doc.get("channels") or [],
            "subject": doc.get("subject"), "last_message_at": to_iso(doc.get("last_message_at")),
            "last_preview": doc.get("last_preview"), "waiting_since": to_iso(waiting_since),
            "waiting_seconds": (int((now - as_utc(waiting_since)).total_seconds())
                                if waiting_since else None),
            "first_response_due_at": to_iso(doc.get("first_response_due_at")),
            "escalated_at": to_iso(doc.get("escalated_at")), "mailbox_id": doc.get("mailbox_id"),
            "created_at": to_iso(doc.get("created_at")), "updated_at": to_iso(doc.get("updated_at"))}


def dump_message(doc):
    return {"id": doc["_id"], "conversation_id": doc["conversation_id"],
            "channel": doc["channel"], "direction": doc["direction"], "status": doc["status"],
            "thread_id": doc.get("thread_id"), "subject": doc.get("subject"),
            "text": doc.get("text"), "html": doc.get("html"),
            "from": doc.get("from") or {}, "to": doc.get("to") or [], "cc": doc.get("cc") or [],
            "message_id": doc.get("message_id"), "in_reply_to": doc.get("in_reply_to"),
            "attachments": doc.get("attachments") or [], "mailbox_id": doc.get("mailbox_id"),
            "channel_id": doc.get("channel_id"), "external_id": doc.get("external_id"),
            "sender_user_id": doc.get("sender_user_id"), "contact_id": doc.get("contact_id"),
            "deal_id": doc.get("deal_id"), "template": doc.get("template"),
            "template_id": doc.get("template_id"), "error": doc.get("error"), "sent_at": to_iso(doc.get("sent_at")),
            "at": to_iso(doc.get("at")), "created_at": to_iso(doc.get("created_at"))}


def contact_name(contact):
    name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    return name or next((e["email"] for e in contact.get("emails") or []), None) or \
        next((p.get("e164") or p.get("raw") for p in contact.get("phones") or []), None)


def preview(text):
    return re.sub(r"\s+", " ", text or "").strip()[:200] or None


def message_event(event_type, msg, conv, actor_id=None, extra=None):
    who = conv.get("contact_name") or (msg.get("from") or {}).get("address") or "a client"
    verb = {"message_received": f"{msg['channel']} message from {who}",
            "message_sent": f"{msg['channel']} message sent to {who}",
            "message_failed": f"{msg['channel']} message to {who} failed"}[event_type]
    subject = msg.get("subject")
    data = {"message_id": msg["_id"], "conversation_id": conv["_id"],
            "contact_id": conv.get("contact_id"), "deal_id": conv.get("deal_id"),
            "channel": msg["channel"], "direction": msg["direction"], "subject": subject,
            "preview": preview(msg.get("text")), "owner_id": conv.get("owner_id"),
            "assignee_id": conv.get("assignee_id"), "actor_id": actor_id,
            "summary": verb + (f": {subject}" if subject else ""),
            "ref": {"type": "message", "id": msg["_id"]}, **(extra or {})}
    suffix = f":{conv['contact_id']}" if conv.get("contact_id") else ""
    return envelope(SERVICE, event_type, data, event_id=f"{msg['_id']}:{event_type}{suffix}")


def conversation_event(event_type, conv, actor_id, summary, extra=None, event_id=None):
    data = {"conversation_id": conv["_id"], "contact_id": conv.get("contact_id"),
            "assignee_id": conv.get("assignee_id"), "owner_id": conv.get("owner_id"),
            "actor_id": actor_id, "summary": summary,
            "ref": {"type": "conversation", "id": conv["_id"]}, **(extra or {})}
    return envelope(SERVICE, event_type, data, event_id=event_id)


def first_response_due(start, source):
    """`source`'s (a mailbox's or channel's) first-response target counted from `start`,
    in its working hours when it has them; None without a target."""
    minutes = (source or {}).get("first_response_minutes")
    if not minutes:
        return None
    return due_in_working_hours(start, float(minutes), source.get("working_hours"))


def _from_epoch(stamp):
    try:
        return datetime.fromtimestamp(int(stamp), timezone.utc) if stamp else None
    except (TypeError, ValueError, OverflowError):
        return None


def render(text, contact, deal, variables, user=None):
    """{{contact.x}}, {{deal.x}}, {{vars.x}}: plain values only; an unknown one is empty."""
    if not text:
        return text
    sources = {"contact": contact or {}, "deal": deal or {}, "vars": variables or {},
               "user": user or {}}

    def value(m):
        found = sources[m.group(1)].get(m.group(2))
        return "" if isinstance(found, (dict, list)) or found is None else str(found)
    return PLACEHOLDER.sub(value, text)


class Conversations:
    """What every entrypoint uses: the store, the caller, the contacts and deals RPC."""

    def __init__(self, store, caller, contacts=None, deals=None):
        self.store = store
        self.caller = caller
        self.contacts = contacts
        self.deals = deals
        self.settings = get_settings().conversations
        self._http = None  # providers' media downloads
        self._unsaved = set()  # ids of conversations made here and not inserted yet

    # --- mailboxes and channels (admin; a personal mailbox: its owner) ------------------
    def _may_manage(self, doc):
        if self.caller.role in (None, "admin"):
            return
        if doc.get("shared") or doc.get("kind") or doc.get("owner_id") != self.caller.user_id:
            raise NotFound("Unknown mailbox", {"id": doc["_id"]})

    def create_mailbox(self, payload):
        data = load(schemas.MailboxIn(), payload)
        now = utcnow()
        owner = data.get("owner_id") or (None if data["shared"] else self.caller.user_id)
        if data["shared"] and self.caller.role not in (None, "admin"):
            raise Forbidden("Only an admin connects a shared mailbox", {"field": "shared"})
        if owner:
            self.caller.check_assign(owner)
        doc = {"_id": new_id(), "name": data["name"], "address": data["address"].lower(),
               "display_name": data["display_name"], "shared": data["shared"],
               "owner_id": owner, "folder": data["folder"], "sent_folder": data["sent_folder"],
               "poll_seconds": data["poll_seconds"],
               "first_response_minutes": data.get("first_response_minutes"),
               "working_hours": data.get("working_hours"), "active": data["active"], "status": "new", "failures": 0, "synced": 0,
               "next_sync_at": now, "lease_until": None, "holder": None,
               "uidvalidity": None, "last_uid": 0, "created_at": now, "updated_at": now}
        for side in ("imap", "smtp"):
            server = dict(data[side])
            server["password"] = seal(server.pop("password"))
            doc[side] = server
        self.store.insert("mailboxes", doc)
        return dump_mailbox(doc)

    def update_mailbox(self, mailbox_id, payload):
        doc = self._mailbox(mailbox_id)
        data = load(schemas.MailboxIn(), payload, partial=True)
        sets = {k: v for k, v in data.items() if k not in ("imap", "smtp", "address")}
        if "address" in data:
            sets["address"] = data["address"].lower()
        for side in ("imap", "smtp"):
            if side in data:
                server = dict(data[side])
                server["password"] = seal(server.pop("password"))
                sets[side] = server
        # new settings: checked again now, failures forgotten
        sets.update(updated_at=utcnow(), next_sync_at=utcnow(), failures=0)
        return dump_mailbox(self.store.update("mailboxes", doc["_id"], sets))

    def _mailbox(self, mailbox_id):
        doc = self.store.get("mailboxes", mailbox_id)
        if doc is None:
            raise NotFound("Unknown mailbox", {"id": mailbox_id})
        self._may_manage(doc)
        return doc

    def get_mailbox(self, mailbox_id):
        return dump_mailbox(self._mailbox(mailbox_id))

    def delete_mailbox(self, mailbox_id):
        self.store.delete("mailboxes", self._mailbox(mailbox_id)["_id"])
        return {"id": mailbox_id, "deleted": True}

    def sync_now(self, mailbox_id):
        doc = self._mailbox(mailbox_id)
        return dump_mailbox(self.store.update("mailboxes", doc["_id"], {"next_sync_at": utcnow()}))

    def list_mailboxes(self, params):
        query = {} if self.caller.role in (None, "admin") else {"owner_id": self.caller.user_id}
        docs, cursor = self.store.page("mailboxes", query, "created_at", 1,
                                       int(params.get("limit") or 50), params.get("cursor"))
        return {"items": [dump_mailbox(d) for d in docs], "next_cursor": cursor}

    def _admin(self):
        if self.caller.role not in (None, "admin"):
            raise Forbidden("Only an admin manages channels", {})

    def create_channel(self, payload):
        self._admin()
        data = load(schemas.ChannelIn(), payload)
        self._check_route(data.get("kind"), data.get("route_id"))
        now = utcnow()
        doc = {"_id": new_id(), **{k: v for k, v in data.items() if k not in SECRET_FIELDS},
               "secrets": {k: seal(data[k]) for k in SECRET_FIELDS if data.get(k)},
               "created_at": now, "updated_at": now}
        self.store.insert("channels", doc)
        return dump_channel(doc)

    def _channel(self, channel_id):
        doc = self.store.get("channels", channel_id)
        if doc is None:
            raise NotFound("Unknown channel", {"id": channel_id})
        return doc

    def get_channel(self, channel_id):
        self._admin()
        return dump_channel(self._channel(channel_id))

    def update_channel(self, channel_id, payload):
        self._admin()
        doc = self._channel(channel_id)
        data = load(schemas.ChannelIn(), payload, partial=True)
        if data.get("route_id"):
            self._check_route(data.get("kind") or doc["kind"], data["route_id"], doc["_id"])
        sets = {k: v for k, v in data.items() if k not in SECRET_FIELDS}
        for k in SECRET_FIELDS:
            if data.get(k):
                sets[f"secrets.{k}"] = seal(data[k])
        sets["updated_at"] = utcnow()
        return dump_channel(self.store.update("channels", doc["_id"], sets))

    def _check_route(self, kind, route_id, channel_id=None):
        """A Telegram bot's route: a Telegram inbound route of contacts, no other bot's."""
        if not route_id:
            return
        def invalid(message):
            return ValidationFailed("Invalid input", {"fields": {"route_id": [message]}})
        if kind != "telegram":
            raise invalid("Only a Telegram bot has an inbound route.")
        try:
            route = self.contacts.get_form(route_id)
        except NotFound:
            raise invalid("No such inbound route.") from None
        if route.get("channel") != "telegram":
            raise invalid("The route is not a Telegram route.")
        other = self.store.telegram_channel_of_route(route_id)
        if other is not None and other["_id"] != channel_id:
            raise Conflict("The route is another bot's webhook",
                           {"reason": "route_taken", "channel_id": other["_id"]})

    def telegram_channel(self, route_id):
        """The bot whose webhook the update came through (its route); a route no bot
        claims goes to the only Telegram bot there is, if there is one."""
        found = self.store.telegram_channel_of_route(route_id) if route_id else None
        if found is None:
            bots = self.store.channels_of("telegram")
            found = bots[0] if len(bots) == 1 and not bots[0].get("route_id") else None
            if found is None and bots:
                log.warning("telegram route %s is no bot's: set route_id on its channel",
                            route_id)
        return found

    def delete_channel(self, channel_id):
        self._admin()
        self.store.delete("channels", self._channel(channel_id)["_id"])
        return {"id": channel_id, "deleted": True}

    def list_channels(self, params):
        self._admin()
        docs, cursor = self.store.page("channels", {}, "created_at", 1,
                                       int(params.get("limit") or 50), params.get("cursor"))
        return {"items": [dump_channel(d) for d in docs], "next_cursor": cursor}

    def webhook_secrets(self):
        """For the gateway: the WhatsApp channels' app secrets and verify tokens, the SMS
        channels' webhook signing secrets (Twilio's auth token), each with its `kind`."""
        out = []
        for kind in ("whatsapp", "sms"):
            for doc in self.store.channels_of(kind):
                if doc.get("active"):
                    secrets = doc.get("secrets") or {}
                    out.append({"id": doc["_id"], "kind": kind,
                                "app_secret": unseal(secrets.get("app_secret")),
                                "verify_token": unseal(secrets.get("verify_token"))})
        return out

    # --- message templates (everyone reads and uses; the gateway lets admins and managers
    # change them) ---------------------------------------------------------------------------
    def _template(self, template_id):
        doc = self.store.live_template(template_id)
        if doc is None:
            raise NotFound("Unknown template", {"id": template_id})
        return doc

    def _duplicate(self, name):
        return Conflict("A template has this name already", {"reason": "duplicate_name",
                                                              "field": "name", "name": name})

    def create_template(self, payload):
        data = load(schemas.TemplateIn(), payload)
        templates.check(data)
        now = utcnow()
        doc = {"_id": new_id(), **data, "name": data["name"].strip(),
               "name_key": templates.name_key(data["name"]), "created_by": self.caller.user_id,
               "created_at": now, "updated_at": now, "deleted_at": None}
        if self.store.insert_template(doc) is None:
            raise self._duplicate(data["name"])
        return templates.dump_template(doc)

    def get_template(self, template_id):
        return templates.dump_template(self._template(template_id))

    def update_template(self, template_id, payload):
        doc = self._template(template_id)
        data = load(schemas.TemplateIn(), payload, partial=True)
        templates.check({**doc, **data})
        sets = dict(data, updated_at=utcnow(), updated_by=self.caller.user_id)
        if "name" in data:
            sets.update(name=data["name"].strip(), name_key=templates.name_key(data["name"]))
        updated = self.store.update_template(doc["_id"], sets)
        if updated is None and "name" in data and self.store.live_template(doc["_id"]):
            raise self._duplicate(data["name"])
        if updated is None:
            raise NotFound("Unknown template", {"id": template_id})
        return templates.dump_template(updated)

    def delete_template(self, template_id):
        if self.store.delete_template(template_id, utcnow()) is None:
            raise NotFound("Unknown template", {"id": template_id})
        return {"id": template_id, "deleted": True}

    def list_templates(self, params):
        data = load(schemas.TemplateListQuery(), params)
        channels = (data["channel"], "any") if data.get("channel") else None
        docs, cursor = self.store.template_page(
            channels, templates.name_key(data["q"]) if data.get("q") else None,
            data["limit"], data.get("cursor"))
        return {"items": [templates.dump_template(d) for d in docs], "next_cursor": cursor}

    def render_template(self, template_id, payload, sender=None):
        """The composer's preview: the template filled for a contact and deal the caller
        sees (contacts and deals answer 404 otherwise)."""
        doc = self._template(template_id)
        return self._filled(doc, load(schemas.TemplateRenderIn(), payload or {}), sender)

    def preview_template(self, payload, sender=None):
        """The editor's preview: its text checked (422 at the field) and filled."""
        data = load(schemas.TemplatePreviewIn(), payload or {})
        templates.check(data)
        return self._filled(data, data, sender)

    def _filled(self, doc, data, sender):
        contact = self.contacts.get_contact(data["contact_id"]) if data.get("contact_id") \
            else None
        deal_id = data.get("deal_id") or (self.open_deal(contact["id"]) if contact else None)
        deal = self.deals.get_deal(deal_id) if deal_id and self.deals is not None else None
        if deal and data.get("deal_id") and not contact and deal.get("contact_id"):
            try:
                contact = self.contacts.get_contact(deal["contact_id"])
            except NotFound:
                contact = None
        out = templates.render(doc, contact, deal, sender)
        return {"template_id": doc.get("_id"), "channel": doc.get("channel") or "any",
                "whatsapp_template": doc.get("whatsapp_template"),
                "contact_id": (contact or {}).get("id"), "deal_id": (deal or {}).get("id"),
                **out}

    # --- the inbox ------------------------------------------------------------------------
    def _visible(self):
        ids = self.caller.person_ids()
        if ids is None:
            return {}
        return self.store.visible_to(ids)

    def _conversation(self, conversation_id):
        doc = self.store.get("conversations", conversation_id)
        if doc is None or (self.caller.person_ids() is not None and not self._sees(doc)):
            raise NotFound("Unknown conversation", {"id": conversation_id})
        return doc

    def _sees(self, doc):
        ids = self.caller.person_ids()
        return ids is None or doc.get("assignee_id") in ids or doc.get("owner_id") in ids or \
            (doc.get("assignee_id") is None and doc.get("owner_id") is None)

    def get(self, conversation_id):
        return dump_conversation(self._conversation(conversation_id))

    def list(self, params):
        data = load(schemas.ConversationListQuery(), params)
        query = dict(self._visible())
        if data.get("status"):
            query["status"] = data["status"]
        if data.get("assignee_id"):
            who = data["assignee_id"]
            query["assignee_id"] = (self.caller.user_id if who == "me"
                                    else None if who == "none" else who)
        if data.get("contact_id"):
            query["contact_id"] = data["contact_id"]
        if data.get("channel"):
            query["channels"] = data["channel"]
        if "waiting" in data:
            query["waiting"] = data["waiting"]
        docs, cursor = self.store.page("conversations", query, "last_message_at", -1,
                                       data["limit"], data.get("cursor"))
        now = utcnow()
        return {"items": [dump_conversation(d, now) for d in docs], "next_cursor": cursor}

    def messages(self, conversation_id, params):
        conv = self._conversation(conversation_id)
        data = load(schemas.MessageListQuery(), params)
        docs, cursor = self.store.page("messages", {"conversation_id": conv["_id"]}, "at", 1,
                                       data["limit"], data.get("cursor"))
        return {"items": [dump_message(d) for d in docs], "next_cursor": cursor}

    def attachment(self, conversation_id, attachment_id):
        self._conversation(conversation_id)
        found = self.store.get_attachment(attachment_id)
        if found is None:
            raise NotFound("Unknown attachment", {"id": attachment_id})
        data, content_type, filename = found
        return {"content_base64": base64.b64encode(data).decode(),
                "content_type": content_type or "application/octet-stream", "filename": filename}

    def assign(self, conversation_id, payload):
        conv = self._conversation(conversation_id)
        data = load(schemas.AssignIn(), payload)
        if data["assignee_id"]:
            self.caller.check_assign(data["assignee_id"], "assignee_id")
        updated = self.store.touch_conversation(conv["_id"], {"assignee_id": data["assignee_id"],
                                                              "updated_at": utcnow()})
        event = conversation_event("conversation_assigned", updated, self.caller.user_id,
                                   "Conversation assigned" if data["assignee_id"] else
                                   "Conversation unassigned",
                                   {"previous_assignee_id": conv.get("assignee_id")})
        return dump_conversation(updated), [event]

    def close(self, conversation_id):
        conv = self._conversation(conversation_id)
        if conv.get("status") == "closed":
            return dump_conversation(conv), []
        updated = self.store.touch_conversation(
            conv["_id"], {"status": "closed", "waiting": False, "waiting_since": None,
                          "updated_at": utcnow()}, unset=["escalate_at", "first_response_due_at"])
        return dump_conversation(updated), [conversation_event(
            "conversation_closed", updated, self.caller.user_id, "Conversation closed")]

    def reopen(self, conversation_id):
        conv = self._conversation(conversation_id)
        if conv.get("status") != "closed":
            return dump_conversation(conv), []
        updated = self.store.touch_conversation(conv["_id"], {"status": "open",
                                                              "updated_at": utcnow()})
        return dump_conversation(updated), [conversation_event(
            "conversation_reopened", updated, self.caller.user_id, "Conversation reopened")]

    # --- conversations found or made ------------------------------------------------------
    def open_deal(self, contact_id):
        if self.deals is None:
            return None
        try:
            found = self.deals.list_deals({"contact_id": contact_id, "status": "open",
                                           "limit": 1})["items"]
        except Exception as exc:  # noqa: BLE001 - the link is filled later by deal events
            log.warning("open deal of %s not known now: %s", contact_id, exc)
            return None
        return found[0]["id"] if found else None

    def new_conversation(self, key, contact=None, **fields):
        now = utcnow()
        doc = {"_id": new_id(), "key": key, "contact_id": None, "contact_name": None,
               "owner_id": None, "assignee_id": None, "deal_id": None, "status": "open",
               "channels": [], "subject": None, "last_message_at": now, "last_preview": None,
               "waiting": False, "waiting_since": None, "mailbox_id": None,
               "created_at": now, "updated_at": now}
        if contact is not None:
            doc.update(contact_id=contact["id"], contact_name=contact_name(contact),
                       owner_id=contact.get("owner_id"))
        doc.update({k: v for k, v in fields.items() if v is not None})
        self._unsaved.add(doc["_id"])
        return doc

    def for_contact(self, contact, **fields):
        """The client's conversation (made on first use), as (doc, prepared insert or None):
        the insert runs in the write's transaction."""
        key = f"contact:{contact['id']}"
        found = self.store.conversation_by_key(key)
        if found is not None:
            return found
        return self.new_conversation(key, contact, deal_id=self.open_deal(contact["id"]), **fields)

    # --- inbound --------------------------------------------------------------------------
    def record_inbound(self, conv, msg, source):
        """Store an inbound message (a messenger's) into `conv` (inserted if new), the
        conversation waiting for our answer -> (message, created?, events). Mail is stored
        by batches (sync.py)."""
        conv, _ = self.store.insert_conversation_if_new(conv)
        msg["conversation_id"] = conv["_id"]
        msg["contact_id"] = conv.get("contact_id")
        msg["deal_id"] = conv.get("deal_id")
        stored, created = self.store.insert_message_if_new(msg)
        if not created:
            return stored, False, []
        events = []
        sets = {"updated_at": utcnow(), "last_preview": preview(msg.get("text")),
                "status": "open", "last_inbound_channel": msg["channel"],
                f"last_inbound.{msg['channel']}": stored["_id"]}
        if msg.get("subject"):
            sets["subject"] = msg["subject"]
        if msg["channel"] == "email" and msg.get("mailbox_id"):
            sets["mailbox_id"] = msg["mailbox_id"]
        if not conv.get("waiting"):
            sets.update(waiting=True, waiting_since=msg["at"])
            due = first_response_due(as_utc(msg["at"]), source)
            if due is not None:
                sets.update(first_response_due_at=due, escalate_at=due)
        updated = self.store.touch_conversation(conv["_id"], sets,
                                                maxs={"last_message_at": msg["at"]},
                                                add={"channels": msg["channel"]})
        if conv.get("status") == "closed":
            events.append(conversation_event("conversation_reopened", updated, None,
                                             "The client wrote again: conversation reopened"))
        events.append(message_event("message_received", stored, updated))
        return stored, True, events

    def target_of(self, mailbox=None, channel=None):
        """Where a message's first-response target is set (its mailbox or channel)."""
        return mailbox or channel or {}

    def link_lead(self, event):
        """contacts.lead_captured: a conversation waiting for its lead gets the contact
        (joining the contact's own conversation if there is one); a Telegram message that
        came through the inbound route becomes a message. The link is kept, so a
        conversation stored after the event (the capture runs beside its answer) finds it."""
        data = event["data"]
        link = {"contact_id": data["contact_id"], "contact_name": data.get("contact_name"),
                "owner_id": data.get("contact_owner_id")}
        self.store.save_lead_link(data["request_id"], link)
        link = self.store.get("lead_links", data["request_id"])  # with a deal routed already
        events = []
        pending = self.store.conversations_of_request(data["request_id"])
        for conv in pending:
            events += self._join_contact(conv, link)
        if pending or data.get("channel") != "telegram":
            return events
        contact = {"id": data["contact_id"], "owner_id": data.get("contact_owner_id")}
        conv = self.for_contact(contact)
        if not conv.get("contact_name"):
            conv["contact_name"] = data.get("contact_name")
        channel = self.telegram_channel(data.get("form_id"))
        if self.store.message_by_dedupe(f"lead:{data['request_id']}"):
            return events
        attachments = self.telegram_media(data["request_id"], channel)
        if not data.get("text") and not attachments:
            return events
        msg = self.inbound_doc("telegram", f"lead:{data['request_id']}", data.get("text"),
                               at=data.get("received_at") or event.get("occurred_at"),
                               external_id=data["request_id"],
                               channel_id=(channel or {}).get("_id"), attachments=attachments)
        _, _, more = self.record_inbound(conv, msg, self.target_of(channel=channel))
        return events + more

    def telegram_media(self, request_id, channel):
        """The files of a Telegram update captured by contacts (its inbound request keeps
        the update): the largest photo size, a document, audio, voice, video, sticker,
        each through getFile with the channel's token."""
        if channel is None:
            return []
        try:
            update = self.contacts.get_inbound_request(request_id).get("payload") or {}
        except Exception as exc:  # noqa: BLE001 - the text is kept without its files
            log.warning("telegram update of %s not read: %s", request_id, exc)
            return []
        message = next((update[k] for k in ("message", "edited_message", "channel_post")
                        if isinstance(update.get(k), dict)), {})
        files = []
        photos = message.get("photo")
        if isinstance(photos, list) and photos and isinstance(photos[-1], dict):
            files.append((photos[-1], "photo.jpg", "image/jpeg"))
        for kind in ("document", "audio", "voice", "video", "video_note", "animation",
                     "sticker"):
            item = message.get(kind)
            if isinstance(item, dict):
                files.append((item, item.get("file_name") or kind, item.get("mime_type")))
        token = unseal((channel.get("secrets") or {}).get("token")) or ""
        base = channel.get("api_base") or TELEGRAM_API
        return [self.keep_media(
            lambda item=item: fetch_media.telegram(
                self.http, base, token, str(item["file_id"]),
                self.settings.max_attachment_bytes, self.settings.timeout_s),
            {"filename": str(name)[:255], "content_type": content_type,
             "external_id": str(item.get("file_unique_id") or item["file_id"])[:200]})
            for item, name, content_type in files if item.get("file_id")]

    def apply_pending_lead(self, conversation_id, read=None):
        """`read`: the conversation as read before this write; one that already had its
        contact, or waits for no lead, needs no second look."""
        if read is not None and (read.get("contact_id") or not read.get("lead_request_id")):
            return []
        conv = self.store.get("conversations", conversation_id)
        if not conv or conv.get("contact_id") or not conv.get("lead_request_id"):
            return []
        # both sides write the link's document, so this and link_lead never miss each
        # other: concurrent transactions conflict and one runs again, seeing the other
        link = self.store.note_lead_waiting(conv["lead_request_id"], conv["_id"])
        return self._join_contact(conv, link) if link.get("contact_id") else []

    def _join_contact(self, conv, link):
        """`conv` (of a sender not known before) now belongs to the contact; its messages
        are announced again with the contact, for the timeline."""
        if conv.get("contact_id") == link["contact_id"]:
            return []
        key = f"contact:{link['contact_id']}"
        target = self.store.conversation_by_key(key)
        if target is None:
            target = self.store.touch_conversation(conv["_id"], {
                "key": key, "contact_id": link["contact_id"],
                "contact_name": link.get("contact_name") or conv.get("contact_name"),
                "owner_id": link.get("owner_id"), "updated_at": utcnow(),
                "deal_id": link.get("deal_id") or conv.get("deal_id")})
        else:
            self.store.delete("conversations", conv["_id"])
            sets = {"updated_at": utcnow(), "status": "open"}
            if not target.get("deal_id") and (link.get("deal_id") or conv.get("deal_id")):
                sets["deal_id"] = link.get("deal_id") or conv.get("deal_id")
            for channel, message_id in (conv.get("last_inbound") or {}).items():
                sets[f"last_inbound.{channel}"] = message_id
            if conv.get("last_inbound_channel"):
                sets["last_inbound_channel"] = conv["last_inbound_channel"]
            if conv.get("waiting") and not target.get("waiting"):
                sets.update(waiting=True, waiting_since=conv.get("waiting_since"))
                if conv.get("escalate_at"):
                    sets["escalate_at"] = conv["escalate_at"]
            target = self.store.touch_conversation(
                target["_id"], sets, maxs={"last_message_at": conv["last_message_at"]},
                add_all={"channels": conv.get("channels") or []})
        self.store.repoint_messages(conv["_id"], target["_id"],
                                    {"contact_id": link["contact_id"]})
        docs, _ = self.store.page("messages", {"conversation_id": target["_id"]}, "at", 1, 200,
                                  None)
        return [message_event("message_received", m, target) for m in docs
                if m["direction"] == "inbound"]

    def link_deal(self, contact_id, deal_id, only_if_empty=False, request_id=None):
        """The contact's conversation gets the deal. A lead's deal is also kept on the lead's
        link, so a conversation that joins its contact later still gets it (both write
        that document: whichever runs second sees the other)."""
        if not contact_id or not deal_id:
            return []
        if request_id:
            self.store.save_lead_link(request_id, {"deal_id": deal_id})
        conv = self.store.conversation_by_key(f"contact:{contact_id}")
        if conv is None or (only_if_empty and conv.get("deal_id")):
            return []
        self.store.touch_conversation(conv["_id"], {"deal_id": deal_id})
        return []

    def contact_merged(self, data):
        survivor = data["survivor_id"]
        for merged in data.get("merged_ids") or []:
            conv = self.store.conversation_by_key(f"contact:{merged}")
            if conv is not None:
                self._join_contact(conv, {"contact_id": survivor,
                                          "owner_id": data.get("owner_id")})

    def inbound_doc(self, channel, dedupe_key, text, at=None, **fields):
        now = utcnow()
        when = at if not isinstance(at, str) else None
        if isinstance(at, str):
            from crm_common.timeutil import parse_iso
            when = parse_iso(at)
        return {"_id": new_id(), "dedupe_key": dedupe_key, "channel": channel,
                "direction": "inbound", "status": "received", "text": (text or "")[:100_000],
                "at": when or now, "created_at": now, "updated_at": now, **fields}

    def receive_whatsapp(self, payload, meta):
        """Meta's webhook body (signature checked by the gateway): each message lands in
        its client's conversation, its media (image, document, audio, video, sticker)
        fetched as an attachment; an unknown number becomes a lead once."""
        pending = []
        for entry in (payload or {}).get("entry") or []:
            for change in entry.get("changes") or []:
                value = change.get("value") or {}
                names = {c.get("wa_id"): (c.get("profile") or {}).get("name")
                         for c in value.get("contacts") or [] if isinstance(c, dict)}
                phone_id = (value.get("metadata") or {}).get("phone_number_id")
                for m in value.get("messages") or []:
                    if not isinstance(m, dict) or not m.get("from") or not m.get("id"):
                        continue
                    kind = m.get("type")
                    found = m.get(kind) if kind in WHATSAPP_MEDIA else None
                    media = found if isinstance(found, dict) and found.get("id") else None
                    text = ((m.get("text") or {}).get("body") if kind == "text"
                            else (media or {}).get("caption") or f"({kind} message)")
                    pending.append((str(m["from"]), names.get(m["from"]), str(m["id"]), text,
                                    m.get("timestamp"), phone_id, kind, media))
        out = []
        for wa_id, name, msg_id, text, stamp, phone_id, kind, media in pending:
            if self.store.message_by_dedupe(f"whatsapp:{msg_id}"):
                continue
            channel = next((c for c in self.store.channels_of("whatsapp")
                            if c.get("phone_number_id") == phone_id), None) or \
                (self.store.channels_of("whatsapp") or [None])[0]
            phone = "+" + re.sub(r"\D", "", wa_id)
            conv = self.conversation_for_sender("whatsapp", f"whatsapp:{wa_id}",
                                                 {"phone": phone}, name, text, msg_id,
                                                 shared=True)
            attachments = []
            if media is not None and channel is not None:
                secrets = channel.get("secrets") or {}
                attachments.append(self.keep_media(
                    lambda: fetch_media.whatsapp(
                        self.http, channel.get("api_base") or WHATSAPP_API,
                        unseal(secrets.get("token")), media["id"],
                        self.settings.max_attachment_bytes, self.settings.timeout_s),
                    {"filename": (media.get("filename") or f"{kind}")[:255],
                     "content_type": media.get("mime_type"), "external_id": media["id"]}))
            msg = self.inbound_doc("whatsapp", f"whatsapp:{msg_id}", text, at=_from_epoch(stamp),
                                   external_id=msg_id, channel_id=(channel or {}).get("_id"),
                                   attachments=attachments,
                                   **{"from": {"address": wa_id, "name": name or ""}})
            out.append((conv, msg, self.target_of(channel=channel)))
        return {"status": "received", "stored": len(out)}, out

    def receive_sms(self, payload, meta):
        """Twilio's incoming-message webhook (form fields From, To, Body, MessageSid,
        NumMedia, MediaUrl<n>, MediaContentType<n>; the gateway checked X-Twilio-Signature
        with an SMS channel's auth token): the client's conversation, a lead once for an
        unknown number; MMS media fetched with the account SID and the auth token."""
        payload = payload or {}
        sid, sender = str(payload.get("MessageSid") or ""), str(payload.get("From") or "")
        if not sid or not sender:
            raise ValidationFailed("Invalid input", {"fields": {
                "MessageSid": ["Required with From."]}})
        if self.store.message_by_dedupe(f"sms:{sid}"):
            return {"status": "duplicate", "stored": 0}, []
        to = re.sub(r"[^\d+]", "", str(payload.get("To") or ""))
        channels = [c for c in self.store.channels_of("sms") if c.get("active")]
        channel = next((c for c in channels
                        if re.sub(r"[^\d+]", "", c.get("from_number") or "") == to), None) or \
            (channels or [None])[0]
        text = str(payload.get("Body") or "")[:10000]
        conv = self.conversation_for_sender("sms", f"sms:{sender}", {"phone": sender}, None,
                                            text, sid, shared=True)
        attachments = []
        token = unseal(((channel or {}).get("secrets") or {}).get("app_secret"))
        try:
            count = min(int(payload.get("NumMedia") or 0), 10)
        except ValueError:
            count = 0
        for n in range(count):
            url = str(payload.get(f"MediaUrl{n}") or "")
            if not url.startswith(("https://", "http://")):
                continue
            attachments.append(self.keep_media(
                lambda url=url: fetch_media.twilio(
                    self.http, url, str(payload.get("AccountSid") or ""), token,
                    self.settings.max_attachment_bytes, self.settings.timeout_s),
                {"filename": f"media-{n}", "external_id": url[-200:],
                 "content_type": payload.get(f"MediaContentType{n}")}))
        msg = self.inbound_doc("sms", f"sms:{sid}", text or (
            f"({count} media)" if count else ""), external_id=sid,
            channel_id=(channel or {}).get("_id"), attachments=attachments,
            **{"from": {"address": sender, "name": ""}})
        return {"status": "received", "stored": 1}, [(conv, msg, self.target_of(channel=channel))]

    @property
    def http(self):
        if self._http is None:
            self._http = requests.Session()
        return self._http

    def keep_media(self, getter, meta):
        """A provider's media stored as an attachment (listed `skipped` when it is over
        the size limit or could not be fetched)."""
        meta, data = fetch_media.fetch(getter, meta, self.settings.max_attachment_bytes)
        meta = {"id": None, "filename": meta["filename"], "size": meta.get("size"),
                "content_type": meta.get("content_type") or "application/octet-stream",
                "skipped": meta.get("skipped"), "external_id": meta.get("external_id")}
        if data is not None:
            meta["id"] = new_id()
            self.store.put_attachment(meta["id"], data, dict(meta))
        return meta

    def conversation_for_sender(self, channel, key, lookup, name, text, external_id, shared):
        """The conversation a sender's message goes to: their contact's, else one waiting
        for the lead the first message of a shared channel creates (once)."""
        found = self.contacts.lookup(lookup)["items"]
        if found:
            return self.for_contact(found[0])
        conv = self.store.conversation_by_key(key)
        if conv is None:
            conv = self.new_conversation(key, contact_name=name or None)
        if shared:
            self.capture_lead(conv, channel, key, lookup, name, text, external_id)
        return conv

    def capture_lead(self, conv, channel, key, lookup, name, text, external_id):
        """A new sender of a shared channel becomes a lead through contacts' capture path,
        once per conversation (its `lead_request_id`)."""
        if conv.get("lead_request_id"):
            return
        sender = {"name": name or None, **lookup}
        if channel == "whatsapp":
            sender["handle"] = key.partition(":")[2]
        answer = self.contacts.receive_message(
            {"channel": channel, "sender": {k: v for k, v in sender.items() if v},
             "text": (text or "")[:10000], "external_id": external_id[:200]},
            {"via": "conversations"})
        conv["lead_request_id"] = answer.get("id")
        if conv.get("created_at") and self.store.get("conversations", conv["_id"]):
            self.store.touch_conversation(conv["_id"], {"lead_request_id": answer.get("id")})

    def contacts_by_email(self, addresses, known):
        """{address: contact or None} in one contacts call per 500 addresses; `known`
        (address -> contact or None) keeps what a sync pass met already."""
        missing = sorted({a for a in addresses if a not in known})
        for start in range(0, len(missing), 500):
            found = self.contacts.lookup_emails(missing[start:start + 500])
            for address in missing[start:start + 500]:
                matches = found.get(address) or []
                known[address] = matches[0] if matches else None
        return {a: known.get(a) for a in addresses}

    # --- sending --------------------------------------------------------------------------
    def send_to_contact(self, contact_id, payload, sender_user_id=None, sender=None,
                        claim=None):
        """`claim` (service._claim): the message stored claimed, handed to `claim["taken"]`."""
        def enqueue():
            contact = self.contacts.get_contact(contact_id)
            conv = self.for_contact(contact)
            return self._enqueue(conv, contact, payload, sender_user_id, sender, claim)
        return self._once(payload, enqueue)

    def reply(self, conversation_id, payload, sender_user_id=None, sender=None, claim=None):
        def enqueue():
            conv = self._conversation(conversation_id)
            if not conv.get("contact_id"):
                contact = None
            else:
                contact = self.contacts.get_contact(conv["contact_id"])
            return self._enqueue(conv, contact, payload, sender_user_id, sender, claim)
        return self._once(payload, enqueue)

    def _once(self, payload, enqueue):
        """A send with an idempotency key made again answers the first message. Its key is
        not read before every send (a find per message): the insert on the unique dedupe
        key finds a stored one (store.queue_message); it is read first only when the send
        stores attachments before its message, and after a refusal (the first one may
        have been queued before the contact or its mailbox changed)."""
        key = payload.get("idempotency_key") if isinstance(payload, dict) else None
        if key and isinstance(key, str) and payload.get("attachments"):
            found = self.store.message_by_dedupe(f"idem:{key}")
            if found is not None:
                return dump_message(found), []
        try:
            return enqueue()
        except (Conflict, NotFound, ValidationFailed):
            found = self.store.message_by_dedupe(f"idem:{key}") \
                if key and isinstance(key, str) else None
            if found is None:
                raise
            return dump_message(found), []

    def check_consent(self, contact, channel):
        if contact is None:
            return
        if contact.get("do_not_contact"):
            raise Conflict("The contact asked not to be contacted (do_not_contact)",
                           {"reason": "do_not_contact", "contact_id": contact["id"]})
        # per-channel opt-outs: the contact's `opt_outs` when contacts keeps them, else its
        # custom field `opt_outs` (a list of channels, or "all")
        outs = set()
        for found in (contact.get("opt_outs"), (contact.get("custom") or {}).get("opt_outs")):
            if isinstance(found, list):
                outs |= {str(x) for x in found}
        if channel in outs or "all" in outs:
            raise Conflict(f"The contact opted out of {channel}",
                           {"reason": "opted_out", "channel": channel, "contact_id": contact["id"]})

    def _template_for_send(self, data, conv):
        """The template a send names, and the channel it goes on (the one asked for, else
        the template's own, else the conversation's); 422 at `template_id` when it is
        unknown or made for another channel."""
        doc = self.store.live_template(data["template_id"])
        if doc is None:
            raise ValidationFailed("Unknown template", {"fields": {
                "template_id": ["No such template."]}})
        own = doc.get("channel") or "any"
        channel = data.get("channel") or (own if own != "any" else self._default_channel(conv))
        if own not in ("any", channel):
            raise ValidationFailed("The template is for another channel", {"fields": {
                "template_id": [f"This template is for {own}, not {channel}."]}})
        return doc, channel

    def _enqueue(self, conv, contact, payload, sender_user_id, sender=None, claim=None):
        data = load(schemas.SendIn(), payload)
        key = data.get("idempotency_key")  # a stored one: _once
        template = None
        if data.get("template_id"):
            template, channel = self._template_for_send(data, conv)
        else:
            channel = data.get("channel") or self._default_channel(conv)
        self.check_consent(contact, channel)
        deal = None
        deal_id = data.get("deal_id") or conv.get("deal_id")
        if deal_id and self.deals is not None and (template is not None or PLACEHOLDER.search(
                (data.get("body") or "") + (data.get("subject") or "") + (data.get("html") or ""))):
            try:
                deal = self.deals.get_deal(deal_id)
            except Exception:  # noqa: BLE001 - placeholders of the deal stay empty
                deal = None
        variables = data.get("variables") or {}
        # what the send gives itself wins; a template fills only what it leaves out, and
        # its text (filled once, by the template's rules) is not filled again
        filled = templates.render(template, contact, deal, sender) if template else {}
        given = {"body": (data.get("body") or "").strip() != "",
                 "subject": data.get("subject") is not None, "html": data.get("html") is not None}

        def text(field):
            if template is not None and not given[field]:
                return filled[field]
            return render(data.get(field), contact, deal, variables)
        body, subject = text("body"), text("subject")
        html = mail.sanitize(text("html"))
        if not data.get("template") and template is not None and channel == "whatsapp":
            data["template"] = template.get("whatsapp_template")
        now = utcnow()
        msg = {"_id": new_id(), "dedupe_key": f"idem:{key}" if key else f"out:{new_id()}",
               "channel": channel, "direction": "outbound", "status": "queued", "text": body,
               "html": html, "template": data.get("template"), "variables": variables,
               "template_id": (template or {}).get("_id"),
               "language": data["language"], "sender_user_id": sender_user_id,
               "deal_id": deal_id, "at": now, "created_at": now, "updated_at": now,
               "send_due_at": now,
               "attempts": 0, "error": None}
        if channel == "email":
            self._address_email(conv, contact, data, msg, subject)
        else:
            self._address_messenger(conv, contact, data, msg, channel)
        msg["attachments"] = []
        for item in data.get("attachments") or []:
            try:
                raw = base64.b64decode(item["content_base64"], validate=True)
            except (ValueError, TypeError):
                raise ValidationFailed("An attachment is not valid base64",
                                       {"fields": {"attachments": ["Not base64."]}})
            file_id = new_id()
            meta = {"id": file_id, "filename": item["filename"],
                    "content_type": item["content_type"], "size": len(raw), "skipped": None}
            self.store.put_attachment(file_id, raw, dict(meta, message_id=msg["_id"]))
            msg["attachments"].append(meta)
        if conv["_id"] in self._unsaved:  # a stored one needs no upsert and no read back
            self._unsaved.discard(conv["_id"])
            conv, _ = self.store.insert_conversation_if_new(conv)
        msg["conversation_id"] = conv["_id"]
        msg["contact_id"] = conv.get("contact_id")
        if claim is not None:  # as sender.claim_sends would leave it, still `queued`
            msg.update(send_due_at=claim["lease_until"], holder=claim["holder"], attempts=1)
        stored, created = self.store.queue_message(msg)
        if not created:
            return dump_message(stored), []
        if claim is not None:
            claim["taken"](stored)
        # the conversation follows the message when it is sent or fails (sender.py), by
        # one write per conversation and batch; now only who answers an unassigned client
        # is assigned, and a first mail's mailbox kept (the next ones are sent from it)
        sets = {}
        if conv.get("assignee_id") is None and sender_user_id:
            sets["assignee_id"] = sender_user_id
        if msg.get("mailbox_id") and not conv.get("mailbox_id"):
            sets["mailbox_id"] = msg["mailbox_id"]
        if sets:
            self.store.touch_conversation(conv["_id"], dict(sets, updated_at=now),
                                          read_back=False)
        return dump_message(stored), []

    def _last_inbound(self, conv, channel):
        """The client's latest message on `channel` (kept on the conversation by id)."""
        found = (conv.get("last_inbound") or {}).get(channel)
        return self.store.get("messages", found) if found else None

    def _default_channel(self, conv):
        return conv.get("last_inbound_channel") or "email"

    def _address_email(self, conv, contact, data, msg, subject):
        parent = self._last_inbound(conv, "email")
        mailbox = None
        for candidate in (data.get("mailbox_id"), (parent or {}).get("mailbox_id"),
                          conv.get("mailbox_id")):
            if candidate:
                mailbox = self.store.mailbox_cached(candidate)
                if mailbox:
                    break
        if mailbox is None:  # the sender's own, else the contact's owner's, else a shared one
            for find in (lambda: self.store.mailboxes_of_cached(msg["sender_user_id"])
                         if msg["sender_user_id"] else [],
                         lambda: self.store.mailboxes_of_cached(contact["owner_id"])
                         if (contact or {}).get("owner_id") else [],
                         self.store.shared_mailboxes_cached):
                mailbox = (find() or [None])[0]
                if mailbox is not None:
                    break
        if mailbox is None:
            raise Conflict("No mailbox to send from: connect one first",
                           {"reason": "no_mailbox"})
        if parent is not None:
            to = [parent["from"]]
        else:
            emails = [e["email"] for e in (contact or {}).get("emails") or []]
            if not emails:
                raise Conflict("The contact has no e-mail address", {"reason": "no_address",
                                                                     "channel": "email"})
            to = [{"address": emails[0], "name": contact_name(contact) or ""}]
        base = subject or (parent or {}).get("subject") or conv.get("subject") or ""
        if parent is not None and not subject and not re.match(r"^\s*re\s*:", base, re.I):
            base = "Re: " + base
        msg.update(mailbox_id=mailbox["_id"], subject=base[:998], to=to, cc=[],
                   **{"from": {"address": mailbox["address"],
                               "name": mailbox.get("display_name") or ""}},
                   message_id=mail.new_message_id(mailbox["address"]),
                   in_reply_to=(parent or {}).get("message_id"),
                   references=(((parent or {}).get("references") or []) +
                               ([parent["message_id"]] if (parent or {}).get("message_id") else []))[-20:],
                   # a first mail (a campaign's, an automation's) starts its own thread
                   thread_id=(parent or {}).get("thread_id") or msg["_id"])

    def _address_messenger(self, conv, contact, data, msg, channel):
        candidates = self.store.channels_of_cached(channel)
        last = self._last_inbound(conv, channel)
        # the channel asked for, else the one (bot, number) the client last wrote to
        chosen = next((c for c in candidates if c["_id"] == data.get("channel_id")), None) \
            or next((c for c in candidates if c["_id"] == (last or {}).get("channel_id")
                     and c.get("active")), None) \
            or next((c for c in candidates if c.get("active")), None)
        if chosen is None:
            raise Conflict(f"No {channel} channel is set up", {"reason": "no_channel",
                                                                 "channel": channel})
        target = None
        if channel == "telegram":
            handles = [m["handle"] for m in (contact or {}).get("messengers") or []
                       if m.get("channel") == "telegram" and str(m.get("handle")).lstrip("-").isdigit()]
            target = handles[0] if handles else None
        elif channel == "whatsapp":
            target = ((last or {}).get("from") or {}).get("address")
            if not target:
                phones = [p.get("e164") for p in (contact or {}).get("phones") or [] if p.get("e164")]
                target = phones[0].lstrip("+") if phones else None
            within = last is not None and utcnow() - as_utc(last["at"]) < WHATSAPP_WINDOW
            if not within and not data.get("template"):
                raise Conflict("Outside WhatsApp's 24-hour customer service window only an "
                               "approved template may be sent",
                               {"reason": "whatsapp_window_closed",
                                "last_inbound_at": to_iso((last or {}).get("at"))})
        elif channel == "sms":
            phones = [p.get("e164") for p in (contact or {}).get("phones") or [] if p.get("e164")]
            target = phones[0] if phones else None
        if not target:
            raise Conflict(f"The contact has no {channel} address", {"reason": "no_address",
                                                                     "channel": channel})
        msg.update(channel_id=chosen["_id"], to=[{"address": str(target), "name": ""}],
                   subject=None)
