"""What the telephony service does with call events, apart from how it is called.

One call record per (provider, call_id). Every event is folded into it with operators that
commute ($setOnInsert, $min/$max, fill-if-missing), and the state only moves up
ringing(1) < answered(2) < ended(3) through a conditional update: the one event that wins a
transition is the one that announces it. So repeats, late and reordered events never
downgrade or double a call, and a queue ringing several agents ends as one missed call.
Writes return (result, events); the entrypoint dispatches events after the write."""
import functools
import re

from marshmallow import fields

from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.fields import UtcDateTime
from crm_common.messaging.events import envelope
from crm_common.ids import new_id
from crm_common.phones import normalize_phone
from crm_common.timeutil import as_utc, parse_iso, to_iso, utcnow
from crm_common.validation import load
from contracts import telephony as schemas
from services.telephony import directory, recordings
from services.telephony.providers import is_extension

SERVICE = "telephony"
RANK = {"ringing": 1, "answered": 2, "ended": 3}
STATE_OF = {0: None, 1: "ringing", 2: "answered", 3: "ended"}
OWN_TIME = {"call_started": "started_at", "call_answered": "answered_at",
            "call_ended": "ended_at", "call_missed": "ended_at"}
_LEG_KEY = re.compile(r"[^A-Za-z0-9_-]")

canonical_in = schemas.CanonicalEvent()
provider_in = schemas.ProviderEvent()
call_out = schemas.CallOut()
list_query = schemas.CallListQuery()
click_in = schemas.ClickToCallIn()
report_query = schemas.CallsReportQuery()


def transition_basis(doc):
    """The stored fields a transition's outcome is computed from (None matches missing)."""
    return {"answered_at": doc.get("answered_at"), "direction": doc.get("direction")}


def _stored(doc, path):
    """The value at a dotted path of the record (None when missing)."""
    value = doc
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def changes_anything(doc, facts):
    """Whether writing these facts ({"sets", "mins", "maxs"}, paths allowed) would change
    the stored record at all (updated_at aside)."""
    for path, value in facts["sets"].items():
        if path != "updated_at" and _stored(doc, path) != value:
            return True
    for path, value in facts["mins"].items():
        stored = _stored(doc, path)
        if stored is None or value < stored:
            return True
    for path, value in facts["maxs"].items():
        stored = _stored(doc, path)
        if stored is None or value > stored:
            return True
    return False


def derived_times(doc):
    """Talk time and duration from the timestamps, when the provider did not give them."""
    sets = {}
    if doc.get("ended_at") and doc.get("answered_at") and doc.get("talk_s") is None:
        sets["talk_s"] = max(0, int((doc["ended_at"] - doc["answered_at"]).total_seconds()))
    elif doc.get("outcome") == "answered" and doc.get("talk_s") is None and doc.get("duration_s") is not None:
        sets["talk_s"] = doc["duration_s"]
    if doc.get("ended_at") and doc.get("duration_s") is None and doc.get("started_at"):
        sets["duration_s"] = max(0, int((doc["ended_at"] - doc["started_at"]).total_seconds()))
    if doc.get("state") == "ended" and doc.get("outcome") != "answered":
        sets["talk_s"] = 0
    return sets


def _dumper(schema):
    """A function that dumps a document as `schema.dump` does (missing keys left out),
    compiled once from the schema's fields: a call is dumped for every answer and every
    event, and marshmallow's generic walk cost about as much CPU as the rest of the
    ringing answer. tests/test_telephony_units.py checks both give the same."""
    plan = [(field.attribute or name, field.data_key or name, _converter(field))
            for name, field in schema.fields.items()]

    def dump(doc):
        out = {}
        for attribute, key, convert in plan:
            if attribute in doc:
                value = doc[attribute]
                out[key] = None if value is None else convert(value)
        return out
    return dump


def _converter(field):
    if isinstance(field, fields.List):
        inner = _converter(field.inner)
        return lambda values: [None if v is None else inner(v) for v in values]
    if isinstance(field, fields.Nested):
        return _dumper(field.schema)
    for kind, convert in ((UtcDateTime, to_iso), (fields.Boolean, bool), (fields.Integer, int),
                          (fields.String, str), (fields.Dict, dict)):
        if type(field) is kind:
            return convert
    raise TypeError(f"no fast dump for a {type(field).__name__}")


