"""Segments (saved contact filters, evaluated when used) and campaigns (a template sent to a
segment, throttled, consent checked when each message goes). Each recipient is a `sends`
document keyed (campaign, contact): queued once however often the queuing is retried, and
sent with that key as the idempotency key of conversations' send_to_contact."""
import logging
from datetime import timedelta

import eventlet
from urllib.parse import urlencode

from contracts import automation as schemas
from contracts.contacts import ContactOut
from crm_common.cursors import sign_token, verify_token
from crm_common.errors import BadRequest, Conflict, CrmError, NotFound, Timeout, Unavailable
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.messaging.events import envelope
from crm_common.validation import load
from services.automation import engine
from services.automation.actions import refusal

log = logging.getLogger(__name__)

segment_in = schemas.SegmentIn()
segment_out = schemas.SegmentOut()
campaign_in = schemas.CampaignIn()
campaign_out = schemas.CampaignOut()
send_in = schemas.CampaignSendIn()
page_query = schemas.RuleListQuery()
CONTACT_ROOTS = {"contact": ContactOut()}
PAGE = 10000  # recipients' ids read at once (contacts' export_ids)
INDEX_PAGE = 500  # recipients read at once from the search index (its list's largest page)
CHUNK = 1000  # recipients' ids per stored chunk
# a sending campaign's sends are made this far ahead of their time (and 3 ticks at least):
# queuing stores only the recipients' ids, so 50,000 of them are queued in seconds
AHEAD_S = 30
MAX_ATTEMPTS = 5
SEND_CONCURRENCY = 8  # a tick's sends in flight at once (each waits on conversations)
# a segment's count and a page of 5,000 recipients read a large part of the contacts on
# the database: longer than a plain call (the gateway waits COUNT_TIMEOUT_S + 5 for a count)
COUNT_TIMEOUT_S = 25
PAGE_TIMEOUT_S = 60
COUNTS = ("queued", "delivered", "failed", "skipped", "unsubscribed")


def dump_segment(doc):
    return with_every_key(segment_out, segment_out.dump(doc), doc["_id"])


def source_of(campaign_id):
    """The lead source a campaign is (deals' sources report): a lead arriving with it as
    `utm_campaign` counts for it, and so does the deal it opens."""
    return f"campaign:{campaign_id}"


def dump_campaign(doc):
    doc = dict(doc, counts={k: (doc.get("counts") or {}).get(k, 0) for k in COUNTS},
               source=source_of(doc["_id"]))
    return with_every_key(campaign_out, campaign_out.dump(doc), doc["_id"])


