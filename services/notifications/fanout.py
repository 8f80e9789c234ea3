"""From an event to messages: who, on which channels, rendered in their language, when
(quiet hours). Each message is written once per (event, recipient, channel) by a unique key,
so a redelivered event or a restart half-way through adds nothing; in-app notifications are
written at once, the others go to the deliveries outbox for the sending worker."""
import json
from datetime import date

from contracts.notifications import DIGEST_REPORTS
from crm_common.timeutil import to_iso
from services.notifications.channels.inapp import inbox_entry
from services.notifications.quiet import deliver_after
from services.notifications.rules import (DEFAULT_CHANNELS, PERSON_EVENTS, URGENT,
                                          WEBHOOK_EVENTS, recipients)
from services.notifications.templates_engine import render


def preferences_with_defaults(user_id, stored):
    stored = stored or {}
    channels = {kind: list(chs) for kind, chs in DEFAULT_CHANNELS.items()}
    channels.update(stored.get("channels") or {})
    return {"user_id": user_id, "channels": channels,
            "quiet_hours": stored.get("quiet_hours"), "timezone": stored.get("timezone"),
            "language": stored.get("language"),
            "birthday_greetings": bool(stored.get("birthday_greetings", False)),
            "task_reminders": sorted(set(stored.get("task_reminders", [15]))),
            "digest": {"frequency": "off", "hour": 8, "weekday": 0,
                       "reports": list(DIGEST_REPORTS), **(stored.get("digest") or {})},
            "updated_at": stored.get("updated_at")}


def public_user(doc, user_id):
    user = dict(doc or {})
    user["id"] = user.pop("_id", user_id)
    user.pop("event_at", None)
    return user


def address(channel, user):
    return {"email": user.get("email"), "sms": user.get("phone"),
            "telegram": user.get("telegram_chat_id")}.get(channel)


def webhook_body(event):
    """The exact bytes signed and sent, stored so every retry sends the same body."""
    return json.dumps({"event_id": event["event_id"], "type": event["type"],
                       "occurred_at": event["occurred_at"], "data": event["data"]},
                      separators=(",", ":"), ensure_ascii=False, default=str)


