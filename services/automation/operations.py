"""Rules: saving them (checked against the event contracts), firing them on events and on the
timer, the run log and the dry run. Storage in store.py, pure logic in engine.py, the
actions' effects in actions.py."""
import logging
import threading
from datetime import timedelta

from contracts import automation as schemas
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.messaging.events import envelope
from crm_common.timeutil import parse_iso, to_iso, utcnow
from crm_common.validation import load
from services.automation import engine
from services.automation.actions import Failed, Retry

log = logging.getLogger(__name__)
SERVICE = "automation"

rule_in = schemas.RuleIn()
rule_out = schemas.RuleOut()
rule_list_query = schemas.RuleListQuery()
run_out = schemas.RunOut()
run_list_query = schemas.RunListQuery()
dry_run_in = schemas.DryRunIn()
dry_run_out = schemas.DryRunOut()


# The rules every company starts with, stored once at first start and disabled until it
# enables them (after its own edits: channel, text, conditions); one deleted stays deleted.
DEFAULTS_SEEDED = "default_rules_seeded"
BIRTHDAY_RULE = "default-birthday-greeting"
GREETINGS_COPIED = "birthday_greetings_copied"  # notifications' old greeting switch, copied
DEFAULT_RULES = {
    BIRTHDAY_RULE: {
        "name": "Birthday greeting", "enabled": False,
        "trigger": {"type": "date_field", "record": "contact", "field": "birthday", "days": 0,
                    "when": "before", "annual": True},
        "actions": [{"type": "send_message", "channel": "email",
                     "subject": "Happy birthday, {{ contact.first_name or '' }}!",
                     "body": "Dear {{ contact.first_name or 'customer' }},\n"
                             "all of us wish you a happy birthday!"}]},
}


def dump_rule(doc):
    return with_every_key(rule_out, rule_out.dump(doc), doc["_id"])


def dump_run(doc):
    out = with_every_key(run_out, run_out.dump(doc), doc["_id"])
    return out


class RuleCache:
    """This process's enabled rules by trigger, reloaded when the stored rules version moves
    (read once per event: a rule saved before an event is handled applies to it). Rules
    with a top-level `eq`/`in` condition are indexed by its value, so an event meets only
    the rules that can match it (and every rule without such a condition)."""

    def __init__(self):
        self.version = None
        self.by_event = {}
        self.timed = []
        self.named = frozenset()  # event types any rule (enabled or not) triggers on
        self.lock = threading.Lock()

    def get(self, store):
        version = store.rules_version()
        if version != self.version:
            with self.lock:
                if version != self.version:
                    by_event, timed = {}, []
                    for rule in store.enabled_rules():
                        if rule["trigger"]["type"] != "event":
                            timed.append(rule)
                            continue
                        entry = by_event.setdefault(rule["trigger"]["event"], ([], {}))
                        key = engine.index_key(rule.get("conditions"))
                        if key is None:
                            entry[0].append(rule)
                            continue
                        by_value = entry[1].setdefault(key[0], {})
                        for value in key[1]:
                            by_value.setdefault(value, []).append(rule)
                    named = frozenset(store.rule_event_types())
                    self.by_event, self.timed, self.named = by_event, timed, named
                    self.version = version
        return self

    def keeps(self, type_key, sources):
        """Whether an event of this type is kept for dry runs: its source is one whose
        events are always kept, or some rule names it."""
        return type_key.split(".", 1)[0] in sources or type_key in self.named

    def rules_for(self, type_key, data):
        free, indexed = self.by_event.get(type_key, ((), {}))
        found = list(free)
        for path, by_value in indexed.items():
            value = engine.get_path(data, path)
            if isinstance(value, (str, int, float, bool)):
                found += by_value.get(value, ())
        return found


CACHE = RuleCache()


