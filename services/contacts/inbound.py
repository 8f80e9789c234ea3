"""Inbound requests (docs/leads.md): routes (web forms, channel settings), receiving a request
(stored as received before anything else), and capturing it: match or create the contact and
announce `lead_captured`; the deals service routes it from there."""
import logging
import re
import secrets
from datetime import datetime, timedelta, timezone

from crm_common.context import Caller
from crm_common.errors import Forbidden, NotFound, ValidationFailed
from crm_common.messaging.events import envelope
from crm_common.ids import new_id
from crm_common.phones import normalize_phone
from crm_common.timeutil import parse_iso, to_iso, utcnow
from crm_common.validation import load
from contracts import contacts as schemas
from services.contacts.domain import EMAIL, handle_key
from services.contacts.operations import Contacts, dump_contact

log = logging.getLogger(__name__)

form_in, form_out = schemas.LeadFormIn(), schemas.LeadFormOut()
form_list_query = schemas.LeadFormListQuery()
message_in = schemas.InboundMessageIn()
request_out = schemas.InboundRequestOut()
request_list_query = schemas.InboundRequestListQuery()

SERVICE = "contacts"
# the request's own receive call captures it first; the sweeper takes over after this
FIRST_TRY_GRACE = timedelta(seconds=20)
LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)
TEXT_LIMIT = 1000
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign")
# posted field names recognised without a mapping (lower case, -/space as _)
STANDARD_FIELDS = {
    "first_name": "first_name", "firstname": "first_name", "given_name": "first_name",
    "last_name": "last_name", "lastname": "last_name", "surname": "last_name",
    "family_name": "last_name", "name": "full_name", "full_name": "full_name",
    "fullname": "full_name", "your_name": "full_name", "email": "email", "e_mail": "email",
    "mail": "email", "your_email": "email", "phone": "phone", "tel": "phone",
    "telephone": "phone", "mobile": "phone", "phone_number": "phone", "your_phone": "phone",
    "company": "company", "organization": "company", "position": "position",
    "job_title": "position", "message": "message", "comment": "message", "comments": "message",
    "question": "message", "text": "message", "telegram": "telegram", "whatsapp": "whatsapp",
    "instagram": "instagram", "vk": "vk",
}
MESSENGER_TARGETS = ("telegram", "whatsapp", "instagram", "vk")
_FIELD_NAME = re.compile(r"[\s\-]+")


def _event(event_type, data, event_id=None):
    return envelope(SERVICE, event_type, data, event_id)


def _safe_key(key):
    """A posted field name as a Mongo field name ('.' and a leading '$' are not allowed)."""
    key = str(key)[:100].replace(".", "_")
    return "_" + key[1:] if key.startswith("$") else key


def _first(value):
    if isinstance(value, list):
        value = value[0] if value else None
    return value.strip() if isinstance(value, str) else value


def split_name(full_name):
    parts = (full_name or "").strip().split(None, 1)
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "")


def extract_form_fields(fields, mapping):
    """Posted fields -> {first_name, last_name, email, phone, handles, company, position, text}."""
    out = {"handles": []}
    for name, value in fields.items():
        target = mapping.get(name) or STANDARD_FIELDS.get(_FIELD_NAME.sub("_", name.lower()))
        value = _first(value)
        if not target or target == "ignore" or value in (None, ""):
            continue
        value = str(value)
        if target == "full_name":
            first, last = split_name(value)
            out.setdefault("first_name", first)
            out.setdefault("last_name", last)
        elif target in MESSENGER_TARGETS:
            out["handles"].append({"channel": target, "handle": value[:100]})
        elif target == "message":
            out["text"] = value[:10000]
        else:
            out[target] = value[:254]
    return out


