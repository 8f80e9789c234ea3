"""What each action does. Every action gets a key unique to (run, action index) and is
written so that running it twice with that key has the effect of once: tasks by
`source_key`, messages and invoices by `idempotency_key`, webhooks by an Idempotency-Key
header, moves and field changes by comparing first."""
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from datetime import timedelta
from urllib.parse import urlparse

import requests
from jinja2 import TemplateError

from crm_common.errors import Conflict, CrmError, Timeout, Unavailable
from crm_common.messaging.events import envelope
from services.automation import engine

log = logging.getLogger(__name__)


def _index(key):
    """The action's index in its run (the last part of its key; the run key itself may
    hold dots, which a field name cannot)."""
    return key.rsplit(":", 1)[-1]


class Retry(Exception):
    """Worth another attempt later (a service down, a webhook answering 5xx)."""


class Failed(Exception):
    """Will not work by retrying (a bad template value, a record gone)."""


RETRYABLE = (Unavailable, Timeout, ConnectionError, OSError)

# conversations' refusals that are the client's choice or data (not sent, by design);
# the others (no mailbox or channel set up, WhatsApp's window closed) are ours to fix
CLIENT_REFUSALS = ("do_not_contact", "opted_out", "no_address")


def refusal(exc):
    """conversations' 409 on a send -> ("skipped" | "failed", {"reason", "message"})."""
    reason = (exc.details or {}).get("reason") or "refused"
    return ("skipped" if reason in CLIENT_REFUSALS else "failed"), {
        "reason": reason, "message": str(exc.message)[:300]}