def flush_intake(store, settings, items):
    """One write for what a batch of events leaves behind: the events a dry run may use
    (`RuleCache.keeps`), each record's newest copy (one per record however many events
    carried it) and the contacts' touches. Reads the rules version once for the batch, so
    a rule saved before the events were handled applies to them. Then, in one query, the
    copies of the related records (a deal's contact) that the events meeting a rule do not
    carry, for their contexts. -> (the rule cache, {record key: copy})."""
    cache = CACHE.get(store)
    events = [i["event"] for i in items
              if cache.keeps(i["event"]["type_key"], settings.keep_events_of)]
    copies, touches = {}, {}
    for item in items:
        for key, doc in item["records"].items():
            if "touch" in doc:
                touches[key] = max(touches.get(key, doc["touch"]), doc["touch"])
            elif key not in copies or doc["at"] >= copies[key]["at"]:
                copies[key] = doc
    for key in list(touches):
        if key in copies:  # folded into the copy written anyway
            seen = copies[key].get("quiet_since")
            when = touches.pop(key)
            copies[key] = dict(copies[key], quiet_since=max(seen, when) if seen else when)
    store.keep_intake(kept_batch(events, utcnow()), copies, touches)
    wanted = set()
    for item in items:
        data = item["event"]["data"]
        if cache.rules_for(item["event"]["type_key"], data):
            wanted.update(related_keys(data))
    related = store.get_records(sorted(wanted)) if wanted else {}
    return cache, related


def kept_batch(events, now):
    """The events of one batch kept for dry runs as ONE document (an insert per
    event was most of the database's cost per event): the events, their types and the
    latest time among them, which a dry run's query goes by (`store.events_since`)."""
    if not events:
        return None
    return {"_id": new_id(), "types": sorted({e["type_key"] for e in events}),
            "last": max(e["occurred_at"] for e in events), "n": len(events),
            "stored_at": now, "events": events}


def related_keys(data):
    """The `records` keys of the contact and deal an event names without carrying them."""
    _, ids = engine.records_of(data)
    return [f"{kind}:{ids[kind]}" for kind in ("contact", "deal")
            if not isinstance(data.get(kind), dict) and ids.get(kind)]


