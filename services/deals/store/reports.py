"""Report aggregation pipelines, built and run here (DealsStore mixes ReportQueries in):
the database does the counting and summing; Python only turns the few grouped rows into
the answer. `owners` is the report's owner scope: None (everyone) or a list of owner ids.

Each pipeline starts with a `$match` on exactly the fields of one index (the name returned
beside it), and puts every other condition in a second `$match`. mongod merges the two
and plans them as one; SecantusDB uses an index only when every predicate of the query
is in it, and nothing is hinted (crm_common.mongo). Callers limited to their own / their team's records match
on a second index led by owner_id."""
from services.deals.domain import MS_PER_DAY

HISTORY_INDEXES = {
    "funnel": [("pipeline_id", 1), ("at", 1)],
    "funnel_owner": [("pipeline_id", 1), ("owner_id", 1), ("at", 1)],
}
DEAL_INDEXES = {
    "sales": [("closed_at", 1)],
    "sales_owner": [("owner_id", 1), ("closed_at", 1)],
    "forecast": [("status", 1), ("expected_close_date", 1)],
    "forecast_owner": [("owner_id", 1), ("status", 1), ("expected_close_date", 1)],
}


def _owner(owners):
    """The owner scope split in (part of the first $match, rest): one owner is an equality
    on the owner-led index; several owners (a manager's team) or none filter the period's
    range of the plain index, because SecantusDB does not bound an index scan by an `$in`
    (it walks it all), where mongod would use either index."""
    if owners is None:
        return {}, {}
    if len(owners) == 1:
        return {"owner_id": owners[0]}, {}
    return {}, {"owner_id": {"$in": list(owners)}}


def _index(base, first):
    return f"{base}_owner" if "owner_id" in first else base


def _is(field, value):
    return {"$eq": [f"${field}", value]}


def funnel(pipeline_id, start, end, owners):
    """History entries of the pipeline in [start, end): per stage, the distinct deals that
    entered it and how many of those also entered a won stage; per stage left, the average
    time spent in it (each entry carries the seconds the deal spent in the stage it left)."""
    first, rest = _owner(owners)
    match = {"pipeline_id": pipeline_id, **first, "at": {"$gte": start, "$lt": end}}
    pipeline = [{"$match": match}] + ([{"$match": rest}] if rest else []) + [
        {"$facet": {
            "entered": [
                {"$group": {"_id": "$deal_id", "stages": {"$addToSet": "$to_stage_id"},
                            "won": {"$max": {"$cond": [_is("to_kind", "won"), 1, 0]}}}},
                {"$unwind": "$stages"},
                {"$group": {"_id": "$stages", "entered": {"$sum": 1}, "won": {"$sum": "$won"}}},
            ],
            "time": [
                {"$match": {"seconds_in_from_stage": {"$ne": None}}},
                {"$group": {"_id": "$from_stage_id", "avg": {"$avg": "$seconds_in_from_stage"},
                            "moves_out": {"$sum": 1}}},
            ],
        }},
    ]
    return pipeline, _index("funnel", first)


SALES_KEYS = {
    "owner": "$owner_id",
    "month": {"$dateToString": {"format": "%Y-%m", "date": "$closed_at"}},
    "source": "$source",
}


def sales_rows(group_by, start, end, filters, owners):
    """Deals closed in [start, end) per (key, currency): won, lost, won_amount, cycle_ms (the
    first half of `sales`; the summaries read the partial days at a period's ends with it)."""
    first, rest = _owner(owners)
    won = _is("status", "won")
    pipeline = [
        {"$match": {**first, "closed_at": {"$gte": start, "$lt": end}}},
        {"$match": {"status": {"$in": ["won", "lost"]}, "deleted_at": None, **filters, **rest}},
        {"$group": {
            "_id": {"key": SALES_KEYS[group_by], "currency": "$currency"},
            "won": {"$sum": {"$cond": [won, 1, 0]}},
            "lost": {"$sum": {"$cond": [won, 0, 1]}},
            "won_amount": {"$sum": {"$cond": [won, "$amount", 0]}},
            "cycle_ms": {"$sum": {"$cond": [won, {"$subtract": ["$closed_at", "$created_at"]}, 0]}},
        }},
    ]
    return pipeline, _index("sales", first)


def sales(group_by, start, end, filters, owners):
    """Deals closed in [start, end), grouped by the key and then by currency (amounts of
    different currencies are never added up). The definition of the sales report: the
    service answers from the summaries (summaries.py) with the same numbers; RPC
    sales_report(params, exact=True) runs this."""
    pipeline, index = sales_rows(group_by, start, end, filters, owners)
    pipeline += [
        {"$group": {
            "_id": "$_id.key",
            "won": {"$sum": "$won"}, "lost": {"$sum": "$lost"}, "cycle_ms": {"$sum": "$cycle_ms"},
            "amounts": {"$push": {"currency": "$_id.currency", "won_amount": "$won_amount",
                                  "won": "$won"}},
        }},
        {"$project": {
            "won": 1, "lost": 1, "amounts": 1,
            "win_rate": {"$cond": [{"$gt": [{"$add": ["$won", "$lost"]}, 0]},
                                   {"$divide": ["$won", {"$add": ["$won", "$lost"]}]}, None]},
            "avg_cycle_days": {"$cond": [{"$gt": ["$won", 0]},
                                         {"$divide": ["$cycle_ms", {"$multiply": ["$won", MS_PER_DAY]}]},
                                         None]},
        }},
        {"$sort": {"_id": 1}},
    ]
    return pipeline, index