_dump_call_out = _dumper(call_out)
# every key of CallOut is in the answer: a missing list is [], anything else null
_CALL_DEFAULTS = {field.data_key or name: [] if isinstance(field, fields.List) else None
                  for name, field in call_out.fields.items()}


def dump_call(doc):
    legs = [{**leg, "state": STATE_OF.get(leg.get("rank", 0))}
            for leg in sorted((doc.get("legs") or {}).values(),
                              key=lambda leg: (leg.get("started_at") is None,
                                               leg.get("started_at") or 0, leg["leg_id"]))]
    out = {**_CALL_DEFAULTS, **_dump_call_out({**doc, "legs": legs})}
    if doc.get("originate"):
        out["originate"] = {k: to_iso(v) for k, v in doc["originate"].items()}
    out["id"] = doc["_id"]
    return out


@functools.lru_cache(maxsize=4096)
def _parsed_phone(text, region):
    """(E.164 or None, valid) of a number: parsing costs ~0.3 ms of CPU, and every event of
    a call names the company's own line and usually the same caller again."""
    parsed = normalize_phone(text, region)
    return parsed["e164"], bool(parsed["valid"])


def contact_name(contact):
    name = " ".join(x for x in (contact.get("first_name"), contact.get("last_name")) if x)
    return name or None