class Automation:
    def __init__(self, store, caller, clock, settings, actions, dispatch):
        self.store = store
        self.caller = caller
        self.clock = clock
        self.settings = settings
        self.actions = actions
        self.dispatch = dispatch

    # --- rules API ------------------------------------------------------------------------

    def _check_manage(self, rule=None):
        role = self.caller.role
        if role in (None, "admin"):
            return
        if role != "manager":
            raise Forbidden("Only admins and managers manage automation rules")
        if rule is not None and rule.get("team") != self.caller.team:
            raise NotFound("Rule not found", {"id": rule["_id"]})

    def _validate(self, data):
        """What the schema cannot say: fields against the trigger's event contract, the
        actions, their templates, a loop; a manager's people within their team."""
        roots = engine.roots_of_trigger(data["trigger"])
        if data["trigger"]["type"] == "date_field":
            problem = engine.check_path(f"{data['trigger']['record']}.{data['trigger']['field']}",
                                        roots)
            if problem:
                raise engine.invalid("trigger.field", problem)
        engine.check_conditions(data.get("conditions"), roots)
        engine.check_actions(data["actions"], roots, engine.record_kind_of_trigger(data["trigger"]))
        engine.check_self_loop(data)
        if self.caller.role == "manager":
            for i, action in enumerate(data["actions"]):
                for person in [action.get("assignee_id"), action.get("user_id"),
                               *(action.get("user_ids") or [])]:
                    if person:
                        self.caller.check_assign(person, f"actions.{i}")

    def create_rule(self, payload):
        self._check_manage()
        data = load(rule_in, payload, json_body=True)
        self._validate(data)
        now = self.clock.now()
        doc = {"_id": new_id(), **data, "created_by": self.caller.user_id, "created_at": now,
               "updated_at": now, "version": 1, "scan_mark": now,
               "team": self.caller.team if self.caller.role == "manager" else None,
               "team_members": (sorted(set(self.caller.person_ids() or []))
                                if self.caller.role == "manager" else None)}
        self.store.insert_rule(doc)
        return dump_rule(doc)

    def seed_defaults(self):
        """DEFAULT_RULES stored once (safe on every replica at once) -> how many now."""
        if self.store.flag(DEFAULTS_SEEDED):
            return 0
        seeded = 0
        for rule_id, payload in DEFAULT_RULES.items():
            data = load(rule_in, payload, json_body=True)
            self._validate(data)
            now = self.clock.now()
            seeded += self.store.insert_rule_once({
                "_id": rule_id, **data, "created_by": None, "created_at": now,
                "updated_at": now, "version": 1, "scan_mark": now, "team": None,
                "team_members": None})
        self.store.set_flag(DEFAULTS_SEEDED)
        return seeded

    def copy_birthday_greetings(self, owners_of):
        """Once: the owners who had notifications greet their contacts (its old preference,
        `owners_of()`) become the birthday rule's audience, the rule enabled, so nobody
        greeted before is forgotten and nobody is greeted twice (notifications no longer
        greets). A rule the company enabled itself already is theirs: left as it is."""
        if self.store.flag(GREETINGS_COPIED):
            return 0
        owners = sorted(set(owners_of() or []))  # notifications down: raises, next tick
        rule = self.store.get_rule(BIRTHDAY_RULE)
        copied = 0
        if owners and rule and not rule.get("enabled"):
            audience = {"field": "contact.owner_id", "op": "in", "value": owners}
            conditions = rule.get("conditions")
            merged = {**rule, "enabled": True,
                      "conditions": {"all": [conditions, audience]} if conditions else audience}
            self._validate(merged)
            now = self.clock.now()
            copied = int(bool(self.store.update_rule(BIRTHDAY_RULE, rule["version"], {
                "enabled": True, "conditions": merged["conditions"], "scan_mark": now,
                "updated_at": now})))
            log.info("birthday greetings of %d owners copied from notifications into rule %s",
                     len(owners), BIRTHDAY_RULE)
        self.store.set_flag(GREETINGS_COPIED)
        return copied

    def get_rule(self, rule_id):
        doc = self.store.get_rule(rule_id)
        if not doc:
            raise NotFound("Rule not found", {"id": rule_id})
        self._check_manage(doc) if self.caller.role == "manager" else None
        return dump_rule(doc)

    def update_rule(self, rule_id, payload):
        self._check_manage()
        current = self.store.get_rule(rule_id)
        if not current:
            raise NotFound("Rule not found", {"id": rule_id})
        self._check_manage(current)
        if current.get("task_rule"):
            raise Conflict("A stage task rule: change it at /task-rules", {"id": rule_id})
        data = load(rule_in, payload, partial=True, json_body=True)
        merged = {**current, **data}
        self._validate(merged)
        now = self.clock.now()
        changes = dict(data, updated_at=now)
        if data.get("enabled") and not current.get("enabled"):
            changes["scan_mark"] = now  # time rules look forward from when they are enabled
        doc = self.store.update_rule(rule_id, current["version"], changes)
        if not doc:
            raise ValidationFailed("The rule changed meanwhile; read it again", {"id": rule_id})
        return dump_rule(doc)

    def delete_rule(self, rule_id):
        current = self.store.get_rule(rule_id)
        if not current:
            raise NotFound("Rule not found", {"id": rule_id})
        self._check_manage(current)
        self.store.delete_rule(rule_id)
        return dump_rule(current)

    def list_rules(self, params):
        query = load(rule_list_query, params)
        where = {}
        if "enabled" in query:
            where["enabled"] = query["enabled"]
        if self.caller.role == "manager":
            where["team"] = self.caller.team
        elif self.caller.role not in (None, "admin"):
            raise Forbidden("Only admins and managers see automation rules")
        docs, cursor = self.store.list_rules(where, query["limit"], query.get("cursor"))
        return {"items": [dump_rule(d) for d in docs], "next_cursor": cursor}

    def triggers(self):
        return {"items": [{"event": name, "description": doc, "fields": list(kinds), "types": kinds}
                          for name, doc, kinds in engine.event_types()]}

    def list_runs(self, rule_id=None, params=None):
        query = load(run_list_query, params or {})
        if rule_id:
            self.get_rule(rule_id)  # 404 / visibility
            where = {"rule_id": rule_id}
        elif query.get("record_type") and query.get("record_id"):
            where = {"record_key": f"{query['record_type']}:{query['record_id']}"}
        else:
            raise ValidationFailed("Give a rule, or record_type and record_id",
                                   {"fields": {"record_id": ["Required with record_type."]}})
        docs, cursor = self.store.list_runs(where, query["limit"], query.get("cursor"))
        if self.caller.role == "manager":
            docs = [d for d in docs if d.get("team") == self.caller.team]
        return {"items": [dump_run(d) for d in docs], "next_cursor": cursor}

    # --- events ---------------------------------------------------------------------------

    def take_in(self, events):
        """Keeps what rules need of a batch of events in one write (each event for dry runs,
        the records' newest copies, see `flush_intake`) -> what `fire` needs of it: the rule
        cache and the related records' copies."""
        items = []
        for event in events:
            data = event["data"]
            occurred = parse_iso(event["occurred_at"])
            items.append({"event": {"_id": event["event_id"],
                                    "type_key": f"{event['source']}.{event['type']}",
                                    "occurred_at": occurred, "data": data},
                          "records": self._records_of(event, data, occurred)})
        return flush_intake(self.store, self.settings, items)

    @staticmethod
    def triggered(event, taken):
        """The enabled rules this event (taken in: `take_in`) triggers."""
        cache, _ = taken
        return cache.rules_for(f"{event['source']}.{event['type']}", event["data"])

    def fire(self, event, depth, taken, rules=None):
        """Runs every enabled rule triggered by the event (taken in already: `take_in`)."""
        data = event["data"]
        rules = self.triggered(event, taken) if rules is None else rules
        if not rules:
            return 0
        occurred = parse_iso(event["occurred_at"])
        ctx = self._context(data, taken[1])
        fired = 0
        for rule in rules:
            kind, record_id = engine.subject_of(data, engine.record_kind_of_trigger(rule["trigger"]))
            fired += self.occur(rule, ctx, kind, record_id, event["event_id"], depth, occurred)
        return fired

    @staticmethod
    def _records_of(event, data, occurred):
        """{record key: newest copy / touch} this event leaves for the time triggers and
        the contexts of later events."""
        out = {}
        whole, ids = engine.records_of(data)
        for kind, record in whole.items():
            if kind not in ("deal", "contact") or not record.get("id"):
                continue
            extra = {"date_keys": engine.date_keys(record)}
            if kind == "contact":
                extra["quiet_since"] = engine.quiet_since(record)
            else:
                extra["stage_since"] = engine.stage_since(record)
            out[f"{kind}:{record['id']}"] = {"kind": kind, "record": record, "at": occurred,
                                             **extra}
        touched = data.get("contacted_at") or (
            occurred if event["type"] in ("call_answered",) else None)
        if touched and ids.get("contact"):
            when = parse_iso(touched) if isinstance(touched, str) else touched
            key = f"contact:{ids['contact']}"
            if key in out:
                seen = out[key].get("quiet_since")
                out[key]["quiet_since"] = max(seen, when) if seen else when
            else:
                out[key] = {"touch": when}
        return out

    def _context(self, data, related=None):
        """The event's data plus the related records' newest copies it does not carry
        (`related`: those read already, by key; else each read here)."""
        ctx = dict(data)
        for key in related_keys(data):
            found = related.get(key) if related is not None else self.store.get_record(key)
            if found:
                ctx[key.split(":", 1)[0]] = found
        return ctx

    def occur(self, rule, ctx, record_type, record_id, occurrence, depth, at=None):
        """One occurrence of a rule's trigger: checked, logged, then run (now or later).
        The run key makes it happen once whatever the replicas and redeliveries."""
        now = self.clock.now()
        run_id = f"{rule['_id']}:{record_type}:{record_id}:{occurrence}"
        base = {"_id": run_id, "rule_id": rule["_id"], "rule_name": rule.get("name"),
                "record_type": record_type, "record_id": record_id,
                "record_key": f"{record_type}:{record_id}", "occurrence": str(occurrence),
                "depth": depth, "team": rule.get("team"), "created_at": now, "updated_at": now,
                "occurred_at": at or now, "actions": []}
        owner = engine.owner_of(ctx)
        if rule.get("team") and owner not in (rule.get("team_members") or []):
            return 0  # a manager's rule acts only on their team's records; not logged
        ok, why = engine.evaluate(rule.get("conditions"), ctx)
        if not ok:
            if rule.get("log_skips", True):
                self.store.claim_run({**base, "state": "skipped", "reason": why})
            return 0
        if depth >= self.settings.loop_limit:
            if self.store.claim_run({**base, "state": "stopped", "reason":
                                     f"loop limit: {depth} automation steps led here "
                                     f"(CRM_AUTOMATION_LOOP_LIMIT={self.settings.loop_limit})"}):
                log.warning("automation loop stopped: rule %s on %s:%s at depth %d",
                            rule["_id"], record_type, record_id, depth)
            return 0
        tz = self._owner_zone(owner, rule)
        due = engine.due_time(now, rule.get("delay"), rule.get("working_hours"), tz)
        delayed = due > now
        run = {**base, "state": "scheduled" if delayed else "running", "ctx": ctx,
               "due_at": due if delayed else None, "rule_actions": rule["actions"],
               "wake_at": due if delayed else now + timedelta(seconds=self.settings.lease_s)}
        if not self.store.claim_run(run):
            return 0
        if not delayed:
            self.execute(run, now)
        return 1

    def _owner_zone(self, owner, rule):
        user = self.store.get_user(owner)
        return (user or {}).get("timezone") or rule.get("timezone")

    # --- running --------------------------------------------------------------------------

    def execute(self, run, now):
        """Runs the actions not yet done, in order. A delayed run first checks that its
        conditions still hold on the records as they are now (else: canceled)."""
        rule = self.store.get_rule(run["rule_id"])
        if rule is None or not rule.get("enabled"):
            return self._finish(run, "canceled", "the rule was deleted or disabled")
        ctx = run.get("ctx") or {}
        if run.get("due_at"):
            ctx = self._refreshed(ctx)
            ok, why = engine.evaluate(rule.get("conditions"), ctx)
            if not ok:
                return self._finish(run, "canceled", f"the conditions stopped holding: {why}")
        results = list(run.get("actions") or [])
        for i, action in enumerate(run.get("rule_actions") or rule["actions"]):
            if i < len(results) and results[i]["status"] in ("done", "skipped"):
                continue
            previous = results[i] if i < len(results) else {"type": action["type"], "attempts": 0}
            attempts = previous.get("attempts", 0) + 1
            key = f"{run['_id']}:{i}"
            try:
                status, detail = self.actions.run(action, ctx, run, key)
                result = {"type": action["type"], "status": status, "detail": detail,
                          "attempts": attempts}
            except Retry as exc:
                result = {"type": action["type"], "status": "retry",
                          "detail": {"error": str(exc)[:500]}, "attempts": attempts}
                self._set_result(run, results, i, result)
                if attempts < self.settings.action_max_attempts:
                    wait = self.settings.retry_backoff_s * (2 ** (attempts - 1))
                    log.warning("automation run %s action %d (%s): %s; retry in %.0f s",
                                run["_id"], i, action["type"], exc, wait)
                    self.store.update_run(run["_id"], {
                        "state": "retry", "actions": results, "updated_at": now,
                        "reason": str(exc)[:500],
                        "wake_at": self.clock.now() + timedelta(seconds=wait)})
                    return "retry"
                result["status"] = "failed"
                self._set_result(run, results, i, result)
                return self._finish(run, "failed", f"action {i} ({action['type']}): {exc}",
                                    results, rule)
            except Failed as exc:
                result = {"type": action["type"], "status": "failed",
                          "detail": {"error": str(exc)[:500]}, "attempts": attempts}
                self._set_result(run, results, i, result)
                return self._finish(run, "failed", f"action {i} ({action['type']}): {exc}",
                                    results, rule)
            self._set_result(run, results, i, result)
            self.store.update_run(run["_id"], {"actions": results, "updated_at": self.clock.now()})
        return self._finish(run, "done", None, results, rule)

    @staticmethod
    def _set_result(run, results, i, result):
        while len(results) <= i:
            results.append({"type": None, "status": "pending", "attempts": 0})
        results[i] = result

    def _refreshed(self, ctx):
        ctx = dict(ctx)
        for kind in ("deal", "contact"):
            record = ctx.get(kind)
            if isinstance(record, dict) and record.get("id"):
                newest = self.store.get_record(f"{kind}:{record['id']}")
                if newest:
                    ctx[kind] = newest
        return ctx

    def _finish(self, run, state, reason, results=None, rule=None):
        changes = {"state": state, "reason": reason, "updated_at": self.clock.now(),
                   "wake_at": None}
        if results is not None:
            changes["actions"] = results
        self.store.update_run(run["_id"], changes)
        if rule is not None and state in ("done", "failed"):
            self.dispatch("rule_fired", envelope(SERVICE, "rule_fired", {
                "rule_id": rule["_id"], "rule_name": rule.get("name"), "run_id": run["_id"],
                "record_type": run.get("record_type"), "record_id": run.get("record_id"),
                "state": state, "depth": run.get("depth", 0),
                "actions": [{"type": r["type"], "status": r["status"]} for r in results or []],
                "summary": f"Rule {rule.get('name')}: {state}",
                "ref": {"type": "automation_rule", "id": rule["_id"]}},
                event_id=f"fired:{run['_id']}"))
        return state

    # --- the timer ------------------------------------------------------------------------

    def tick(self):
        """Due delayed runs and retries (and runs whose process died: their lease ran out),
        then the time triggers. Safe on every replica at once."""
        now = self.clock.now()
        handled = 0
        for run in self.store.due_runs(now, self.settings.batch):
            if self.store.take_run(run, now, self.settings.lease_s):
                try:
                    self.execute(run, now)
                except Exception:  # noqa: BLE001 - one run's trouble never stops the others
                    log.exception("automation run %s failed; its lease brings it back", run["_id"])
                handled += 1
        for rule in CACHE.get(self.store).timed:
            try:
                handled += self.scan_rule(rule, now)
            except Exception:  # noqa: BLE001 - as above, per rule
                log.exception("automation time rule %s scan failed", rule["_id"])
        return handled

    def scan_rule(self, rule, now):
        trigger = rule["trigger"]
        days = timedelta(days=trigger["days"])
        if trigger["type"] == "date_field":
            today = now.date()
            if rule.get("scan_day") == today.isoformat():
                return 0
            key, target = engine.date_target(today, trigger)
            fired = 0
            for doc in self.store.records_by_date_key(key, self.settings.scan_limit):
                fired += self._occur_timed(rule, doc, target.isoformat())
            self.store.advance_scan(rule["_id"], "scan_day", today.isoformat())
            rule["scan_day"] = today.isoformat()
            return fired
        kind, field = ("contact", "quiet_since") if trigger["type"] == "no_contact" \
            else ("deal", "stage_since")
        mark = rule.get("scan_mark") or rule["created_at"]
        low, high = mark - days, now - days
        if high <= low:
            return 0
        docs = self.store.records_between(kind, field, low, high, self.settings.scan_limit)
        fired = 0
        for doc in docs:
            fired += self._occur_timed(rule, doc, to_iso(doc[field]))
        new_mark = now if len(docs) < self.settings.scan_limit else max(d[field] for d in docs) + days
        self.store.advance_scan(rule["_id"], "scan_mark", new_mark)
        rule["scan_mark"] = new_mark
        return fired

    def _occur_timed(self, rule, doc, occurrence):
        record = doc["record"]
        ctx = self._context({doc["kind"]: record})
        return self.occur(rule, ctx, doc["kind"], record["id"], occurrence, 0)

    # --- dry run --------------------------------------------------------------------------

    def dry_run(self, rule_id, payload):
        rule = self.store.get_rule(rule_id)
        if not rule:
            raise NotFound("Rule not found", {"id": rule_id})
        if self.caller.role == "manager":
            self._check_manage(rule)
        params = load(dry_run_in, payload or {}, json_body=True)
        now = self.clock.now()
        since = now - timedelta(days=params["days"])
        items = []
        trigger = rule["trigger"]
        if trigger["type"] == "event":
            kind = engine.record_kind_of_trigger(trigger)
            for event in self.store.events_since(trigger["event"], since, params["limit"]):
                ctx = self._context(event["data"])
                record_type, record_id = engine.subject_of(event["data"], kind)
                items.append(self._would(rule, ctx, record_type, record_id, event["_id"],
                                         to_iso(event["occurred_at"])))
        elif trigger["type"] == "date_field":
            day = since.date()
            while day <= now.date() and len(items) < params["limit"]:
                key, target = engine.date_target(day, trigger)
                for doc in self.store.records_by_date_key(key, params["limit"]):
                    items.append(self._would(rule, self._context({doc["kind"]: doc["record"]}),
                                             doc["kind"], doc["record"]["id"], target.isoformat(),
                                             day.isoformat()))
                day += timedelta(days=1)
        else:
            kind, field = ("contact", "quiet_since") if trigger["type"] == "no_contact" \
                else ("deal", "stage_since")
            days = timedelta(days=trigger["days"])
            for doc in self.store.records_between(kind, field, since - days, now - days,
                                                  params["limit"]):
                items.append(self._would(rule, self._context({kind: doc["record"]}), kind,
                                         doc["record"]["id"], to_iso(doc[field]),
                                         to_iso(doc[field] + days)))
        items = items[:params["limit"]]
        return dry_run_out.dump({"rule_id": rule_id, "since": since, "examined": len(items),
                                 "would_fire": sum(1 for i in items if i["would_fire"]),
                                 "items": items})

    def _would(self, rule, ctx, record_type, record_id, occurrence, at):
        owner = engine.owner_of(ctx)
        if rule.get("team") and owner not in (rule.get("team_members") or []):
            ok, why = False, "the record's owner is outside the rule's team"
        else:
            ok, why = engine.evaluate(rule.get("conditions"), ctx)
        return {"record_type": record_type, "record_id": record_id, "occurrence": str(occurrence),
                "at": at, "would_fire": ok, "reason": why}

