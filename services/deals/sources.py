"""The lead-source registry (names deals and leads record, with monthly costs) and the
sources report: leads, deals, won deals and money, conversion and cost per won deal per
source and period.

The registry is the source of truth for the lead sources: `/deal-settings` lead_sources
is the list of its active names (PATCHing that list activates/registers the names given
and deactivates the others; costs stay). A source's name never changes (deals and leads
record it); DELETE removes the source with its costs, deals keep their source text."""
from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.fields import with_every_key
from crm_common.timeutil import parse_iso, period_key, to_iso, utcnow
from crm_common.validation import load
from contracts import deals as schemas
from services.deals.domain import bucket_start, prorated_costs, ratio, report_buckets

source_in, source_patch, source_out = schemas.LeadSourceIn(), schemas.LeadSourcePatch(), schemas.LeadSourceOut()
source_list_query, sources_query = schemas.LeadSourceListQuery(), schemas.SourcesQuery()


class LeadSources:
    def __init__(self, deals):
        self.deals = deals  # operations.Deals: caller, visibility, report period
        self.store = deals.store

    # registry
    def dump(self, doc):
        out = source_out.dump({**doc, "active": bool(doc.get("active")),
                               "auto_registered": bool(doc.get("auto_registered"))})
        return with_every_key(source_out, out, doc["_id"])

    def list(self, params):
        q = load(source_list_query, params)
        query = {"active": q["active"]} if "active" in q else {}
        docs, next_cursor = self.store.page_lead_sources(query, q["limit"], q.get("cursor"))
        return {"items": [self.dump(d) for d in docs], "next_cursor": next_cursor}

    def get(self, source_id):
        doc = self.store.get_lead_source(source_id)
        if not doc:
            raise NotFound("Lead source not found", {"id": source_id})
        return self.dump(doc)

    def create(self, payload):
        self.deals._require_manager()
        data = load(source_in, payload)
        name = data["name"].strip()
        if not name:
            raise ValidationFailed("Invalid input", {"fields": {"name": ["Empty."]}})
        now = utcnow()
        doc = {"name": name, "description": data.get("description"), "costs": data.get("costs") or [],
               "active": data.get("active", True), "auto_registered": False,
               "position": int(now.timestamp() * 1000), "created_at": now, "updated_at": now,
               "created_by": self.deals.caller.user_id}
        created = self.store.insert_lead_source(doc)
        if not created:
            existing = self.store.lead_source_by_name(name)
            raise Conflict("A lead source with this name exists",
                           {"id": existing["_id"] if existing else None})
        return self.dump(created)

    def update(self, source_id, payload):
        self.deals._require_manager()
        # every field of the patch schema is optional; not partial, so a cost is whole
        data = load(source_patch, payload)
        if not self.store.get_lead_source(source_id):
            raise NotFound("Lead source not found", {"id": source_id})
        doc = self.store.update_lead_source(source_id, {**data, "updated_at": utcnow()})
        if not doc:
            raise NotFound("Lead source not found", {"id": source_id})
        return self.dump(doc)

    def delete(self, source_id):
        self.deals._require_manager()
        doc = self.store.delete_lead_source(source_id)
        if not doc:
            raise NotFound("Lead source not found", {"id": source_id})
        return self.dump(doc)

    # report
    def report(self, params):
        q = load(sources_query, params)
        start, end = self.deals._period(q)
        buckets = report_buckets(start, end, q["period"])
        if buckets is None:
            raise ValidationFailed("Invalid input", {"fields": {"period": [
                "Too many periods in this range; choose a longer period or a shorter range."]}})
        owners = self.deals._report_owners(q.get("owner_id"))
        source = q.get("source")
        rows = {}  # (source, bucket key) -> counters

        def row(name, day):
            key = period_key(bucket_start(parse_iso(day), q["period"]), q["period"]) \
                if q["period"] != "all" else "all"
            return rows.setdefault((name, key), {"leads": 0, "deals": 0, "won": 0, "amounts": {}})

        leads, deals, won_deals = self.store.source_counts(start, end, source, owners)
        for r in leads:
            row(r["_id"]["source"], r["_id"]["day"])["leads"] += r["count"]
        for r in deals:
            row(r["_id"]["source"], r["_id"]["day"])["deals"] += r["count"]
        for r in won_deals:
            counters = row(r["_id"]["source"], r["_id"]["day"])
            counters["won"] += r["count"]
            currency = r["_id"]["currency"]
            counters["amounts"][currency] = counters["amounts"].get(currency, 0) + r["amount"]

        registry = {d["name"]: d.get("costs") or [] for d in self.store.all_lead_sources()}
        names = {name for name, _ in rows}
        for name, costs in registry.items():
            if (not source or name == source) and prorated_costs(costs, start, end):
                names.add(name)  # money spent in the range shows even without a lead
        out = []
        for name in sorted(names):
            for key, b_start, b_end in buckets:
                counters = rows.get((name, key), {"leads": 0, "deals": 0, "won": 0, "amounts": {}})
                cost = prorated_costs(registry.get(name), b_start, b_end)
                won = counters["won"]
                out.append({
                    "source": name, "period": key, "period_start": to_iso(b_start),
                    "period_end": to_iso(b_end), "leads": counters["leads"],
                    "deals": counters["deals"], "won_deals": won,
                    "won_amount": _money(counters["amounts"]),
                    "conversion": ratio(won, counters["leads"]),
                    "cost": _money(cost),
                    # costs are company-wide: divided by part of the won deals they mislead
                    "cost_per_won_deal": [{"currency": c, "amount": round(a / won, 2)}
                                          for c, a in sorted(cost.items())]
                    if won and owners is None else None})
        return {"from": to_iso(start), "to": to_iso(end), "period": q["period"],
                "scope": "limited" if owners is not None else "all", "rows": out}


def _money(amounts):
    return [{"currency": c, "amount": a} for c, a in sorted(amounts.items())]