class Calls:
    def __init__(self, store, caller, settings, contacts, region):
        self.store = store
        self.caller = caller
        self.settings = settings
        self.contacts = contacts  # RPC proxy of the contacts service
        self.region = region
        self._dumped = (None, None)  # (doc, its dump): an answer and its event share one

    def _dump(self, doc):
        if self._dumped[0] is not doc:
            self._dumped = (doc, dump_call(doc))
        return self._dumped[1]

    # ingest
    def ingest(self, payload):
        return self._fold(load(canonical_in, payload))

    def ingest_provider(self, adapter, payload):
        """A provider payload: every canonical event it maps to, folded in order; the
        answer of the last one (the one about the call as it is now)."""
        answer, events = None, []
        for wire in adapter.to_canonical(payload, self.settings):
            answer, new = self._fold(load(provider_in, wire))
            events += new
        return answer, events

    def _fold(self, ev):
        key = f"{ev['provider']}:{ev['event_id']}"
        now = utcnow()
        at = as_utc(ev.get("occurred_at") or now)
        # Mongo keeps milliseconds: the record inserted here equals the one read back
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        state = ev["state"]
        leg_only = bool(ev.get("leg_id")) and state == "ended"
        frm, to = self._number(ev.get("from_")), self._number(ev.get("to"))
        agent = self._agent(ev.get("agent_id"), ev.get("extension"))

        # a call's first event, a call-level ringing, is written whole by one insert, so the
        # hot path (a PBX waiting for the routing answer) skips the merge and the transition
        first_ringing = state == "ringing" and not ev.get("leg_id")
        direction = ev.get("direction")
        base = {"_id": new_id(), "provider": ev["provider"], "call_id": ev["call_id"],
                "direction": direction, "from": frm, "to": to,
                "number": self._external(direction, frm, to),
                "rank": 1 if first_ringing else 0, "state": "ringing" if first_ringing else None,
                "legs": {}, "contact_id": None,
                "contact_name": None, "owner_id": None, "agent_id": None, "extension": None,
                "outcome": None, "missed": False, "called_back": None, "lead_created": False,
                # no answered_at yet: $min against a stored null would keep the null
                "started_at": at, "created_at": now, "updated_at": now,
                # the event that created the record: its repeat is known without call_events
                "first_event": key}
        found = None  # (contact or None,) once the caller was looked up for this event
        if first_ringing:
            if agent:
                base.update({"agent_id": agent["id"], "extension": agent["extension"]})
            # usually a new call: look the caller up first, so one insert writes the record
            # with its contact (a lead for an unknown caller is made after the insert)
            found = self._prefill_contact(base, direction)
        doc, created = self.store.upsert_call(ev["provider"], ev["call_id"], base,
                                              likely_new=first_ringing)
        if not created and ((doc.get("first_event") == key and not self._lookup_due(doc))
                            or self.store.event_seen(key)):
            return self._answer(doc, duplicate=True), []

        # facts that do not depend on order: fill what is missing, keep extremes
        sets, mins, maxs = {"updated_at": now}, {"started_at": at}, {}
        for field, value in (("direction", ev.get("direction")), ("from", frm), ("to", to)):
            if value and not doc.get(field):
                sets[field] = value
        for field in ("recording_url", "recording_id", "hangup_cause", "duration_s", "talk_s"):
            if ev.get(field) is not None and (field != "hangup_cause" or not leg_only):
                sets[field] = ev[field]
        if ev.get("recording_url") and ev["recording_url"] != doc.get("recording_url"):
            # fetched by the timer, never here (services/telephony/recordings.py)
            sets.update(recordings.pending_sets(now))
        direction = sets.get("direction") or doc.get("direction")
        number = self._external(direction, sets.get("from") or doc.get("from"),
                                sets.get("to") or doc.get("to"))
        if number and not doc.get("number"):
            sets["number"] = number
        # an unknown extension never replaces a known agent
        if agent and (agent["id"] or not doc.get("agent_id")) and (
                state == "answered" or not doc.get("agent_id")):
            sets.update({"agent_id": agent["id"], "extension": agent["extension"]})
        if state == "answered":
            mins["answered_at"] = at
        leg = self._leg(ev, agent)
        if leg:
            key_path = f"legs.{leg['key']}"
            sets.update({f"{key_path}.leg_id": leg["leg_id"]})
            for field in ("extension", "agent_id"):
                if leg[field]:
                    sets[f"{key_path}.{field}"] = leg[field]
            maxs[f"{key_path}.rank"] = RANK[state] if state in RANK else 0
            mins[f"{key_path}.started_at"] = at
            if state == "answered":
                mins[f"{key_path}.answered_at"] = at
            if state == "ended":
                maxs[f"{key_path}.ended_at"] = at
                sets[f"{key_path}.outcome"] = ev.get("outcome") or "no_answer"
        facts = {"sets": sets, "mins": mins, "maxs": maxs}
        rank = RANK.get(state, 0)
        if leg_only or state == "update":
            rank = 0
        answer_extra = {"contact": found[0]} if found else {}
        # the usual next event of a known call (answered, ended, in order, caller already
        # looked up): facts, transition and derived times in one conditional write
        if (rank and not created and doc.get("rank", 0) < rank
                and not self._lookup_due({**doc, **sets}, direction)):
            moved = self._fold_and_move(doc, facts, state, rank, ev, at)
            if moved is not None:
                doc, events = self._announce_move(moved, state, [])
                self.store.remember_event(key, doc["_id"])
                return self._answer(doc, **answer_extra), events
        # only what changes the record is written (an agent leg's BridgeEnter after its
        # DialEnd, a PBX repeating a fact under another event id: no write, no event)
        new_facts = changes_anything(doc, facts)
        if new_facts:
            doc = self.store.update_call(doc["_id"], **facts)

        events = []
        if self._lookup_due(doc, direction):
            doc, answer_extra = self._identify(doc, direction, found)
        if created:
            events.append(self._event("call_started", doc))

        # the state transition, won by exactly one event
        if rank:
            doc, events = self._transition(doc, state, rank, ev, at, events)

        if new_facts and not events and doc.get("rank", 0) >= RANK["ended"]:
            # facts of an ended call without a move (a CDR's talk time, a recording): its
            # readers' copies (the search index) follow. A live call's facts (its agents'
            # legs ringing, answered, hung up) ride on its next transition's event, which
            # carries the whole call: every call ends, and each event costs every reader
            # of the bus (search, automation, notifications) a few ms of CPU.
            events.append(self._event("call_updated", doc, event_id=new_id()))
        if not created:  # the creating event is remembered by the record (first_event)
            self.store.remember_event(key, doc["_id"])
        return self._answer(doc, **answer_extra), events

    @staticmethod
    def _transition_changes(doc, state, rank, ev, at):
        changes = {"rank": rank, "state": state}
        if state == "ended":
            outcome = ev.get("outcome") or ("answered" if doc.get("answered_at") else "no_answer")
            missed = (doc.get("direction") or "inbound") == "inbound" and outcome != "answered"
            changes.update({"outcome": outcome, "missed": missed,
                            "called_back": False if missed else None, "ended_at": at})
        return changes

    def _fold_and_move(self, doc, facts, state, rank, ev, at):
        """The event's facts and its transition in one write, computed from `doc` as read,
        and applied only if the fields they were computed from are still as read (else
        None: the caller takes the two-step path, which reads the record in between)."""
        sets, mins = facts["sets"], facts["mins"]
        view = {**doc, **{k: v for k, v in sets.items() if "." not in k}}
        view["started_at"] = min(doc["started_at"], at)
        if "answered_at" in mins:
            view["answered_at"] = min(doc.get("answered_at") or at, at)
        changes = self._transition_changes(view, state, rank, ev, at)
        view.update(changes)
        changes.update(derived_times(view))
        unchanged = {**transition_basis(doc), "started_at": doc["started_at"],
                     "talk_s": doc.get("talk_s"), "duration_s": doc.get("duration_s")}
        return self.store.update_call(doc["_id"], {**sets, **changes}, mins, facts["maxs"],
                                      rank_below=rank, unchanged=unchanged)

    def _transition(self, doc, state, rank, ev, at, events):
        """The move to `state`, computed from `doc` and written only while the fields it
        was computed from are unchanged: an event that read the record before another one
        landed (e.g. "ended" racing "answered") reads it again instead of writing a wrong
        outcome."""
        for attempt in range(5):
            if doc.get("rank", 0) >= rank:
                return doc, events  # already there or beyond (a repeat, or a late event)
            changes = self._transition_changes(doc, state, rank, ev, at)
            # these fields only fill once or move one way: this converges
            unchanged = transition_basis(doc) if attempt < 4 else None
            moved = self.store.update_call(doc["_id"], changes, rank_below=rank,
                                           unchanged=unchanged)
            if moved is not None:
                return self._announce_move(self._derive(moved), state, events)
            doc = self.store.get_call(doc["_id"])
        return doc, events

    def _announce_move(self, doc, state, events):
        """What the event that won a transition does and announces."""
        if state == "answered":
            doc = self._on_answered(doc)
            events.append(self._event("call_answered", doc, contacted=True))
        elif state == "ended":
            if doc["outcome"] == "answered":
                doc = self._on_answered(doc)
            events.append(self._event("call_ended", doc, contacted=doc["outcome"] == "answered"))
            if doc["missed"]:
                events.append(self._event("call_missed", doc))
        return doc, events

    def _derive(self, doc):
        sets = derived_times(doc)
        return self.store.update_call(doc["_id"], sets) if sets else doc

    def _on_answered(self, doc):
        """A real conversation: earlier missed calls from the number are called back, and a
        lead we created for an unknown caller goes to the agent who answered (if so set)."""
        if doc.get("number"):
            self.store.mark_called_back(doc["number"], doc["started_at"], doc["_id"], utcnow())
        if (doc.get("lead_created") and not doc.get("owner_id") and doc.get("agent_id")
                and self.settings.lead_owner == "answering_agent"):
            self.contacts.update_contact(doc["contact_id"], {"owner_id": doc["agent_id"]})
            doc = self.store.update_call(doc["_id"], {"owner_id": doc["agent_id"]})
        return doc

    # caller lookup and leads
    def _prefill_contact(self, base, direction):
        """Before a new call's insert: the caller's contact into `base` (looked_up), or
        None when it is left to _identify (an unknown caller who may become a lead)."""
        number = base["number"]
        if not number or direction == "internal":
            return None
        if number in self._own_numbers():
            base["looked_up"] = True
            return (None,)
        contact = self._lookup(number)
        if contact is not None or not self._lead_wanted(base, direction):
            base.update(self._contact_fields(contact, created=False))
        return (contact,)

    def _identify(self, doc, direction, found=None):
        """The caller's contact onto the record (`found`: the lookup already made for this
        event); an unknown valid inbound caller becomes a lead, once per call (claim)."""
        if doc["number"] in self._own_numbers():
            return self.store.update_call(doc["_id"], {"looked_up": True}), {}
        contact = found[0] if found is not None else self._lookup(doc["number"])
        created = False
        if contact is None and self._lead_wanted(doc, direction):
            if self.store.claim(doc["_id"], "lead_claimed"):
                contact, created = self._create_lead(doc), True
        doc = self.store.update_call(doc["_id"], self._contact_fields(contact, created))
        return doc, {"contact": contact}

    @staticmethod
    def _lookup_due(doc, direction=None):
        direction = direction or doc.get("direction")
        return bool(doc.get("number")) and not doc.get("looked_up") and direction != "internal"

    def _lookup(self, number):
        """The caller's contact: telephony's own copy first (no RPC on the ringing path),
        else contacts (a number the copy does not know yet)."""
        found = directory.lookup(self.store, number)
        if found is not None:
            return found
        found = self.contacts.lookup({"phone": number})["items"]
        return found[0] if found else None

    def _lead_wanted(self, doc, direction):
        valid = (doc.get("from") or {}).get("valid")
        return direction in (None, "inbound") and bool(valid) and self.settings.create_leads

    @staticmethod
    def _contact_fields(contact, created):
        sets = {"looked_up": True}
        if contact:
            sets.update({"contact_id": contact["id"], "contact_name": contact_name(contact),
                         "owner_id": contact.get("owner_id"), "lead_created": created})
        return sets

    def _create_lead(self, doc):
        owner = None
        if self.settings.lead_owner == "round_robin":
            users = self.store.round_robin_users()
            if users:
                owner = users[(self.store.next_counter("lead_round_robin") - 1) % len(users)]
        payload = {"phones": [{"number": doc["number"], "type": "other"}], "source": "phone",
                   "status": "lead", "owner_id": owner}
        try:
            return self.contacts.create_contact(payload, False)
        except Conflict:
            # created meanwhile (another call from the same number): use that one
            return self._lookup(doc["number"])

    def _own_numbers(self):
        return {n for n in (self._number(x).get("e164") for x in self.settings.own_numbers) if n}

    # answers
    def _answer(self, doc, duplicate=False, contact=None):
        owner = self.store.user(doc.get("owner_id"))
        contact_ref = None
        if doc.get("contact_id"):
            contact_ref = {"id": doc["contact_id"], "owner_id": doc.get("owner_id"),
                           "name": contact_name(contact) if contact else doc.get("contact_name")}
        route_to = None
        if owner and owner.get("extension") and owner.get("active", True):
            route_to = owner["extension"]
        return {"call": self._dump(doc), "contact": contact_ref,
                "owner": {"id": owner["_id"], "name": owner.get("name"),
                          "extension": owner.get("extension")} if owner else None,
                "route_to": route_to, "duplicate": duplicate}

    def _event(self, event_type, doc, contacted=False, event_id=None):
        call = self._dump(doc)
        other = (call["from"] if doc.get("direction") != "outbound" else call["to"]) or {}
        who = doc.get("contact_name") or other.get("e164") or other.get("raw") or "unknown number"
        summary = {"call_started": "Call started with {}", "call_answered": "Call answered with {}",
                   "call_ended": "Call ended with {}", "call_missed": "Missed call from {}",
                   "call_updated": "Call with {} updated"}[event_type]
        data = {"call": call, "contact_id": doc.get("contact_id"), "agent_id": doc.get("agent_id"),
                "owner_id": doc.get("owner_id"), "direction": doc.get("direction"),
                "from": (call["from"] or {}).get("e164") or (call["from"] or {}).get("raw"),
                "to": (call["to"] or {}).get("e164") or (call["to"] or {}).get("raw"),
                "summary": summary.format(who), "ref": {"type": "call", "id": doc["_id"]}}
        if event_type == "call_ended":
            data["summary"] += f" ({doc.get('outcome')}, {doc.get('talk_s') or 0} s)"
        if event_type == "call_missed":
            data["agent_ids"] = sorted({leg["agent_id"] for leg in (doc.get("legs") or {}).values()
                                        if leg.get("agent_id")})
            data["responsible_id"] = self._responsible(doc)
        if contacted:
            data["contacted_at"] = to_iso(doc.get("answered_at") or doc.get("ended_at") or utcnow())
        # one id per call and type: a downstream handler dedupes a re-announcement
        out = envelope(SERVICE, event_type, data, event_id=event_id or f"{doc['_id']}:{event_type}")
        # the call's own time (a timeline shows when it rang, not when the webhook came)
        # (call_updated: now, when the facts came)
        own = (doc.get(OWN_TIME[event_type]) or doc.get("started_at")) if event_type in OWN_TIME else None
        if own:
            out["occurred_at"] = to_iso(own)
        return out

    def _responsible(self, doc):
        """The called line's responsible user, else the default one (None: nobody set)."""
        line = (doc.get("to") or {}).get("e164")
        for number, user_id in self.settings.line_responsible:
            if line and (self._number(number) or {}).get("e164") == line:
                return user_id
        return self.settings.default_responsible_id or None

    # helpers
    def _number(self, raw):
        if not raw:
            return None
        text = str(raw).strip()
        if is_extension(text, self.settings):
            return {"raw": text, "e164": None, "valid": False, "extension": True}
        e164, valid = _parsed_phone(text, self.region)
        return {"raw": text, "e164": e164, "valid": valid, "extension": False}

    @staticmethod
    def _external(direction, frm, to):
        side = to if direction == "outbound" else frm
        return (side or {}).get("e164")

    def _agent(self, agent_id, extension):
        if agent_id:
            user = self.store.user(agent_id)
            return {"id": agent_id, "extension": extension or (user or {}).get("extension")}
        user = self.store.user_by_extension(extension)
        if user:
            return {"id": user["_id"], "extension": extension}
        return {"id": None, "extension": extension} if extension else None

    @staticmethod
    def _leg(ev, agent):
        leg_id = ev.get("leg_id") or ev.get("extension") or ev.get("agent_id")
        if not leg_id:
            return None
        return {"key": _LEG_KEY.sub("_", leg_id)[:100], "leg_id": leg_id,
                "extension": (agent or {}).get("extension"), "agent_id": (agent or {}).get("id")}

    # users
    def user_upserted(self, event):
        user = event["data"]["user"]
        self.store.upsert_user({"_id": user["id"], "extension": user.get("extension") or None,
                                "name": user.get("name"), "role": user.get("role"),
                                "active": user.get("active", True)},
                               parse_iso(event["occurred_at"]))