class Actions:
    def __init__(self, rpcs, store, settings, clock, dispatch):
        self.rpcs = rpcs          # {service: lambda context: proxy}
        self.store = store
        self.settings = settings
        self.clock = clock
        self.dispatch = dispatch

    def run(self, action, ctx, run, key):
        """-> (status, detail): done | skipped; raises Retry or Failed."""
        context = {"request_id": f"automation:{run['_id']}"[:200],
                   "automation_depth": run.get("depth", 0) + 1,
                   "automation_rule": run["rule_id"]}
        method = getattr(self, f"_{action['type']}")
        try:
            return method(action, ctx, run, key, context)
        except RETRYABLE as exc:
            raise Retry(f"{type(exc).__name__}: {exc}")
        except TemplateError as exc:
            raise Failed(f"template: {exc}")
        except CrmError as exc:
            raise Failed(f"{exc.code}: {exc}")
        except (Retry, Failed):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or an odd answer: this run fails, logged
            log.exception("automation action %s of run %s failed", action["type"], run["_id"])
            raise Failed(f"internal error: {type(exc).__name__}")

    def _call(self, service, context):
        return self.rpcs[service](context)

    def _text(self, source, ctx, run):
        return engine.render(source, self._template_ctx(ctx, run)) if source else source

    @staticmethod
    def _template_ctx(ctx, run):
        out = {k: v for k, v in ctx.items() if isinstance(v, dict)}
        out.setdefault("event", ctx)
        out["rule"] = {"id": run["rule_id"], "name": run.get("rule_name")}
        out.setdefault("unsubscribe_url", "")
        return out

    @staticmethod
    def _record_id(ctx, kind):
        record = ctx.get(kind)
        if isinstance(record, dict) and record.get("id"):
            return record["id"]
        return ctx.get(f"{kind}_id")

    # --- each action ------------------------------------------------------------------

    def _notify_user(self, action, ctx, run, key, context):
        user = action.get("user_id") or engine.owner_of(ctx)
        if not user:
            return "skipped", {"reason": "no user: the record has no owner"}
        title = self._text(action["message"], ctx, run)
        self.dispatch("rule_notice", envelope("automation", "rule_notice", {
            "user_id": user, "rule_id": run["rule_id"], "title": title,
            "record_type": run.get("record_type"), "record_id": run.get("record_id"),
            "summary": title, "ref": {"type": "automation_rule", "id": run["rule_id"]}},
            event_id=f"notice:{key}"))
        return "done", {"user_id": user}

    def _create_task(self, action, ctx, run, key, context):
        assignee = action.get("assignee_id") or engine.owner_of(ctx)
        start = run.get("occurred_at") if action.get("due_from") == "event" else None
        payload = {"title": self._text(action["title"], ctx, run)[:200],
                   "kind": action.get("kind") or "todo",
                   "priority": action.get("priority") or "normal",
                   "assignee_id": assignee,
                   "due_at": engine.iso((start or self.clock.now()) + timedelta(
                       minutes=action.get("due_in_minutes") or 0)),
                   "contact_id": self._record_id(ctx, "contact"),
                   "deal_id": self._record_id(ctx, "deal")}
        if action.get("description"):
            payload["description"] = self._text(action["description"], ctx, run)
        if action.get("reminders"):
            payload["reminders"] = action["reminders"]
        source = {"type": "automation", "id": run["rule_id"], "run_id": run["_id"]}
        if action.get("stage_rule"):
            source = {"type": "stage_rule", "id": run["rule_id"], "event_id": run["occurrence"]}
        task = self._call("tasks", context).create_task(
            {k: v for k, v in payload.items() if v is not None}, source_key=f"automation:{key}",
            source=source, creator_id=ctx.get("actor_id"))
        return "done", {"task_id": task["id"], "assignee_id": task.get("assignee_id")}

    def _move_deal(self, action, ctx, run, key, context):
        deal_id = self._record_id(ctx, "deal")
        if not deal_id:
            return "skipped", {"reason": "no deal"}
        deals = self._call("deals", context)
        deal = deals.get_deal(deal_id)
        if deal.get("stage_id") == action["stage_id"]:
            return "skipped", {"reason": "already in that stage", "deal_id": deal_id}
        moved = deals.move_deal(deal_id, {"stage_id": action["stage_id"]})
        return "done", {"deal_id": deal_id, "from_stage_id": deal.get("stage_id"),
                        "to_stage_id": moved.get("stage_id")}

    def _target(self, action, ctx):
        kind = action.get("record") or ("deal" if self._record_id(ctx, "deal") else "contact")
        record_id = self._record_id(ctx, kind)
        if not record_id:
            raise Failed(f"the occurrence has no {kind}")
        return kind, record_id

    def _read(self, kind, record_id, context):
        if kind == "deal":
            return self._call("deals", context).get_deal(record_id)
        return self._call("contacts", context).get_contact(record_id)

    def _write(self, kind, record_id, payload, context):
        if kind == "deal":
            return self._call("deals", context).update_deal(record_id, payload)
        return self._call("contacts", context).update_contact(record_id, payload)

    def _set_field(self, action, ctx, run, key, context):
        kind, record_id = self._target(action, ctx)
        current = self._read(kind, record_id, context)
        value = action.get("value")
        if isinstance(value, str):
            value = self._text(value, ctx, run)
        name, _, sub = action["field"].partition(".")
        if sub:  # custom.<name>: the whole object is written back with that key changed
            merged = dict(current.get(name) or {})
            if merged.get(sub) == value:
                return "skipped", {"reason": "already set"}
            merged[sub] = value
            payload = {name: merged}
        else:
            if current.get(name) == value:
                return "skipped", {"reason": "already set"}
            payload = {name: value}
        self._write(kind, record_id, payload, context)
        return "done", {"record_type": kind, "record_id": record_id, "field": action["field"]}

    def _add_tag(self, action, ctx, run, key, context):
        kind, record_id = self._target(action, ctx)
        current = self._read(kind, record_id, context)
        tags = list(current.get("tags") or [])
        if action["tag"] in tags:
            return "skipped", {"reason": "already tagged"}
        self._write(kind, record_id, {"tags": tags + [action["tag"]]}, context)
        return "done", {"record_type": kind, "record_id": record_id, "tag": action["tag"]}

    def _assign_owner(self, action, ctx, run, key, context):
        kind, record_id = self._target(action, ctx)
        users = action["user_ids"]
        if not users:
            return "skipped", {"reason": "no candidates"}
        done = (run.get("chosen") or {}).get(_index(key))
        if done:  # a retried run gives the same person
            owner = done
        elif action.get("strategy") == "least_loaded":
            owner = min(users, key=lambda u: (self._load(kind, u, context), users.index(u)))
        else:
            owner = users[(self.store.next_turn(f"{run['rule_id']}:{_index(key)}") - 1)
                          % len(users)]
        self.store.update_run(run["_id"], {f"chosen.{_index(key)}": owner})
        current = self._read(kind, record_id, context)
        if current.get("owner_id") == owner:
            return "skipped", {"reason": "already the owner", "owner_id": owner}
        self._write(kind, record_id, {"owner_id": owner}, context)
        return "done", {"record_type": kind, "record_id": record_id, "owner_id": owner}

    def _load(self, kind, user_id, context):
        if kind == "deal":
            page = self._call("deals", context).list_deals(
                {"owner_id": user_id, "status": "open", "limit": 1, "include_total": True})
        else:
            page = self._call("contacts", context).list_contacts(
                {"owner_id": user_id, "limit": 1, "include_total": True})
        return page.get("total") or 0

    def _webhook(self, action, ctx, run, key, context):
        url = action["url"]
        self._check_url(url)
        body = json.dumps({"rule_id": run["rule_id"], "run_id": run["_id"],
                           "record_type": run.get("record_type"),
                           "record_id": run.get("record_id"), "data": ctx},
                          separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if action.get("secret"):
            mac = hmac.new(action["secret"].encode(), body, hashlib.sha256).hexdigest()
            headers["X-CRM-Signature"] = f"sha256={mac}"
        try:
            response = requests.post(url, data=body, headers=headers, allow_redirects=False,
                                     timeout=self.settings.webhook_timeout_s)
        except requests.RequestException as exc:
            raise Retry(f"webhook: {type(exc).__name__}")
        if response.status_code >= 500 or response.status_code == 429:
            raise Retry(f"webhook answered {response.status_code}")
        if response.status_code >= 400:
            raise Failed(f"webhook answered {response.status_code}")
        return "done", {"status": response.status_code}

    def _check_url(self, url):
        host = urlparse(url).hostname or ""
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except socket.gaierror:
            raise Retry(f"webhook: cannot resolve {host}")
        forbidden = self.settings.webhook_forbidden()
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if any(ip in net for net in forbidden):
                raise Failed(f"webhook: {host} is a forbidden address")

    def _send_message(self, action, ctx, run, key, context):
        contact_id = self._record_id(ctx, "contact")
        if not contact_id:
            return "skipped", {"reason": "no contact"}
        if not isinstance(ctx.get("contact"), dict):
            # e.g. a deal's contact whose copy has not reached `records` yet: read it, so
            # the client's own message never fails on {{ contact.<field> }}
            ctx = {**ctx, "contact": self._call("contacts", context).get_contact(contact_id)}
        try:
            sent = self._call("conversations", context).send_to_contact(
                contact_id, action["channel"], self._text(action["body"], ctx, run),
                subject=self._text(action.get("subject"), ctx, run),
                deal_id=self._record_id(ctx, "deal"), idempotency_key=key)
        except Conflict as exc:
            state, detail = refusal(exc)
            if state == "failed":
                raise Failed(f"{detail['reason']}: {exc.message}")
            return state, {**detail, "contact_id": contact_id}
        return "done", {"contact_id": contact_id, "channel": action["channel"],
                        "message": (sent or {}).get("id") if isinstance(sent, dict) else sent}

    def _create_invoice(self, action, ctx, run, key, context):
        deal_id = self._record_id(ctx, "deal")
        if not deal_id:
            return "skipped", {"reason": "no deal"}
        invoices = self._call("invoices", context)
        done = (run.get("chosen") or {}).get(_index(key))
        invoice_id = done or invoices.create_invoice_from_deal(
            deal_id, action.get("options") or None)["id"]
        # remembered at once: a run taken over later sends, never makes a second invoice
        self.store.update_run(run["_id"], {f"chosen.{_index(key)}": invoice_id})
        if action.get("send"):
            invoices.send_invoice(invoice_id)
        return "done", {"deal_id": deal_id, "invoice_id": invoice_id,
                        "sent": bool(action.get("send"))}