def extract_telegram(update):
    """A Telegram Bot API Update -> (message time, extracted) or None when it carries no
    message from a person (e.g. a callback query or a membership change)."""
    message = next((update.get(k) for k in ("message", "edited_message", "business_message")
                    if isinstance(update.get(k), dict)), None)
    if not message or not isinstance(message.get("from"), dict) or message["from"].get("is_bot"):
        return None
    sender = message["from"]
    out = {"first_name": str(sender.get("first_name") or "")[:100],
           "last_name": str(sender.get("last_name") or "")[:100],
           "handles": [{"channel": "telegram", "handle": str(sender["id"])}] if sender.get("id") else [],
           "text": str(message.get("text") or message.get("caption") or "")[:10000]}
    if sender.get("username"):
        out["handles"].append({"channel": "telegram", "handle": "@" + str(sender["username"])[:99]})
    shared = message.get("contact") or {}
    if shared.get("phone_number") and shared.get("user_id") in (None, sender.get("id")):
        out["phone"] = str(shared["phone_number"])  # the person shared their own number
    when = message.get("date")
    return (datetime.fromtimestamp(when, timezone.utc) if isinstance(when, int) else utcnow()), out


class Inbound:
    def __init__(self, store, contacts_store, users, caller, deals=None):
        self.store = store  # InboundStore
        self.contacts_store = contacts_store
        self.users = users  # the users copy (ImportStore)
        self.caller = caller
        self.deals = deals  # RPC to the deals service (pipeline checks)
        self.region = contacts_store.settings.default_region

    # routes
    def _require_manager(self):
        if self.caller.role not in (None, "admin", "manager"):
            raise Forbidden("Only managers and admins manage forms and inbound requests")

    def dump_form(self, doc):
        out = form_out.dump(doc)
        out["id"] = doc["_id"]
        out["has_telegram_secret"] = bool(doc.get("telegram_secret_token"))
        out.setdefault("submissions", 0)
        out.setdefault("spam", 0)
        return out

    def create_form(self, payload):
        self._require_manager()
        data = load(form_in, payload)
        self._check_form_scope({**data, "created_by": self.caller.user_id})
        self._check_form(data)
        now = utcnow()
        doc = {**data, "_id": new_id(), "key": secrets.token_urlsafe(18), "submissions": 0,
               "spam": 0, "created_at": now, "updated_at": now, "deleted_at": None,
               "created_by": self.caller.user_id}
        self.store.insert_form(doc)
        return self.dump_form(doc)

    def get_form(self, form_id):
        self._require_manager()
        doc = self.store.get_form(form_id)
        if not doc:
            raise NotFound("Form not found", {"id": form_id})
        return self.dump_form(doc)

    def _check_form_scope(self, form):
        """forms:write (docs/auth.md): a manager changes only forms that route to their team
        (every person the owner rule names, or their own team), or that they or their team
        made and that route to no one in particular."""
        mine = self.caller.person_ids()
        if mine is None:
            return
        rule = form.get("owner_rule") or {}
        people = [rule["user_id"]] if rule.get("user_id") else list(rule.get("user_ids") or [])
        for person in people:
            self.caller.check_assign(person, "owner_rule")
        if rule.get("team"):
            self.caller.check_team(rule["team"], "owner_rule.team")
        if not people and not rule.get("team") and form.get("created_by") not in mine:
            raise Forbidden("This form belongs to another team", {"id": form.get("_id")})

    def update_form(self, form_id, payload):
        self._require_manager()
        current = self.store.get_form(form_id)
        if not current:
            raise NotFound("Form not found", {"id": form_id})
        self._check_form_scope(current)
        data = load(form_in, payload, partial=True)
        merged = {**current, **data}
        self._check_form_scope(merged)
        if merged.get("kind") == "channel" and not merged.get("channel"):
            raise ValidationFailed("Invalid input", {"fields": {"channel": [
                "A channel route names its channel."]}})
        self._check_form(data, merged)
        doc = self.store.update_form(form_id, {**data, "updated_at": utcnow()})
        if not doc:
            raise NotFound("Form not found", {"id": form_id})
        return self.dump_form(doc)

    def delete_form(self, form_id):
        self._require_manager()
        current = self.store.get_form(form_id)
        if not current:
            raise NotFound("Form not found", {"id": form_id})
        self._check_form_scope(current)
        doc = self.store.update_form(form_id, {"deleted_at": utcnow(), "active": False})
        if not doc:
            raise NotFound("Form not found", {"id": form_id})
        return self.dump_form(doc)

    def list_forms(self, params):
        self._require_manager()
        q = load(form_list_query, params)
        docs, next_cursor = self.store.page_forms({"kind": q["kind"]} if q.get("kind") else {},
                                                  q["limit"], q.get("cursor"))
        return {"items": [self.dump_form(d) for d in docs], "next_cursor": next_cursor}

    def public_form(self, key):
        """What the gateway needs to answer a browser's CORS preflight."""
        form = self.store.form_by_key(key)
        if not form or not form.get("active"):
            raise NotFound("Unknown form", {"key": key})
        return {"allowed_origins": form.get("allowed_origins") or [],
                "rate_limit_per_minute": form.get("rate_limit_per_minute")}

    def _check_form(self, data, merged=None):
        merged = merged or data
        errors = {}
        rule = data.get("owner_rule") or {}
        if rule.get("kind") == "fixed" and not self.users.get_user(rule["user_id"]):
            errors["owner_rule"] = ["Unknown user_id."]
        elif rule.get("team") and not self.users.team_member_ids(rule["team"]):
            errors["owner_rule"] = ["No active user in this team."]
        elif rule.get("user_ids"):
            unknown = [u for u in rule["user_ids"] if not self.users.get_user(u)]
            if unknown:
                errors["owner_rule"] = [f"Unknown user_ids: {', '.join(unknown)}."]
        if ("pipeline_id" in data or "stage_id" in data) and self.deals is not None:
            errors.update(self._check_pipeline(merged.get("pipeline_id"), merged.get("stage_id")))
        if errors:
            raise ValidationFailed("Invalid input", {"fields": errors})

    def _check_pipeline(self, pipeline_id, stage_id):
        if not pipeline_id:
            return {"stage_id": ["A stage needs its pipeline_id."]} if stage_id else {}
        try:
            pipeline = self.deals.get_pipeline(pipeline_id)
        except NotFound:
            return {"pipeline_id": ["Unknown pipeline."]}
        if stage_id and not any(s["id"] == stage_id and s.get("kind", "open") == "open"
                                for s in pipeline.get("stages", [])):
            return {"stage_id": ["Not an open stage of this pipeline."]}
        return {}

    # receiving
    def receive_form(self, key, fields, meta):
        """A website's post: checked, stored as received, then captured. Returns (answer,
        events); a honeypot hit answers the same way and stores nothing."""
        form = self.store.form_by_key(key)
        if not form or not form.get("active"):
            raise NotFound("Unknown form", {"key": key})
        origin = (meta.get("origin") or "").rstrip("/")
        if origin and origin not in (form.get("allowed_origins") or []):
            raise Forbidden("This origin may not post to this form", {"origin": origin})
        trap = fields.get(form.get("honeypot_field") or "")
        if any(_first(value) for value in (trap if isinstance(trap, list) else [trap])):
            self.store.count_on_form(form["_id"], "spam")
            log.info("form %s: honeypot caught a post from %s", form["_id"], meta.get("ip"))
            return {"id": new_id(), "status": "received", "redirect_url": form.get("redirect_url")}, None
        extracted = extract_form_fields(fields, form.get("fields_map") or {})
        utm = {k: str(_first(fields.get(k)) or "")[:200] or None for k in UTM_KEYS}
        meta = {**meta, "referrer": str(_first(fields.get("referrer")) or meta.get("referrer") or "")[:1000] or None}
        doc = self._new_request("form", form, fields, meta, extracted, utm, None)
        answer, stored = self._store(doc, form)
        return {**answer, "redirect_url": form.get("redirect_url")}, stored

    def receive_message(self, payload, meta):
        data = load(message_in, payload)
        if data.get("route_key"):
            route = self.store.form_by_key(data["route_key"])
            if not route or not route.get("active"):
                raise NotFound("Unknown route", {"route_key": data["route_key"]})
        else:
            route = self.store.channel_route(data["channel"])
        sender = data["sender"]
        first, last = split_name(sender.get("name"))
        # the sender's handle is a messenger handle, or an SMS sender's number (an e-mail
        # sender's handle is its address, given as `email`)
        handle, channel = sender.get("handle"), data["channel"]
        extracted = {"first_name": first, "last_name": last, "text": data.get("text") or "",
                     "handles": [{"channel": channel, "handle": handle}]
                     if handle and channel in schemas.MESSENGER_CHANNELS else []}
        if handle and channel == "sms":
            extracted["phone"] = handle
        for key in ("phone", "email"):
            if sender.get(key):
                extracted[key] = sender[key]
        utm = {k: data.get(k) for k in UTM_KEYS}
        dedupe = f"{data['channel']}:{data['external_id']}" if data.get("external_id") else None
        doc = self._new_request(data["channel"], route, payload, meta, extracted, utm, dedupe,
                                occurred_at=data.get("occurred_at"))
        return self._store(doc, route)

    def receive_telegram(self, key, update, meta):
        route = self.store.form_by_key(key)
        if not route or not route.get("active") or route.get("channel") != "telegram":
            raise NotFound("Unknown Telegram route", {"key": key})
        secret = route.get("telegram_secret_token")
        if not secret or not secrets.compare_digest(secret, meta.pop("secret_token", None) or ""):
            raise Forbidden("Wrong X-Telegram-Bot-Api-Secret-Token", {})
        found = extract_telegram(update if isinstance(update, dict) else {})
        if found is None:
            return {"id": None, "status": "ignored"}, None
        occurred_at, extracted = found
        dedupe = (f"telegram:{route['_id']}:{update['update_id']}"
                  if isinstance(update.get("update_id"), int) else None)
        doc = self._new_request("telegram", route, update, meta, extracted,
                                {k: None for k in UTM_KEYS}, dedupe, occurred_at=occurred_at)
        return self._store(doc, route)

    def _new_request(self, channel, route, payload, meta, extracted, utm, dedupe_key,
                     occurred_at=None):
        extracted = self._normalized(extracted)
        if not (extracted.get("email") or extracted.get("phone") or extracted["handles"]):
            raise ValidationFailed("Give a way to reach the person: an email, a phone or a "
                                   "messenger handle", {"fields": {"_schema": [
                                       "No email, phone or messenger handle."]}})
        now = utcnow()
        source = (route or {}).get("source") or ("website" if channel == "form" else channel)
        doc = {"_id": new_id(), "channel": channel, "form_id": (route or {}).get("_id"),
               "route_name": (route or {}).get("name"), "received_at": now,
               "occurred_at": occurred_at or now,
               "payload": _safe_payload(payload), "meta": meta, "extracted": extracted,
               "utm": utm, "source": source, "status": "received", "pending": True,
               "attempts": 0, "next_attempt_at": now + FIRST_TRY_GRACE, "last_error": None,
               "contact_id": None, "deal_id": None, "owner_id": None, "owner_reason": None,
               "updated_at": now}
        if dedupe_key:
            doc["dedupe_key"] = dedupe_key
        return doc

    def _normalized(self, extracted):
        """Only usable ways to reach someone count; the raw values stay in the payload."""
        out = dict(extracted)
        email = (out.get("email") or "").strip().lower()
        out["email"] = email if EMAIL.match(email) else None
        if out.get("phone"):
            parsed = normalize_phone(out["phone"], self.region)
            out["phone"] = parsed["e164"]
        out["handles"] = [h for h in out.get("handles", []) if (h.get("handle") or "").strip()]
        return out

    def _store(self, doc, route):
        """-> (the answer, the stored request to capture next or None for a repeat)."""
        stored, fresh = self.store.insert_request(doc)
        if not fresh:  # the same message again: already stored (and captured or pending)
            return {"id": stored["_id"], "status": stored["status"]}, None
        if route:
            self.store.count_on_form(route["_id"], "submissions")
        return {"id": stored["_id"], "status": "received"}, stored

    def capture_failed(self, request_id, exc):
        log.error("request %s stored, capture failed (%s: %s); the sweeper retries it",
                  request_id, type(exc).__name__, exc)
        self.store.update_request(request_id, {"last_error": f"{type(exc).__name__}: {exc}"})

    # capturing (idempotent: a retry finds the contact the first try created)
    def capture(self, request):
        route = self.store.get_form(request["form_id"]) if request.get("form_id") else None
        system = Contacts(self.contacts_store, Caller({}))
        contact, created, events = self._match_or_create(system, request, route)
        name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p) \
            or (request["extracted"].get("email") or request["extracted"].get("phone")
                or request["extracted"]["handles"][0]["handle"])
        label = request.get("route_name") or request["channel"]
        text = (request["extracted"].get("text") or "")[:TEXT_LIMIT]
        summary = f"New request via {label}: {name}" + (f" — {text[:120]}" if text else "")
        data = {
            "request_id": request["_id"], "received_at": to_iso(request["received_at"]),
            "channel": request["channel"], "contact_id": contact["id"],
            "contact_created": created, "contact_owner_id": contact.get("owner_id"),
            "contact_name": name, "form_id": request.get("form_id"),
            "route_name": request.get("route_name"), "source": request["source"],
            "utm": {k[4:]: (request.get("utm") or {}).get(k) for k in UTM_KEYS},
            "referrer": (request.get("meta") or {}).get("referrer"),
            "pipeline_id": (route or {}).get("pipeline_id"),
            "stage_id": (route or {}).get("stage_id"),
            "owner_rule": self._resolved_rule((route or {}).get("owner_rule")),
            "first_task": (route or {}).get("first_task"),
            "deal_title": f"{label}: {name}", "summary": summary, "text": text,
            "ref": {"type": "inbound_request", "id": request["_id"]}}
        self.contacts_store.add_timeline({
            "contact_id": contact["id"], "kind": "lead_captured",
            "occurred_at": request["received_at"], "summary": summary, "actor_id": None,
            "ref": {"service": SERVICE, "type": "inbound_request", "id": request["_id"]},
            "data": {"channel": request["channel"], "source": request["source"],
                     "form_id": request.get("form_id"), "utm": data["utm"], "text": text},
            "dedupe_key": f"lead:{request['_id']}"})
        events.append(_event("lead_captured", data, event_id=f"lead:{request['_id']}"))
        return events, {"status": "captured", "contact_id": contact["id"],
                        "contact_created": created}

    def mark_captured(self, request_id, changes):
        """After the events are out: the request leaves the sweeper's queue."""
        self.store.update_request(request_id, {**changes, "last_error": None,
                                               "updated_at": utcnow()}, unset=["pending"])

    def _match_or_create(self, system, request, route):
        ext = request["extracted"]
        handle_keys = [handle_key(h["channel"], h["handle"]) for h in ext["handles"]]
        found = []
        for field, keys in (("email_keys", [ext["email"]] if ext.get("email") else []),
                            ("phone_keys", [ext["phone"]] if ext.get("phone") else []),
                            ("handle_keys", handle_keys)):
            if keys:
                found += self.contacts_store.lookup(field, keys)
        if found:
            # the owned one first (someone already works with them), then the oldest
            best = min({d["_id"]: d for d in found}.values(),
                       key=lambda d: (d.get("owner_id") is None, d["created_at"]))
            return self._enrich(system, best, ext)
        payload = {"first_name": ext.get("first_name") or "", "last_name": ext.get("last_name") or "",
                   "emails": [ext["email"]] if ext.get("email") else [],
                   "phones": [ext["phone"]] if ext.get("phone") else [],
                   "messengers": ext["handles"], "status": "lead",
                   "source": request["source"][:50], "tags": (route or {}).get("tags") or []}
        if ext.get("position"):
            payload["position"] = ext["position"][:100]
        acquisition = {"channel": request["channel"], "form_id": request.get("form_id"),
                       "request_id": request["_id"], **(request.get("utm") or {}),
                       "referrer": (request.get("meta") or {}).get("referrer"),
                       "company": ext.get("company")}
        contact, events = system.create(payload, force=True,
                                        internal={"acquisition": acquisition})
        return contact, True, events

    def _enrich(self, system, doc, ext):
        """A known contact gets the new ways to reach them; nothing is overwritten."""
        changes = {}
        emails = [e["email"] for e in doc.get("emails", [])]
        if ext.get("email") and ext["email"] not in emails:
            changes["emails"] = doc.get("emails", []) + [{"email": ext["email"], "type": "other"}]
        if ext.get("phone") and ext["phone"] not in [p.get("e164") for p in doc.get("phones", [])]:
            changes["phones"] = ([{"number": p["e164"] or p["raw"], "type": p.get("type", "mobile")}
                                  for p in doc.get("phones", [])]
                                 + [{"number": ext["phone"], "type": "mobile"}])
        known = {handle_key(m["channel"], m["handle"]) for m in doc.get("messengers", [])}
        new = [h for h in ext["handles"] if handle_key(h["channel"], h["handle"]) not in known]
        if new:
            changes["messengers"] = [{"channel": m["channel"], "handle": m["handle"]}
                                     for m in doc.get("messengers", [])] + new
        for key in ("first_name", "last_name"):
            if ext.get(key) and not doc.get(key):
                changes[key] = ext[key]
        if not changes:
            return system.get(doc["_id"]), False, []
        contact, events = system.update(doc["_id"], changes)
        return contact, False, events

    def _resolved_rule(self, rule):
        rule = dict(rule or {"kind": "none"})
        if rule.get("kind") == "fixed":
            rule["user_ids"] = [rule["user_id"]]
        elif rule.get("team"):
            rule["user_ids"] = self.users.team_member_ids(rule["team"])
        rule.setdefault("user_ids", [])
        rule.setdefault("team", None)
        return {k: rule[k] for k in ("kind", "user_ids", "team")}

    def sweep_one(self, now):
        """Capture one stored request whose first try failed or never ran. Returns
        (request, events, changes) or None when there is nothing to do."""
        request = self.store.claim_due(now, LEASE)
        if not request:
            return None
        try:
            events, changes = self.capture(request)
        except Exception as exc:  # noqa: BLE001 - kept, retried with backoff
            delay = min(MAX_BACKOFF, timedelta(seconds=5 * 2 ** min(request["attempts"], 12)))
            self.store.update_request(request["_id"], {
                "last_error": f"{type(exc).__name__}: {exc}", "next_attempt_at": now + delay})
            log.warning("request %s: capture failed (%s), retry in %s", request["_id"], exc, delay)
            return request, [], None
        return request, events, changes

    # after the deals service routed it
    def on_lead_routed(self, event):
        """Record the routing on the request and the contact's timeline; an owner-less
        contact gets the lead's owner."""
        data = event["data"]
        events = []
        owner_id = data["owner_id"]
        # deals knows user ids only; the timeline is read by people: their name
        owner = self.users.get_user(owner_id) if owner_id else None
        summary = data.get("summary") or "Lead routed"
        if owner and owner.get("name"):
            summary = summary.replace(owner_id, owner["name"])
        self.contacts_store.add_timeline({
            "contact_id": data["contact_id"], "kind": "lead_routed",
            "occurred_at": parse_iso(event["occurred_at"]),
            "summary": summary, "actor_id": None,
            "ref": {"service": "deals", "type": "deal", "id": data["deal_id"]},
            "data": {k: data.get(k) for k in ("request_id", "deal_id", "deal_created", "owner_id",
                                              "owner_reason", "source", "channel")},
            "dedupe_key": f"{event['event_id']}:{data['contact_id']}"})
        if owner_id:
            doc = self.contacts_store.update_owner_if_none(data["contact_id"], owner_id, utcnow())
            if doc:
                contact = dump_contact(doc)
                events.append(_event("contact_updated", {"contact": contact, "changed": ["owner_id"],
                                                         "reason": data.get("owner_reason")}))
        self.store.update_request(data["request_id"], {
            "status": "routed", "deal_id": data["deal_id"],
            "deal_created": data.get("deal_created"), "owner_id": owner_id,
            "owner_reason": data.get("owner_reason"), "updated_at": utcnow()}, unset=["pending"])
        return events

    # reading
    # inbound:read (docs/auth.md): a manager sees the requests routed to their team and
    # those routed to no one yet; an admin every one
    def get_request(self, request_id):
        self._require_manager()
        doc = self.store.get_request(request_id)
        mine = self.caller.person_ids()
        if not doc or (mine is not None and doc.get("owner_id") not in mine + [None]):
            raise NotFound("Inbound request not found", {"id": request_id})
        return self.dump_request(doc)

    def list_requests(self, params):
        self._require_manager()
        q = load(request_list_query, params)
        query = {k: q[k] for k in ("status", "channel", "form_id", "contact_id") if q.get(k)}
        query.update(self.store.owned_by(self.caller.person_ids()))
        docs, next_cursor = self.store.page_requests(query, q["limit"], q.get("cursor"))
        return {"items": [self.dump_request(d) for d in docs], "next_cursor": next_cursor}

    @staticmethod
    def dump_request(doc):
        out = request_out.dump(doc)
        out["id"] = doc["_id"]
        return out


def _safe_payload(value, depth=0):
    """The request as received, with keys Mongo can store; nothing else is changed."""
    if depth > 20:
        return str(value)[:1000]
    if isinstance(value, dict):
        return {_safe_key(k): _safe_payload(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe_payload(v, depth + 1) for v in value]
    return value

