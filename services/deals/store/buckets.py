"""The report summaries' queries (services/deals/summaries.py decides what to read and
recompute; DealsStore mixes SummaryQueries in): bucket reads, the aggregations that
recompute buckets from the deals or a month from its days."""
from datetime import timedelta

from services.deals import funnel
from services.deals.summaries import (COLLECTION, FAR_PAST, FORECAST_MONTH, NO_DATE, REPORT_OF,
                                      ROW_KEYS, SALES_DAY, SALES_MONTH, SUMS, _after, _utc_day,
                                      _utc_month)


def _row_match(rfilter):
    return {f"rows.{field}": {"$in": sorted(value)} if isinstance(value, set) else value
            for field, value in rfilter.items()}



def _range(first, end):
    out = {"$gte": first}
    if end is not None:
        out["$lt"] = end
    return out


def bucket_query(kind, first, end, pipeline_id=None):
    """The bucket documents of periods [first, end) (the `summaries` index)."""
    query = {"kind": kind, "period": _range(first, end)}
    if pipeline_id:
        query["pipeline_id"] = pipeline_id
    return query


# the key a report part's rows are grouped by
BUCKET_KEYS = {"owner": "$rows.owner_id", "source": "$rows.source",
               "month": {"$substrBytes": ["$period", 0, 7]}}


def bucket_read(kind, first, end, pipeline_id, exclude, rfilter, key_name, key_expr):
    """One report part from the stored rows: the buckets of the range, less those recomputed
    for this answer (`exclude`), rows of the filters and visibility, grouped by the report's
    key and currency, summed."""
    report = REPORT_OF[kind]
    pipeline = [{"$match": bucket_query(kind, first, end, pipeline_id)}]
    if exclude:
        pipeline.append({"$match": {"_id": {"$nin": sorted(exclude)}}})
    pipeline.append({"$unwind": "$rows"})
    if rfilter:
        pipeline.append({"$match": _row_match(rfilter)})
    pipeline.append({"$group": {"_id": {key_name: key_expr, "currency": "$rows.currency"},
                                **{s: {"$sum": f"$rows.{s}"} for s in SUMS[report]}}})
    return pipeline


def _row_group(report, period_expr):
    return {"period": period_expr, "pipeline_id": {"$ifNull": ["$pipeline_id", None]},
            **{k: {"$ifNull": [f"${k}", None]} for k in ROW_KEYS[report]}}


def deal_rows(kind, first, last, pipeline_id=None):
    """Rows of the buckets `first`..`last` (None: every period) of a kind computed from the
    deals, per (period, pipeline, row key): the definition's filters, grouped finer."""
    monthly = kind in (SALES_MONTH, FORECAST_MONTH)
    if kind in (SALES_DAY, SALES_MONTH):
        start = FAR_PAST if first is None else _utc_month(first) if monthly else _utc_day(first)
        match = {"closed_at": {"$gte": start}}
        if last is not None:
            try:
                match["closed_at"]["$lt"] = funnel.next_month(_utc_month(last)) if monthly \
                    else _utc_day(last) + timedelta(days=1)
            except (OverflowError, ValueError):  # the calendar's last day
                pass
        rest = {"status": {"$in": ["won", "lost"]}, "deleted_at": None}
        won = {"$eq": ["$status", "won"]}
        sums = {"won": {"$sum": {"$cond": [won, 1, 0]}},
                "lost": {"$sum": {"$cond": [won, 0, 1]}},
                "won_amount": {"$sum": {"$cond": [won, "$amount", 0]}},
                "cycle_ms": {"$sum": {"$cond": [won, {"$subtract": ["$closed_at", "$created_at"]}, 0]}}}
        period = {"$dateToString": {"format": "%Y-%m" if monthly else "%Y-%m-%d",
                                    "date": "$closed_at"}}
        report = "sales"
    else:
        close = {"$gt": NO_DATE} if first is None else {"$gte": first}
        if last is not None:
            close["$lt"] = _after(last)
        match = {"status": "open", "expected_close_date": close}
        rest = {"deleted_at": None}
        sums = _forecast_sums()
        period = {"$substrBytes": ["$expected_close_date", 0, 7 if monthly else 10]}
        report = "forecast"
    if pipeline_id:
        rest["pipeline_id"] = pipeline_id
    return [{"$match": match}, {"$match": rest},
            {"$group": {"_id": _row_group(report, period), **sums}}]