class Fanout:
    def __init__(self, store, now, pipeline=None):
        self.inbox = []
        self.store = store
        self.now = now
        self.pipeline = pipeline  # group commit + claimed when stored (dependencies.Pipeline)

    def handle(self, event):
        """Every message an event causes. Returns (inbox entries, deliveries) written."""
        source, kind, data = event["source"], event["type"], event["data"]
        inbox, outbox = [], []
        if (source, kind) in PERSON_EVENTS:
            ids = recipients(kind, data, self._user_lookup())
            users = self.store.get_users(ids + [i for i in (data.get("owner_id"),
                                                            data.get("assignee_id")) if i])
            prefs = self.store.get_many_preferences(ids)
            context = {"data": data, "event": event,
                       "owner": public_user(users.get(data.get("owner_id")), data.get("owner_id")),
                       "assignee": public_user(users.get(data.get("assignee_id")),
                                               data.get("assignee_id"))}
            for user_id in ids:
                self._for_user(event, kind, user_id, users.get(user_id), prefs.get(user_id),
                               context, inbox, outbox)
        if (source, kind) in WEBHOOK_EVENTS:
            hooks = self.store.webhooks_for(kind)
            if hooks:
                body = webhook_body(event)
                now = self.now()
                for hook in hooks:
                    outbox.append(self._delivery(event, kind, "webhook", f"webhook:{hook['_id']}",
                                                 None, now, webhook_id=hook["_id"], body=body))
        self.inbox = inbox  # announced by the service (notification_created)
        return self._write(inbox, outbox)

    def birthday_run(self, day, page_of):
        """The daily birthday run for `day`: the contacts born on it, read page by page
        (`page_of(month_day, cursor)`: contacts' RPC `birthdays`), greeted."""
        contacts = []
        for md in month_days(day):
            cursor = None
            while True:
                found = page_of(md, cursor)
                contacts += found["items"]
                cursor = found.get("next_cursor")
                if not cursor:
                    break
        inbox, deliveries = self.birthdays(day, contacts)
        return {"contacts": len(contacts), "inbox": inbox, "deliveries": deliveries}

    def birthdays(self, day, contacts):
        """The daily birthday list to each owner. Greeting the contacts themselves is
        automation's rule `default-birthday-greeting` (the owners' old `birthday_greetings`
        preference was copied into it once)."""
        event = {"event_id": f"birthdays:{day.isoformat()}", "type": "birthday_list",
                 "source": "notifications", "occurred_at": to_iso(self.now()), "data": {}}
        by_owner = {}
        for contact in contacts:
            if contact.get("owner_id"):
                by_owner.setdefault(contact["owner_id"], []).append(contact)
        users = self.store.get_users(by_owner)
        prefs = self.store.get_many_preferences(by_owner)
        inbox, outbox = [], []
        for owner_id, own in by_owner.items():
            listed = [{k: c.get(k) for k in ("id", "first_name", "last_name", "emails")}
                      for c in own]
            owner_event = {**event, "data": {"contacts": listed}}
            context = {"data": owner_event["data"], "event": owner_event}
            self._for_user(owner_event, "birthday_list", owner_id, users.get(owner_id),
                           prefs.get(owner_id), context, inbox, outbox)
        return self._write(inbox, outbox)

    def digest(self, user_id, user_doc, pref_doc, key, data, repeat=None):
        """A report digest to one user on their `report_digest` channels: once per period
        `key` (the delivery's unique key); `repeat` (a time) makes an asked-for one new."""
        event_id = f"digest:{user_id}:{key}" + (f":{repeat}" if repeat else "")
        event = {"event_id": event_id, "type": "report_digest", "source": "notifications",
                 "occurred_at": to_iso(self.now()), "data": data}
        inbox, outbox = [], []
        self._for_user(event, "report_digest", user_id, user_doc, pref_doc,
                       {"data": data, "event": event}, inbox, outbox, urgent=True)
        self._write(inbox, outbox)
        return sorted({d["channel"] for d in outbox} | ({"inapp"} if inbox else set()))

    # helpers
    def _user_lookup(self):
        cache = {}

        def lookup(user_id):
            if user_id not in cache:
                cache[user_id] = self.store.get_user(user_id)
            return cache[user_id]
        return lookup

    def _for_user(self, event, kind, user_id, user_doc, pref_doc, context, inbox, outbox,
                  urgent=None):
        user = public_user(user_doc, user_id)
        if user.get("active") is False:
            return
        prefs = preferences_with_defaults(user_id, pref_doc)
        channels = prefs["channels"].get(kind, DEFAULT_CHANNELS.get(kind, ["inapp"]))
        if not channels:
            return
        rendered = render(kind, prefs["language"] or user.get("language"),
                          {**context, "user": user})
        now = self.now()
        urgent = kind in URGENT if urgent is None else urgent
        if "inapp" in channels:
            entry = inbox_entry(event, user_id, rendered, urgent)
            entry["created_at"] = now
            inbox.append(entry)
        when = now if urgent else deliver_after(now, prefs["quiet_hours"],
                                                prefs["timezone"] or user.get("timezone"))
        for channel in channels:
            if channel == "inapp":
                continue
            outbox.append(self._delivery(event, kind, channel, f"user:{user_id}",
                                         address(channel, user), when, rendered=rendered))

    def _delivery(self, event, kind, channel, recipient, target, when, rendered=None,
                  webhook_id=None, body=None, contact_id=None):
        now = self.now()
        doc = {"key": f"{event['event_id']}:{recipient}:{channel}", "event_id": event["event_id"],
               "event_type": kind, "channel": channel, "recipient": recipient, "target": target,
               "status": "pending", "attempts": 0, "redeliveries": 0, "due_at": when,
               "next_attempt_at": when, "last_error": None, "response": None,
               "created_at": now, "updated_at": now}
        if rendered:
            doc.update({k: rendered[k] for k in ("subject", "short", "text", "html", "language")})
        if webhook_id:
            doc.update({"webhook_id": webhook_id, "body": body})
        if contact_id:
            doc["contact_id"] = contact_id
        return doc

    def _write(self, inbox, outbox):
        if self.pipeline is not None:
            return self.pipeline.write(inbox, outbox, self.now)
        return self.store.add_inbox(inbox), self.store.add_deliveries(outbox)


def month_days(day):
    """Month-days whose birthdays fall on `day`: 29 February counts on 28 February in
    years without it."""
    md = day.strftime("%m-%d")
    if md == "02-28":
        try:
            date(day.year, 2, 29)
        except ValueError:
            return [md, "02-29"]
    return [md]
