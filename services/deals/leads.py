"""Inbound requests (contacts.lead_captured) become deals: record the lead, join the
contact's open deal in the route's pipeline or open one, choose the owner, announce
deals.lead_routed. The contract is docs/leads.md.

Idempotent on the request id, and safe to cut anywhere: the lead record (_id = request id)
is written first, then the decision (deal id, owner, reason) is fixed on it once, then the
deal is created under that fixed id (or the request pushed onto the joined deal once), and
the events carry ids derived from the request id. A redelivery replays the same steps
against the stored decision: no second deal, no second round-robin turn, the same events."""
import logging
import time
from datetime import timedelta

from crm_common.messaging.events import envelope
from crm_common.ids import new_id
from crm_common.timeutil import as_utc, parse_iso, to_iso, utcnow
from services.deals.domain import (first_open_stage, lead_summary, least_loaded,
                                   round_robin_pick, rule_candidates, stage_of)

log = logging.getLogger(__name__)

KEEP_REQUESTS = 50  # the deal shows its last 50 requests
# the utm_campaign of an automation campaign's links ("campaign:<id>", its `source`)
CAMPAIGN_SOURCE = "campaign:"
CLAIM_WAIT_STEPS, CLAIM_WAIT_SECONDS = 50, 0.1  # a racing lead's deal appears within ms
CLAIM_STALE = timedelta(minutes=2)


def routed_event_id(request_id):
    return f"routed:{request_id}"


def deal_event_id(request_id):
    return f"lead-deal:{request_id}"