def _forecast_sums():
    return {"open_count": {"$sum": 1}, "open_amount": {"$sum": "$amount"},
            "weighted": {"$sum": {"$multiply": ["$amount", "$probability"]}}}


def no_date_rows(pipeline_id=None):
    """Rows of the no-date forecast buckets, from their deals (`forecast` index: status,
    expected_close_date null)."""
    rest = {"deleted_at": None}
    if pipeline_id:
        rest["pipeline_id"] = pipeline_id
    return [{"$match": {"status": "open", "expected_close_date": None}}, {"$match": rest},
            {"$group": {"_id": _row_group("forecast", NO_DATE), **_forecast_sums()}}]


def months_from_days(day_kind, first, end, pipeline_id, exclude):
    """Month rows from the stored rows of their days (less the days recomputed now)."""
    report = REPORT_OF[day_kind]
    pipeline = [{"$match": bucket_query(day_kind, first, end, pipeline_id)}]
    if exclude:
        pipeline.append({"$match": {"_id": {"$nin": sorted(exclude)}}})
    pipeline += [
        {"$unwind": "$rows"},
        {"$group": {"_id": {"period": {"$substrBytes": ["$period", 0, 7]},
                            "pipeline_id": "$pipeline_id",
                            **{k: f"$rows.{k}" for k in ROW_KEYS[report]}},
                    **{s: {"$sum": f"$rows.{s}"} for s in SUMS[report]}}}]
    return pipeline


class SummaryQueries:
    """The summaries' reads as DealsStore methods; every aggregation runs through
    DealsStore.aggregate."""

    def read_buckets(self, kind, first, end, pipeline_id, exclude, rfilter, key_name, key):
        """One report part from the stored rows (bucket_read), grouped by `key` (owner,
        source or month) and currency: [{"_id": {key_name, "currency"}, <sums>}]."""
        return self.aggregate(COLLECTION, bucket_read(kind, first, end, pipeline_id, exclude,
                                                      rfilter, key_name, BUCKET_KEYS[key]))

    def explain_bucket_reads(self, kind, first, end, pipeline_id, rfilter):
        """The plans of a part's two reads: the buckets' status, the rows' aggregation."""
        return {"status": self.explain_find(COLLECTION, bucket_query(kind, first, end, pipeline_id)),
                "plan": self.explain_aggregate(COLLECTION, bucket_read(
                    kind, first, end, pipeline_id, (), rfilter, "key", BUCKET_KEYS["owner"]))}

    def deal_bucket_rows(self, kind, first, last, pipeline_id=None):
        """Rows of the buckets first..last of a kind computed from the deals (deal_rows)."""
        return self.aggregate("deals", deal_rows(kind, first, last, pipeline_id))

    def no_date_bucket_rows(self, pipeline_id=None):
        return self.aggregate("deals", no_date_rows(pipeline_id))

    def month_rows_from_days(self, day_kind, first, end, pipeline_id, exclude):
        return self.aggregate(COLLECTION, months_from_days(day_kind, first, end, pipeline_id,
                                                           exclude))

    def summary_status(self, kind=None, first=None, end=None, pipeline_id=None):
        """Bucket documents of periods [first, end) of a kind (every bucket without a kind),
        without their rows: kind, period, pipeline_id, dirty, built, pending."""
        query = {} if kind is None else bucket_query(kind, first, end, pipeline_id)
        return list(self.summaries.find(query, {"rows": 0}))