def forecast(filters, lo, hi, owners):
    """Open deals by expected close month and currency; weighted = amount x probability;
    expected close dates (ISO dates) in [lo, hi) (either None: unbounded).
    The definition of the forecast report (RPC forecast_report(params, exact=True)); the
    service answers from the summaries (summaries.py) with the same numbers."""
    first, rest = _owner(owners)
    match = {**first, "status": "open"}
    close_range = {}
    if lo:
        close_range["$gte"] = lo
    if hi:
        close_range["$lt"] = hi
    if close_range:
        match["expected_close_date"] = close_range
    pipeline = [
        {"$match": match},
        {"$match": {"deleted_at": None, **filters, **rest}},
        {"$group": {
            "_id": {"month": {"$substrBytes": [{"$ifNull": ["$expected_close_date", ""]}, 0, 7]},
                    "currency": "$currency"},
            "open_count": {"$sum": 1},
            "open_amount": {"$sum": "$amount"},
            "weighted": {"$sum": {"$multiply": ["$amount", "$probability"]}},
        }},
        {"$sort": {"_id.month": 1, "_id.currency": 1}},
    ]
    return pipeline, _index("forecast", first)


def won_totals(owner_ids, start, end, currency, pipeline_id):
    """A target's actuals: won deals of its people closed in the period."""
    first, rest = _owner(list(owner_ids))
    rest.update({"status": "won", "deleted_at": None})
    if pipeline_id:
        rest["pipeline_id"] = pipeline_id
    pipeline = [
        {"$match": {**first, "closed_at": {"$gte": start, "$lt": end}}},
        {"$match": rest},
        {"$group": {"_id": None, "count": {"$sum": 1},
                    "amount": {"$sum": {"$cond": [{"$eq": ["$currency", currency]}, "$amount", 0]}}}},
    ]
    return pipeline, _index("sales", first)


# sources report (/reports/sources): three grouped counts per source and UTC day; the
# service folds the days into the asked periods and adds the registry's costs
LEAD_INDEXES = {
    "leads_received": [("received_at", 1)],
    "leads_owner": [("owner_id", 1), ("received_at", 1)],
}
DAY = "%Y-%m-%d"


def _day(field):
    return {"$dateToString": {"format": DAY, "date": f"${field}"}}


def _with_source(source):
    return {"source": source} if source else {"source": {"$ne": None}}


def source_leads(start, end, source, owners):
    """Inbound requests received in [start, end) per source and day."""
    first, rest = _owner(owners)
    pipeline = [
        {"$match": {**first, "received_at": {"$gte": start, "$lt": end}}},
        {"$match": {**_with_source(source), **rest}},
        {"$group": {"_id": {"source": "$source", "day": _day("received_at")}, "count": {"$sum": 1}}},
    ]
    return pipeline, "leads_owner" if first else "leads_received"


def source_deals(start, end, source, owners):
    """Deals created in [start, end) per source and day (the (created_at, _id) index, or
    (owner_id, created_at, _id) for one owner)."""
    first, rest = _owner(owners)
    pipeline = [
        {"$match": {**first, "created_at": {"$gte": start, "$lt": end}}},
        {"$match": {"deleted_at": None, **_with_source(source), **rest}},
        {"$group": {"_id": {"source": "$source", "day": _day("created_at")}, "count": {"$sum": 1}}},
    ]
    return pipeline, "created_at"


def source_won(start, end, source, owners):
    """Deals won (closed) in [start, end) per source, day and currency."""
    first, rest = _owner(owners)
    pipeline = [
        {"$match": {**first, "closed_at": {"$gte": start, "$lt": end}}},
        {"$match": {"status": "won", "deleted_at": None, **_with_source(source), **rest}},
        {"$group": {"_id": {"source": "$source", "day": _day("closed_at"), "currency": "$currency"},
                    "count": {"$sum": 1}, "amount": {"$sum": "$amount"}}},
    ]
    return pipeline, _index("sales", first)


class ReportQueries:
    """The reports' reads as DealsStore methods; every aggregation runs through
    DealsStore.aggregate / explain_aggregate (`explain=True`: the query plan instead)."""

    def _run(self, collection, built, explain):
        pipeline, index = built
        if explain:
            return self.explain_aggregate(collection, pipeline, index)
        return self.aggregate(collection, pipeline, index)

    def funnel_definition(self, pipeline_id, start, end, owners, explain=False):
        """{"entered": [{_id: stage, entered, won}], "time": [{_id: stage, avg, moves_out}]}
        from the history (see funnel)."""
        found = self._run("deal_history", funnel(pipeline_id, start, end, owners), explain)
        return found if explain else found[0]

    def sales_definition(self, group_by, start, end, filters, owners, explain=False):
        return self._run("deals", sales(group_by, start, end, filters, owners), explain)

    def sales_definition_rows(self, group_by, start, end, filters, owners, explain=False):
        return self._run("deals", sales_rows(group_by, start, end, filters, owners), explain)

    def forecast_definition(self, filters, lo, hi, owners, explain=False):
        return self._run("deals", forecast(filters, lo, hi, owners), explain)

    def won_totals(self, owner_ids, start, end, currency, pipeline_id):
        """{"count", "amount" (in `currency`)} of the won deals of these owners closed in
        [start, end)."""
        rows = self._run("deals", won_totals(owner_ids, start, end, currency, pipeline_id), False)
        return rows[0] if rows else {"count": 0, "amount": 0}

    def source_counts(self, start, end, source, owners):
        """The sources report's three grouped counts: (leads, deals, won) rows per source and
        day (won also per currency)."""
        return (self._run("leads", source_leads(start, end, source, owners), False),
                self._run("deals", source_deals(start, end, source, owners), False),
                self._run("deals", source_won(start, end, source, owners), False))