class LeadRouter:
    def __init__(self, deals):
        self.deals = deals  # operations.Deals acting as the service itself (no caller)
        self.store = deals.store

    def capture(self, data):
        """lead_captured data -> the events to announce (deal_created when a deal was
        opened, and lead_routed), the same ones on every delivery of the request."""
        request_id = data["request_id"]
        now = utcnow()
        lead = self.store.record_lead(self._record(data, now))
        if not lead.get("deal_id"):
            lead = self.store.decide_lead(request_id, self._decide(data, lead, now))
        source = lead["source"]
        self.store.register_lead_source(source, now, auto=True)  # unknown source: registered
        request = {"request_id": request_id, "received_at": lead["received_at"],
                   "channel": lead["channel"], "source": source, "summary": data.get("summary")}
        events = []
        if lead["deal_created"]:
            deal, pipeline = self._open_deal(lead, data, request, now)
            result = self.deals.dump_deal(deal, pipeline, now)
            created = self.deals._deal_event("deal_created", result, f"Deal created: {deal['title']}",
                                             pipeline_id=deal["pipeline_id"], stage_id=deal["stage_id"],
                                             request_id=request_id)
            # the same id on every delivery: consumers dedupe the re-announcement
            events.append({**created, "event_id": deal_event_id(request_id)})
        else:
            self.store.add_deal_request(lead["deal_id"], request, KEEP_REQUESTS, now)
        self.store.mark_lead_routed(request_id, now)
        events.append(self._routed_event(lead, data))
        return events

    # the lead record: what the sources report counts
    def _record(self, data, now):
        received_at = parse_iso(data["received_at"]) if data.get("received_at") else now
        channel = data.get("channel") or "other"
        utm = data.get("utm") or {}
        source = (data.get("source") or channel).strip()[:50] or channel
        if str(utm.get("campaign") or "").startswith(CAMPAIGN_SOURCE):
            source = utm["campaign"][:50]  # a link of an automation campaign: its lead source
        return {"_id": data["request_id"], "source": source,
                "channel": channel, "form_id": data.get("form_id"),
                "route_name": data.get("route_name"), "received_at": received_at,
                "contact_id": data["contact_id"], "contact_created": bool(data.get("contact_created")),
                "utm": {k: utm.get(k) for k in ("source", "medium", "campaign")},
                "referrer": data.get("referrer"), "deal_id": None, "deal_created": None,
                "pipeline_id": None, "stage_id": None, "owner_id": None, "owner_reason": None,
                "recorded_at": now, "routed_at": None}

    def _decide(self, data, lead, now):
        """Which deal (joined or new, with its id fixed now) and which owner, and why."""
        pipeline = self._route_pipeline(data.get("pipeline_id"))
        open_deals = self.store.open_deal_docs(data["contact_id"], pipeline["_id"])
        joined = open_deals[0] if open_deals else None
        deal_id = None
        if not joined:
            deal_id, joined = self._claim(data["contact_id"], pipeline["_id"], lead["_id"], now)
        owner_id, reason = self._owner(data, joined, lead)
        if joined:
            deal_id, stage_id = joined["_id"], joined["stage_id"]
        else:
            stage = stage_of(pipeline, data.get("stage_id")) if data.get("stage_id") else None
            if not stage or stage["kind"] != "open":
                stage = first_open_stage(pipeline)  # none given, or no longer an open stage
            stage_id = stage["id"]
        return {"deal_id": deal_id, "deal_created": joined is None, "pipeline_id": pipeline["_id"],
                "stage_id": stage_id, "owner_id": owner_id, "owner_reason": reason,
                "decided_at": now}

    def _claim(self, contact_id, pipeline_id, request_id, now):
        """(id of the deal this lead opens, None) or (None, the open deal another lead of
        the same contact is opening right now: joined)."""
        key = f"{contact_id}:{pipeline_id}"
        deal_id = new_id()
        claim = self.store.claim_new_deal(key, deal_id, request_id, now)
        for _ in range(CLAIM_WAIT_STEPS):
            if claim["deal_id"] == deal_id or claim["request_id"] == request_id:
                return claim["deal_id"], None  # ours (also: our own earlier, cut-short try)
            other = self.store.deal_by_id(claim["deal_id"])
            if other is None and now - as_utc(claim["at"]) < CLAIM_STALE:
                time.sleep(CLAIM_WAIT_SECONDS)  # claimed, not created yet: it comes in ms
                claim = self.store.lead_claims_get(key)
                continue
            if other is None:  # a claim whose lead never created its deal: taken over
                claim = self.store.claim_new_deal(key, deal_id, request_id, now, replacing=claim["deal_id"])
                continue
            if other.get("status") == "open" and other.get("deleted_at") is None \
                    and other.get("pipeline_id") == pipeline_id and other.get("contact_id") == contact_id:
                return None, other
            # that deal was closed, deleted or re-pointed since: this lead opens the next one
            claim = self.store.claim_new_deal(key, deal_id, request_id, now, replacing=claim["deal_id"])
        raise RuntimeError(f"deal of {key} still being opened by another lead; retried later")

    def _route_pipeline(self, pipeline_id):
        """The route's pipeline; the default one when none is set or it was deleted since
        (a lead is never dropped for a stale route)."""
        doc = self.store.get_pipeline(pipeline_id) if pipeline_id else None
        if pipeline_id and not doc:
            log.warning("lead for unknown pipeline %s goes to the default pipeline", pipeline_id)
        return doc or self.store.default_pipeline()

    def _owner(self, data, joined, lead):
        if data.get("contact_owner_id"):
            return data["contact_owner_id"], "contact_owner"
        if joined and joined.get("owner_id"):
            return joined["owner_id"], "open_deal_owner"
        rule = data.get("owner_rule") or {}
        candidates = rule_candidates(rule)
        kind = rule.get("kind")
        if not candidates or kind not in ("fixed", "round_robin", "least_open_deals"):
            return None, "no_rule"
        if kind == "fixed":
            return candidates[0], "fixed_user"
        if kind == "round_robin":
            key = lead.get("form_id") or f"source:{lead['source']}"
            return round_robin_pick(candidates, self.store.next_in_rotation(key)), "round_robin"
        return least_loaded(candidates, self.store.open_deal_counts(candidates)), "least_open_deals"

    def _open_deal(self, lead, data, request, now):
        """The deal under the decided id: created once (a redelivery finds it)."""
        existing = self.store.deal_by_id(lead["deal_id"])
        pipeline = self.store.get_pipeline(lead["pipeline_id"]) or self.store.default_pipeline()
        if existing:
            return existing, pipeline
        stage = stage_of(pipeline, lead["stage_id"]) or first_open_stage(pipeline)
        title = (data.get("deal_title") or f"Lead from {lead['source']}").strip()[:200] or "Lead"
        currency = self.store.get_lists().get("default_currency") or "EUR"
        text = data.get("text")
        doc = {"_id": lead["deal_id"], "title": title, "amount": 0, "currency": currency,
               "pipeline_id": pipeline["_id"], "stage_id": stage["id"],
               "probability": stage["probability"], "status": "open",
               "contact_id": lead["contact_id"], "company_id": None, "owner_id": lead["owner_id"],
               "source": lead["source"], "expected_close_date": None, "lost_reason": None,
               "lost_note": None, "notes": text[:10000] if text else None,
               "closed_at": None, "stage_entered_at": now, "created_at": now, "updated_at": now,
               "deleted_at": None, "created_by": None, "version": 1, "possible_duplicates": [],
               "lead_request_id": lead["_id"], "requests": [request],
               "last_request_at": request["received_at"]}
        # a redelivery that finds the deal created leaves this number unused (a spare bit)
        doc["funnel_no"] = self.store.next_funnel_no(doc["pipeline_id"], doc["owner_id"])
        doc["last_history"] = self.deals._history_entry(doc, None, now, None)
        if not self.store.insert_deal_once(doc):
            doc = self.store.deal_by_id(lead["deal_id"])  # a concurrent delivery created it
        self.deals.record_history(doc["last_history"])  # counted once: by its inserter
        return doc, pipeline

    def _routed_event(self, lead, data):
        deal = self.store.deal_by_id(lead["deal_id"]) or {}
        title = deal.get("title") or data.get("deal_title") or "?"
        summary = lead_summary(lead["source"], lead["channel"], lead["deal_created"], title,
                               lead["owner_id"], lead["owner_reason"])
        payload = {
            "request_id": lead["_id"], "contact_id": lead["contact_id"],
            "contact_name": data.get("contact_name"), "deal_id": lead["deal_id"],
            "deal_created": lead["deal_created"], "deal_title": title,
            "pipeline_id": lead["pipeline_id"], "stage_id": lead["stage_id"],
            "owner_id": lead["owner_id"], "owner_reason": lead["owner_reason"],
            "source": lead["source"], "channel": lead["channel"],
            "received_at": to_iso(lead["received_at"]), "form_id": lead.get("form_id"),
            "route_name": lead.get("route_name"), "first_task": data.get("first_task"),
            "summary": summary, "actor_id": None, "ref": {"type": "deal", "id": lead["deal_id"]}}
        return envelope("deals", "lead_routed", payload, event_id=routed_event_id(lead["_id"]))