class Campaigns:
    def __init__(self, store, caller, clock, settings, conversations, contacts, dispatch,
                 deals=None, search=None):
        self.deals = deals  # lambda context: proxy
        self.search = search
        self.store = store
        self.caller = caller
        self.clock = clock
        self.settings = settings
        self.conversations = conversations  # lambda context: proxy
        self.contacts = contacts
        self.dispatch = dispatch

    def _check(self):
        if self.caller.role not in (None, "admin", "manager"):
            raise NotFound("Not found")

    def _as_caller(self):
        return {k: v for k, v in self.caller.items() if v is not None}

    # segments
    def create_segment(self, payload):
        self._check()
        data = load(segment_in, payload, json_body=True)  # each filter typed (SegmentFilters)
        # stored as given (the list's own parameters), not as loaded (dates, gathered cf.*)
        data["filters"] = dict(payload["filters"])
        if not data["filters"] and not data["allow_everyone"]:
            raise engine.invalid("filters", "A segment with no filter matches every contact; "
                                            "set allow_everyone to mean it.")
        now = self.clock.now()
        doc = {"_id": new_id(), **data, "created_by": self.caller.user_id, "created_at": now,
               "updated_at": now}
        self.store.insert("segments", doc)
        return dump_segment(doc)

    def get_segment(self, segment_id):
        self._check()
        doc = self.store.get("segments", segment_id)
        if not doc:
            raise NotFound("Segment not found", {"id": segment_id})
        return dump_segment(doc)

    def delete_segment(self, segment_id):
        doc = self.store.get("segments", segment_id)
        if not doc:
            raise NotFound("Segment not found", {"id": segment_id})
        self.store.delete("segments", segment_id)
        return dump_segment(doc)

    def list_segments(self, params):
        self._check()
        query = load(page_query, params)
        docs, cursor = self.store.list_page("segments", query["limit"], query.get("cursor"))
        return {"items": [dump_segment(d) for d in docs], "next_cursor": cursor}

    def count_segment(self, segment_id):
        """Live: the contacts the filters match now (the contacts list's total)."""
        segment = self.get_segment(segment_id)
        params = {**segment["filters"], "limit": 1, "include_total": True}
        page = (self._from_index(self._as_caller(), params, COUNT_TIMEOUT_S)
                if params.get("q") else None)
        if page is None:
            page = self.contacts(self._as_caller(), COUNT_TIMEOUT_S).list_contacts(params)
        return {"id": segment_id, "count": page.get("total") or 0}

    def _from_index(self, context, params, timeout):
        """The contacts list page from the search index, as the gateway's list and export
        ask it when `q` has words (contacts' own list only looks up a phone or an email);
        None while the index is rebuilt or search does not answer (then contacts' list:
        its 503 for words)."""
        if self.search is None:
            return None
        try:
            return self.search(context, timeout).list_records("contact", params)
        except (Unavailable, Timeout):
            return None

    def _matching_ids(self, filters):
        """Every contact id the segment's filters match now: with words in `q` from the
        search index by its keyset pages, else (or while it is rebuilt) by contacts' export
        cursor, ids only (a list page of 500 would re-read the whole segment on SecantusDB)."""
        if filters.get("q"):
            ids, params = [], {**filters, "limit": INDEX_PAGE}
            while True:
                page = self._from_index({}, params, PAGE_TIMEOUT_S)
                if page is None:
                    break
                ids += [c["id"] for c in page["items"]]
                if not page.get("next_cursor"):
                    return ids
                params["cursor"] = page["next_cursor"]
        cursor, ids = None, []
        contacts = self.contacts({}, PAGE_TIMEOUT_S)
        while True:
            page = contacts.export_ids(dict(filters), cursor, PAGE)
            ids += page["ids"]
            cursor = page.get("next_cursor")
            if not cursor:
                return ids

    # campaigns
    def create_campaign(self, payload):
        self._check()
        data = load(campaign_in, payload, json_body=True)
        self.get_segment(data["segment_id"])
        for key in ("subject", "body"):
            if data.get(key):
                engine.check_template(data[key], CONTACT_ROOTS, key)
        if data["channel"] == "email" and "unsubscribe_url" not in data["body"]:
            raise engine.invalid("body", "A marketing e-mail carries {{ unsubscribe_url }}.")
        now = self.clock.now()
        doc = {"_id": new_id(), **data, "status": "draft", "counts": {},
               "created_by": self.caller.user_id, "created_at": now, "updated_at": now}
        self.store.insert("campaigns", doc)
        return dump_campaign(doc)

    def get_campaign(self, campaign_id):
        self._check()
        doc = self.store.get("campaigns", campaign_id)
        if not doc:
            raise NotFound("Campaign not found", {"id": campaign_id})
        return dump_campaign(doc)

    def list_campaigns(self, params):
        self._check()
        query = load(page_query, params)
        docs, cursor = self.store.list_page("campaigns", query["limit"], query.get("cursor"))
        return {"items": [dump_campaign(d) for d in docs], "next_cursor": cursor}

    def send(self, campaign_id, payload):
        self.get_campaign(campaign_id)
        data = load(send_in, payload or {}, json_body=True)
        now = self.clock.now()
        at = data.get("send_at") or now
        doc = self.store.update("campaigns", campaign_id,
                                {"status": "scheduled", "send_at": at, "wake_at": at,
                                 "updated_at": now}, expect={"status": "draft"})
        if not doc:
            raise Conflict("Only a draft campaign can be sent", {"id": campaign_id})
        if at <= now:  # queued now rather than at the timer's next tick (up to 5 s later)
            eventlet.spawn_n(self._queue_now, campaign_id)
        return dump_campaign(doc)

    def _queue_now(self, campaign_id):
        """A campaign sent for now, queued beside the answer; the timer's claim (the same
        compare-and-set) keeps it queued once, and takes it over if this fails."""
        try:
            campaign = self.store.get("campaigns", campaign_id)
            now = self.clock.now()
            if campaign and campaign["status"] == "scheduled" and self.store.take_campaign(
                    campaign, {"status": "queuing", "wake_at": now + timedelta(minutes=5)}):
                self._queue(campaign, now)
        except Exception:  # noqa: BLE001 - left queuing: the timer queues it again
            log.exception("campaign %s not queued at once", campaign_id)

    # the timer
    def tick(self):
        now = self.clock.now()
        handled = 0
        for campaign in self.store.due_campaigns(now):
            if campaign["status"] == "scheduled":
                if self.store.take_campaign(campaign, {"status": "queuing",
                                                       "wake_at": now + timedelta(minutes=5)}):
                    handled += self._queue(campaign, now)
            elif campaign["status"] == "sending":
                if not self.store.take_campaign(campaign, {"wake_at": now + timedelta(seconds=5)}):
                    continue
                if self._make_sends(campaign, now) == "all" and \
                        not self.store.has_pending_sends(campaign["_id"]):
                    if self.store.update("campaigns", campaign["_id"],
                                         {"status": "sent", "wake_at": None},
                                         expect={"status": "sending"}):
                        self._announce(campaign, "campaign_finished")
            elif campaign["status"] == "queuing":  # the queuing replica died: again
                if self.store.take_campaign(campaign, {"wake_at": now + timedelta(minutes=5)}):
                    handled += self._queue(campaign, now)
        taken = self.store.take_sends(self.store.due_sends(now, self.settings.batch), now,
                                      self.settings.lease_s, new_id())
        self._settle(self._send_all(taken, now))
        return handled + len(taken)

    def _send_all(self, sends, now):
        """The sends of one tick: their campaigns, contacts (one call to contacts) and
        opt-outs (one query) read at once, then SEND_CONCURRENCY at a time (each waits on
        conversations). Contacts unreachable: every send retried later. -> their outcomes
        (`_done`, `_retry`; None: left to its lease)."""
        if not sends:
            return []
        campaigns = {i: self.store.get("campaigns", i) for i in {s["campaign_id"] for s in sends}}
        ids = sorted({s["contact_id"] for s in sends})
        try:
            found = self.contacts({}).search_records("contact", ids=ids)["items"]
        except (Unavailable, Timeout) as exc:
            return [self._retry(send, now, exc) for send in sends]
        contacts = {c["id"]: c for c in found if not c.get("deleted")}
        opted = self.store.opted_out_of({f"{s['contact_id']}:{campaigns[s['campaign_id']]['channel']}"
                                         for s in sends})
        pool = eventlet.GreenPool(SEND_CONCURRENCY)
        return list(pool.imap(lambda send: self._send_guarded(
            send, now, campaigns[send["campaign_id"]], contacts.get(send["contact_id"]), opted),
            sends))

    def _send_guarded(self, send, now, campaign, contact, opted):
        try:
            return self._send(send, now, campaign, contact, opted)
        except Exception:  # noqa: BLE001 - its lease runs out and it is taken again
            log.exception("campaign send %s failed", send["_id"])
            return None

    def _settle(self, outcomes):
        """A tick's outcomes stored at once: the sends finished or to retry (one bulk),
        then each campaign's counts (one write per campaign, not three writes per send).
        A crash before this leaves the sends to their lease: sent again with the same
        idempotency key, conversations sends nothing twice, and they are counted then."""
        outcomes = [o for o in outcomes if o is not None]
        finished = [(send["_id"], state, detail) for kind, send, state, detail in outcomes
                    if kind == "done"]
        retries = [(send["_id"], attempts, wake_at) for kind, send, attempts, wake_at in outcomes
                   if kind == "retry"]
        self.store.settle_sends(finished, retries)
        counts = {}
        for kind, send, state, _ in outcomes:
            if kind == "done":
                per = counts.setdefault(send["campaign_id"], {})
                per[state] = per.get(state, 0) + 1
        for campaign_id, per in counts.items():
            self.store.count_campaign_by(campaign_id, per)

    def _queue(self, campaign, now):
        """The segment's contacts now, as queued sends spaced at the campaign's rate."""
        segment = self.store.get("segments", campaign["segment_id"])
        if segment is None:
            self.store.take_campaign(campaign, {"status": "failed", "wake_at": None})
            return 0
        # each contact once, even if it moved between pages
        ids = list(dict.fromkeys(self._matching_ids(segment["filters"])))
        self.store.save_recipients(campaign["_id"], {
            n // CHUNK: ids[n:n + CHUNK] for n in range(0, len(ids), CHUNK)})
        self._register_source(campaign)
        # the sends are made from the stored ids as their time nears (_make_sends): recipient
        # i is due at queued_at + i * 60 / rate
        campaign = self.store.update("campaigns", campaign["_id"], {
            "status": "sending", "counts.queued": len(ids), "recipients": len(ids),
            "made": 0, "queued_at": now, "wake_at": now + timedelta(seconds=1)})
        if campaign is None:  # deleted meanwhile
            return 0
        self._announce({**campaign, "counts": {"queued": len(ids)}}, "campaign_started")
        self._make_sends(campaign, now)
        return len(ids)

    def _make_sends(self, campaign, now):
        """The queued sends of the recipients due within AHEAD_S, made from the stored ids
        (each keyed (campaign, contact): made twice after a crash, still one); "all" once
        every recipient has its send. A campaign queued before the chunks (no
        `recipients`) has every send already."""
        total, made = campaign.get("recipients"), campaign.get("made", 0)
        if total is None or made >= total:
            return "all"
        rate = campaign.get("rate_per_minute") or self.settings.campaign_rate_per_minute
        spacing = 60.0 / rate
        ahead = (now - campaign["queued_at"]).total_seconds() + max(
            AHEAD_S, 3 * self.settings.tick_seconds)
        upto = min(total, max(made, int(ahead / spacing) + 1))
        if upto == made:
            return "some"
        chunks = self.store.recipient_chunks(
            campaign["_id"], range(made // CHUNK, (upto - 1) // CHUNK + 1))
        docs = []
        for index in range(made, upto):
            contact_id = chunks[index // CHUNK][index % CHUNK]
            docs.append({"_id": f"{campaign['_id']}:{contact_id}",
                         "campaign_id": campaign["_id"], "contact_id": contact_id,
                         "state": "queued", "attempts": 0,
                         "wake_at": campaign["queued_at"] + timedelta(seconds=index * spacing)})
        self.store.insert_sends(docs)
        self.store.update("campaigns", campaign["_id"], {"made": upto}, expect={"made": made})
        return "all" if upto >= total else "some"

    def _register_source(self, campaign):
        """The campaign in deals' lead-source registry (not offered for new deals), so the
        sources report names it and its costs can be entered there."""
        if self.deals is None:
            return
        try:
            self.deals({}).create_lead_source({
                "name": source_of(campaign["_id"]), "active": False,
                "description": f"Campaign: {campaign.get('name') or campaign['_id']}"[:2000]})
        except Conflict:
            pass  # registered already (a retried start)
        except CrmError as exc:  # the report still counts its leads by name
            log.warning("campaign %s not registered as a lead source: %s", campaign["_id"], exc)

    def _send(self, send, now, campaign, contact, opted):
        """One recipient: `contact` as contacts has it now (None: deleted), `opted` the
        `<contact>:<channel>` opt-outs of the tick's recipients."""
        if contact is None:
            return self._done(send, "skipped", {"reason": "contact deleted"})
        channel = campaign["channel"]
        if contact.get("do_not_contact"):
            return self._done(send, "skipped", {"reason": "do_not_contact"})
        if f"{contact['id']}:{channel}" in opted:
            return self._done(send, "skipped", {"reason": "unsubscribed"})
        if channel == "email" and not contact.get("emails") or \
                channel == "sms" and not contact.get("phones"):
            return self._done(send, "skipped", {"reason": f"no {channel} address"})
        token = sign_token({"c": campaign["_id"], "k": contact["id"], "ch": channel})
        ctx = {"contact": contact, "unsubscribe_url": f"{self.settings.public_base_url}"
                                                      f"/api/v1/u/{token}",
               "campaign_source": source_of(campaign["_id"]),
               "utm_query": urlencode({"utm_source": "crm", "utm_medium": channel,
                                       "utm_campaign": source_of(campaign["_id"])})}
        try:
            body = engine.render(campaign["body"], ctx)
            subject = engine.render(campaign["subject"], ctx) if campaign.get("subject") else None
        except Exception as exc:  # noqa: BLE001 - a value missing for this contact
            return self._done(send, "failed", {"reason": f"template: {exc}"[:300]})
        try:
            self.conversations({"automation_campaign": campaign["_id"]}).send_to_contact(
                contact["id"], channel, body, subject=subject, idempotency_key=send["_id"])
        except (Unavailable, Timeout, OSError) as exc:
            return self._retry(send, now, exc)
        except Conflict as exc:  # conversations refused it: consent, or nothing to send from
            return self._done(send, *refusal(exc))
        except CrmError as exc:
            return self._done(send, "failed", {"reason": f"{exc.code}: {exc}"[:300]})
        return self._done(send, "delivered", None)

    def _retry(self, send, now, exc):
        """The outcome of a send to try again later (the last attempt: failed)."""
        attempts = send.get("attempts", 0) + 1
        if attempts >= MAX_ATTEMPTS:
            return self._done(send, "failed", {"reason": f"{type(exc).__name__}: {exc}"[:300]})
        return ("retry", send, attempts, now + timedelta(
            seconds=self.settings.retry_backoff_s * 2 ** (attempts - 1)))

    @staticmethod
    def _done(send, state, detail):
        """The outcome of a finished send (stored with the tick's others by `_settle`)."""
        return ("done", send, state, detail)

    def _announce(self, campaign, kind):
        self.dispatch(kind, envelope("automation", kind, {
            "campaign_id": campaign["_id"], "name": campaign.get("name"),
            "channel": campaign.get("channel"), "actor_id": campaign.get("created_by"),
            "counts": campaign.get("counts") or {}}, event_id=f"{kind}:{campaign['_id']}"))

    # unsubscribe
    def unsubscribe(self, token):
        try:
            claims = verify_token(token)
        except CrmError:
            raise BadRequest("This unsubscribe link is not valid")
        if not {"c", "k", "ch"} <= set(claims):
            raise BadRequest("This unsubscribe link is not valid")
        first = not self.store.opted_out(claims["k"], claims["ch"])
        self.store.opt_out(claims["k"], claims["ch"], claims["c"], self.clock.now())
        if first:
            self.store.count_campaign(claims["c"], "unsubscribed")
            self.dispatch("campaign_unsubscribed", envelope("automation", "campaign_unsubscribed", {
                "campaign_id": claims["c"], "contact_id": claims["k"], "channel": claims["ch"]},
                event_id=f"unsub:{claims['k']}:{claims['ch']}"))
        return {"unsubscribed": True, "channel": claims["ch"]}