class CallLog:
    """Reading the call log and reports; click-to-call records."""

    def __init__(self, calls):
        self.calls = calls
        self.store = calls.store
        self.caller = calls.caller

    def _visible(self):
        return self.caller.owner_filter("agent_id", "owner_id")

    def get(self, call_id):
        doc = self.store.get_call(call_id, self._visible())
        if not doc:
            raise NotFound("Call not found", {"id": call_id})
        return dump_call(doc)

    def list(self, params):
        q = load(list_query, params)
        filters = {key: q[key] for key in ("contact_id", "agent_id", "direction", "outcome",
                                            "missed", "called_back") if q.get(key) is not None}
        if q.get("phone"):
            number = self.calls._number(q["phone"]) or {}
            filters["number"] = number.get("e164") or q["phone"]
        query = self.store.call_filter(filters, q.get("from_"), q.get("to"), self._visible())
        docs, next_cursor = self.store.page_calls(query, q["limit"], q.get("cursor"))
        out = {"items": [dump_call(d) for d in docs], "next_cursor": next_cursor}
        if q["include_total"]:
            out["total"] = self.store.count_calls(query)
        return out

    def report(self, params):
        q = load(report_query, params)
        rows, totals = [], {"key": None, "calls": 0, "answered": 0, "missed": 0, "talk_s": 0}
        report = self.store.report(q.get("from_"), q.get("to"), self._visible(), q["group_by"])
        for row in report["rows"]:
            item = {"key": row["_id"], "calls": row["calls"], "answered": row["answered"],
                    "missed": row["missed"], "talk_s": row["talk_s"],
                    "avg_talk_s": round(row["talk_s"] / row["answered"], 1) if row["answered"] else None}
            rows.append(item)
            for field in ("calls", "answered", "missed", "talk_s"):
                totals[field] += item[field]
        totals["avg_talk_s"] = (round(totals["talk_s"] / totals["answered"], 1)
                                if totals["answered"] else None)
        return {"group_by": q["group_by"], "from": to_iso(q.get("from_")), "to": to_iso(q.get("to")),
                "rows": rows, "totals": totals,
                "missed_not_called_back": report["missed_not_called_back"]}

    # click-to-call
    def new_origination(self, payload, adapter_name):
        data = load(click_in, payload)
        agent_id = data.get("agent_id") or self.caller.user_id
        # the assignment rule (docs/auth.md): an agent calls as themselves, a manager as
        # someone of their team; the call is then visible to that agent
        self.caller.check_assign(agent_id, "agent_id")
        user = self.store.user(agent_id)
        if not user or not user.get("extension"):
            raise ValidationFailed("Invalid input", {"fields": {"agent_id": [
                "No agent with a phone extension (set agent_id, or sign in as one)."]}})
        to = self.calls._number(data["to"]) or {}
        if not to.get("e164"):
            raise ValidationFailed("Invalid input", {"fields": {"to": ["Not a phone number."]}})
        contact_id, contact = data.get("contact_id"), None
        if contact_id:  # one the caller sees (asked with the caller's visibility)
            try:
                contact = self.calls.contacts.get_contact(contact_id)
            except NotFound:
                raise ValidationFailed("Invalid input", {"fields": {"contact_id": [
                    "Unknown contact."]}})
        else:
            found = self.calls.contacts.lookup({"phone": to["e164"]})["items"]
            contact = found[0] if found else None
            contact_id = contact["id"] if contact else None
        override = data.get("override_reason")
        if contact and contact.get("do_not_contact") and not override:
            raise Conflict("The contact does not want to be contacted (do_not_contact); "
                           "send override_reason to call anyway",
                           {"reason": "do_not_contact", "contact_id": contact_id})
        now = utcnow()
        call_id = new_id()
        doc = {"_id": call_id, "provider": "click_to_call", "call_id": call_id,
               "direction": "outbound", "from": self.calls._number(user["extension"]), "to": to,
               "number": to["e164"], "rank": 0, "state": None, "legs": {},
               "contact_id": contact_id, "contact_name": contact_name(contact) if contact else None,
               "owner_id": contact.get("owner_id") if contact else None,
               "agent_id": agent_id, "extension": user["extension"], "outcome": None,
               "missed": False, "called_back": None, "lead_created": False,
               "started_at": now, "answered_at": None, "ended_at": None,
               "originate": {"adapter": adapter_name, "status": "requesting",
                             "requested_by": self.caller.user_id, "requested_at": now,
                             **({"override_reason": override} if contact and contact.get(
                                 "do_not_contact") else {})},
               "created_at": now, "updated_at": now}
        job = {"call_id": call_id, "agent_id": agent_id, "extension": user["extension"],
               "to": to["e164"], "caller_id": self.calls.settings.caller_id or None,
               "callee_name": doc["contact_name"]}
        return doc, job

    def record_origination(self, doc):
        """Stored once the PBX took the request (a refused request records nothing)."""
        self.store.insert_call(doc)

    def originate_result(self, call_id, result):
        """What the PBX said; a failed origination ends the record (it never rang)."""
        sets = {f"originate.{k}": v for k, v in result.items() if v is not None}
        sets["originate.updated_at"] = sets["updated_at"] = utcnow()
        doc = self.store.update_call(call_id, sets)
        if result["status"] in ("failed", "busy", "no_answer"):
            doc = self.store.update_call(call_id, {
                "rank": 3, "state": "ended", "outcome": result["status"],
                "ended_at": utcnow(), "talk_s": 0}, rank_below=3) or doc
        elif result["status"] == "answered":
            doc = self.store.update_call(call_id, {"rank": 1, "state": "ringing"},
                                         rank_below=1) or doc
        return dump_call(doc)
