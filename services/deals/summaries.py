"""Report summaries: the sales and forecast reports read per-period buckets of pre-grouped
rows instead of every matching deal, with exactly the numbers of their definitions, the
aggregations over the deals (store/reports.py sales / forecast; RPC exact=True runs them).
No query here: the store does the I/O (store/buckets.py builds the bucket reads and
recomputations), this module decides what to read, what to recompute and how to add it up.

Buckets (collection report_summaries, `_id` = `<kind>|<period>|<pipeline_id>`):
- sales_month / sales_day: deals closed (won or lost, not deleted) in that UTC month / day
  of `closed_at`, rows per (owner_id, source, currency): won, lost, won_amount, cycle_ms;
- forecast_month / forecast_day: OPEN deals (not deleted) expected to close in that month /
  on that day (`expected_close_date`, an ISO date), rows per (owner_id, currency, stage_id,
  probability): open_count, open_amount, weighted (amount x probability); forecast_month ""
  holds the open deals without an expected close date.
Each bucket document has `dirty` (a counter every writer increments), `built` (the dirty
value its rows were computed at) and `pending` (token -> time of the writes in flight).

A bucket is clean when built == dirty; a stale one is recomputed when a report needs it: a
day from the deals of that day (an indexed range, a few dozen deals), a month from the rows
of its days (clean days as stored, the few stale ones recomputed first) or, when most of its
days are stale too, from its deals (its days stay stale: not written for nothing), the
no-date forecast bucket from its deals. Stale buckets next to each other are recomputed by
one aggregation. The rows just computed are stored only with a compare-and-set on
the `dirty` read before computing, and only when no write was in flight then (no fresh
`pending`); the report uses them either way.

Writers (store.py; every write of a deal field the rows depend on, see RELEVANT): before
the deal write, mark each bucket the deal counts in before and after it: $inc dirty and
set pending.<token> (an upsert: a missing bucket is created dirty); after it (also when it
failed), $inc dirty again and unset the token. Why this is exact:
- a report that read `dirty` before the mark fails its compare-and-set (the mark changed it);
- one that read it after the mark sees the token and does not store what it computed;
- the mark after the write makes a bucket stored meanwhile dirty again (a token older than
  PENDING_TIMEOUT is taken for a writer that died; its write, if any, is older than that);
- a writer that dies between the deal write and the second mark leaves its token: the
  bucket is recomputed at every read (exact, not stored) until the token is that old;
- a period without a bucket has no deal: a bucket is created by the first mark of any
  write that puts a deal there, and rebuild() (RPC rebuild_report_summaries; at start when
  the marker `settings` `report_summaries` of this VERSION is missing) computes every
  bucket from the deals. Deals written behind the service's back (imports, the bench, the
  tests' seeds) need that rebuild, as the funnel counters do.
Bulk writes (a stage's new probability, a removed stage's deals reassigned) mark every
forecast bucket of the pipeline the same way; after the bulk write, each bucket that was
clean before it and that no other write marked meanwhile (dirty = built + 1, only this
token pending) gets its rows rewritten as the bulk write changed the deals (rows of stage S
-> stage T, probability p: `restage`), with a compare-and-set; the others stay dirty. So a
probability edit does not make the next forecast recompute from every open deal.
A report running while deals are written counts each deal as before or after its write (as
a scan of the deals would).

A report's range is split as the funnel's (funnel.split): whole UTC months from the month
buckets, the remaining whole days from the day buckets, the partial days at its two ends
from the deals themselves (at most two days). The forecast's range is in whole days (ISO
dates): months and days only. Each part is one aggregation over the bucket documents of
the range ($unwind the rows, $match the filters and the caller's visibility, $group by the
report's key), and the handful of grouped rows are added up here."""
from datetime import date, datetime, timedelta, timezone

from services.deals import funnel
from services.deals.domain import MS_PER_DAY

VERSION = 1
COLLECTION = "report_summaries"
SALES_MONTH, SALES_DAY = "sales_month", "sales_day"
FORECAST_MONTH, FORECAST_DAY = "forecast_month", "forecast_day"
KINDS = (SALES_MONTH, SALES_DAY, FORECAST_MONTH, FORECAST_DAY)
DAY_OF = {SALES_MONTH: SALES_DAY, FORECAST_MONTH: FORECAST_DAY}
NO_DATE = ""  # forecast_month of the open deals without an expected close date
PENDING_TIMEOUT = timedelta(minutes=10)
RUN_GAP_DAYS = 2  # stale days this close are recomputed by one aggregation
FAR_PAST = datetime(1, 1, 1, tzinfo=timezone.utc)

SALES_SUMS = ("won", "lost", "won_amount", "cycle_ms")
FORECAST_SUMS = ("open_count", "open_amount", "weighted")
ROW_KEYS = {"sales": ("owner_id", "source", "currency"),
            "forecast": ("owner_id", "currency", "stage_id", "probability")}
SUMS = {"sales": SALES_SUMS, "forecast": FORECAST_SUMS}
REPORT_OF = {SALES_MONTH: "sales", SALES_DAY: "sales", FORECAST_MONTH: "forecast",
             FORECAST_DAY: "forecast"}
# the deal fields the rows depend on: a write changing none of them touches no bucket
RELEVANT = ("pipeline_id", "owner_id", "source", "currency", "amount", "stage_id", "probability",
            "status", "closed_at", "created_at", "expected_close_date", "deleted_at")


# which buckets a deal counts in
def bucket_id(kind, period, pipeline_id):
    return f"{kind}|{period}|{pipeline_id}"


def contributions(deal):
    """[(kind, period, pipeline_id)] of the buckets this deal state counts in."""
    if not deal or deal.get("deleted_at") is not None:
        return []
    pipeline_id, status = deal.get("pipeline_id"), deal.get("status")
    closed = deal.get("closed_at")
    if status in ("won", "lost") and isinstance(closed, datetime):
        return [(SALES_MONTH, funnel.month_key(closed), pipeline_id),
                (SALES_DAY, funnel.day_key(closed), pipeline_id)]
    if status == "open":
        close = deal.get("expected_close_date")
        if not close:
            return [(FORECAST_MONTH, NO_DATE, pipeline_id)]
        return [(FORECAST_MONTH, close[:7], pipeline_id), (FORECAST_DAY, close[:10], pipeline_id)]
    return []


def touched(before, after):
    """The buckets a write from deal state `before` (None: an insert) to `after` changes:
    those of both states, or none when no field the rows read changes."""
    if before is not None and after is not None and \
            all(before.get(f) == after.get(f) for f in RELEVANT):
        return []
    return sorted(set(contributions(before)) | set(contributions(after)))


# splitting a report's range
def sales_parts(start, end):
    """[start, end) -> [("deals", a, b) | (SALES_DAY, first, end) | (SALES_MONTH, first, end)]:
    the partial UTC days at the ends (read from the deals), whole days, whole months
    (periods as strings, end excluded)."""
    names = {"history": "deals", "funnel_days": SALES_DAY, "funnel_months": SALES_MONTH}
    return [(names[source], first, last) for source, first, last in funnel.split(start, end)]


def _day(value):
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def _month(value):
    return f"{value.year:04d}-{value.month:02d}"


def forecast_parts(lo, hi):
    """Expected close dates in [lo, hi) (dates; None: unbounded) -> [(kind, first, end)]
    (end None: unbounded). Without bounds every month and the no-date bucket; otherwise
    whole months from the month buckets (from "0": not the no-date one, which a range
    excludes as the definition's string comparison does) and the days around them."""
    if lo is None and hi is None:
        return [(FORECAST_MONTH, NO_DATE, None)]
    if lo is not None and hi is not None and lo >= hi:
        return []
    first_month = None  # first whole month (None: from the beginning)
    if lo is not None:
        first_month = date(lo.year, lo.month, 1)
        if first_month < lo:
            try:
                first_month = date(lo.year + lo.month // 12, lo.month % 12 + 1, 1)
            except ValueError:  # December of year 9999: no whole month after lo
                return [(FORECAST_DAY, _day(lo), _day(hi) if hi else None)]
    end_month = date(hi.year, hi.month, 1) if hi is not None else None
    if first_month is not None and end_month is not None and first_month >= end_month:
        return [(FORECAST_DAY, _day(lo), _day(hi))]  # inside one month
    parts = []
    if lo is not None and lo < first_month:
        parts.append((FORECAST_DAY, _day(lo), _day(first_month)))
    parts.append((FORECAST_MONTH, _month(first_month) if first_month else "0",
                  _month(end_month) if end_month else None))
    if hi is not None and end_month < hi:
        parts.append((FORECAST_DAY, _day(end_month), _day(hi)))
    return parts


def _ordinal(period):
    """A day or month period as a number (consecutive periods differ by 1), None if neither."""
    try:
        if len(period) == 7:
            return int(period[:4]) * 12 + int(period[5:7])
        return date.fromisoformat(period).toordinal()
    except ValueError:
        return None


def runs(periods, gap=RUN_GAP_DAYS):
    """Sorted day (or month) periods -> [(first, last)]: periods at most `gap` apart share a
    run (one aggregation reads them all)."""
    out = []
    for period in sorted(set(periods)):
        number = _ordinal(period)
        if out and number is not None and out[-1][2] is not None and number - out[-1][2] <= gap:
            out[-1][1], out[-1][2] = period, number
        else:
            out.append([period, period, number])
    return [(first, last) for first, last, _ in out]


def _after(period):
    """The smallest string above every string starting with `period`."""
    return period[:-1] + chr(ord(period[-1]) + 1) if period else None


def _next_month(month):
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}" if year < 9999 or number < 12 \
        else _after(month)


def _utc_day(period):
    return datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=timezone.utc)


def _utc_month(period):
    return datetime.strptime(period, "%Y-%m").replace(tzinfo=timezone.utc)


# the filters of a report, on bucket rows
def row_filter(filters, owners):
    """{field: value | set of values} on the rows: currency and the report's owners (None:
    everyone; the pipeline is the bucket's)."""
    out = {}
    if filters.get("currency"):
        out["currency"] = filters["currency"]
    owners = funnel.owners_of(owners)
    if owners is not None:
        out["owner_id"] = owners if len(owners) != 1 else next(iter(owners))
    return out


def _matches(row, rfilter):
    for field, value in rfilter.items():
        if isinstance(value, set):
            if row.get(field) not in value:
                return False
        elif row.get(field) != value:
            return False
    return True


# folding rows
class Fold:
    """Sums per key of a few grouped rows."""

    def __init__(self, sums):
        self.sums = sums
        self.acc = {}

    def add(self, key, row):
        acc = self.acc.get(key)
        if acc is None:
            acc = self.acc[key] = dict.fromkeys(self.sums, 0)
        for name in self.sums:
            acc[name] += row.get(name) or 0

    def items(self):
        return self.acc.items()



def _targets(kind, docs):
    """(report, {(period, pipeline_id): Fold} of the buckets to recompute, their one pipeline
    or None when they span several)."""
    report = REPORT_OF[kind]
    wanted = {(d["period"], d["pipeline_id"]): Fold(SUMS[report]) for d in docs}
    pipelines = {d["pipeline_id"] for d in docs}
    return report, wanted, next(iter(pipelines)) if len(pipelines) == 1 else None


def _fold_into(wanted, report, groups, period=None):
    """Add aggregated groups to the buckets wanted (`period`: every group's, when the
    groups do not carry it), leaving out groups of other buckets."""
    for group in groups:
        got, pipeline_id, row = _split_row(report, group)
        key = (got if period is None else period, pipeline_id)
        if key in wanted:
            wanted[key].add(_row_key(report, row), row)


def _split_row(report, group):
    """An aggregation row grouped by (period, pipeline, row key) -> (period, pipeline, row)."""
    keys = group["_id"]
    row = {k: keys.get(k) for k in ROW_KEYS[report]}
    row.update({s: group[s] for s in SUMS[report]})
    return keys.get("period"), keys.get("pipeline_id"), row


def _row_key(report, row):
    return tuple(row.get(k) for k in ROW_KEYS[report])


def _rows_of(report, fold):
    return [{**dict(zip(ROW_KEYS[report], key)), **sums} for key, sums in sorted(
        fold.items(), key=lambda item: tuple(_sortable(v) for v in item[0]))]


def _sortable(value):
    """Python order as the database's: null first, then the strings."""
    return (0, "") if value is None else (1, value) if isinstance(value, str) else (2, str(value))


def restage(rows, stages):
    """Forecast rows after a bulk write set stage_id / probability of every deal of the
    pipeline in a stage: `stages` {old stage id: (new stage id, new probability)}."""
    fold = Fold(FORECAST_SUMS)
    for row in rows:
        if row.get("stage_id") in stages:
            stage_id, probability = stages[row["stage_id"]]
            row = {**row, "stage_id": stage_id, "probability": probability,
                   "weighted": row["open_amount"] * probability}
        fold.add(_row_key("forecast", row), row)
    return _rows_of("forecast", fold)


def restageable(doc, token):
    """A bucket clean before the bulk write marked it, and marked by nothing else since."""
    return doc.get("built") is not None and doc.get("dirty") == doc["built"] + 1 and \
        set(doc.get("pending") or {}) == {token}


def _clean(doc):
    return doc.get("dirty") is not None and doc.get("built") == doc.get("dirty")


def _in_flight(doc, now):
    """Tokens of writes in flight (fresh) and of writers taken for dead (stale)."""
    fresh, stale = [], []
    for token, at in (doc.get("pending") or {}).items():
        if isinstance(at, datetime) and now - _aware(at) >= PENDING_TIMEOUT:
            stale.append(token)
        else:
            fresh.append(token)
    return fresh, stale


def _aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Summaries:
    """The reads, recomputations and rebuild over a store (store.py)."""

    def __init__(self, store, clock=None):
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    # the reports
    def sales_rows(self, group_by, start, end, filters, owners):
        """The definition's first $group, from the summaries: [{"_id": {"key", "currency"},
        won, lost, won_amount, cycle_ms}]."""
        fold = Fold(SALES_SUMS)
        rfilter = row_filter(filters, owners)
        for kind, first, last in sales_parts(start, end):
            if kind == "deals":
                found = self.store.sales_definition_rows(group_by, first, last, filters, owners)
            else:
                found = self._read(kind, first, last, filters.get("pipeline_id"), rfilter, "key",
                                   group_by,
                                   lambda row, period: period[:7] if group_by == "month"
                                   else row.get(group_by if group_by == "source" else "owner_id"))
            for row in found:
                fold.add((row["_id"].get("key"), row["_id"].get("currency")), row)
        return [{"_id": {"key": key, "currency": currency}, **sums}
                for (key, currency), sums in fold.items()]

    def forecast_rows(self, filters, lo, hi, owners):
        """The definition's rows from the summaries: [{"_id": {"month", "currency"},
        open_count, open_amount, weighted}] sorted by month and currency."""
        fold = Fold(FORECAST_SUMS)
        rfilter = row_filter(filters, owners)
        for kind, first, last in forecast_parts(lo, hi):
            found = self._read(kind, first, last, filters.get("pipeline_id"), rfilter, "month",
                               "month", lambda row, period: period[:7])
            for row in found:
                fold.add((row["_id"].get("month"), row["_id"].get("currency")), row)
        rows = [{"_id": {"month": month, "currency": currency}, **sums}
                for (month, currency), sums in fold.items() if sums["open_count"]]
        return sorted(rows, key=lambda r: (_sortable(r["_id"]["month"]),
                                           _sortable(r["_id"]["currency"])))

    def plan(self, parts, filters, owners, deals_plan=None):
        """The query plans of a report's reads (explain): per bucket part the status read
        and the rows' aggregation; per partial day the definition's aggregation over the
        deals (`deals_plan(first, end)`)."""
        out = []
        rfilter = row_filter(filters, owners)
        for kind, first, last in parts:
            if kind == "deals":
                out.append({"collection": "deals", "part": [kind, str(first), str(last)],
                            "plan": deals_plan(first, last)})
                continue
            plans = self.store.explain_bucket_reads(kind, first, last, filters.get("pipeline_id"),
                                                    rfilter)
            out.append({"collection": COLLECTION, "part": [kind, first, last], **plans})
        return {"reads": out}

    def _read(self, kind, first, end, pipeline_id, rfilter, key_name, key, key_of):
        """One bucket part: stale buckets recomputed (and stored when they may be), the rest
        read by one aggregation (grouped by `key`: owner, source or month), the recomputed
        rows added here."""
        docs = self.store.summary_status(kind, first, end, pipeline_id)
        fresh = self.refresh([d for d in docs if not _clean(d)])
        found = []
        if len(fresh) < len(docs):  # some buckets are read as stored (less the few others)
            found = list(self.store.read_buckets(kind, first, end, pipeline_id, fresh.keys(),
                                                 rfilter, key_name, key))
        report = REPORT_OF[kind]
        extra = Fold(SUMS[report])
        periods = {d["_id"]: d["period"] for d in docs}
        for bucket, rows in fresh.items():
            for row in rows:
                if _matches(row, rfilter):
                    extra.add((key_of(row, periods[bucket]), row.get("currency")), row)
        found += [{"_id": {key_name: key, "currency": currency}, **sums}
                  for (key, currency), sums in extra.items()]
        return found

    # keeping the buckets
    def refresh(self, stale):
        """Recomputes stale buckets (documents as read, without rows); stores each one whose
        `dirty` has not moved and that had no write in flight. {bucket id: rows}."""
        fresh = {}
        for kind in (SALES_DAY, FORECAST_DAY):
            docs = [d for d in stale if d["kind"] == kind]
            if docs:
                fresh.update(self._days(kind, docs))
        for kind in (SALES_MONTH, FORECAST_MONTH):
            docs = [d for d in stale if d["kind"] == kind]
            if docs:
                fresh.update(self._months(kind, docs))
        return fresh

    def _days(self, kind, docs):
        """Buckets (days, or months when called so) recomputed from their deals."""
        report, wanted, only = _targets(kind, docs)
        gap = 1 if kind in (SALES_MONTH, FORECAST_MONTH) else RUN_GAP_DAYS
        for first, last in runs([d["period"] for d in docs], gap):
            _fold_into(wanted, report, self.store.deal_bucket_rows(kind, first, last, only))
        rows = {bucket_id(kind, *key): _rows_of(report, fold) for key, fold in wanted.items()}
        self._store(docs, rows)
        return rows

    def _months(self, kind, docs):
        report, wanted, only = _targets(kind, docs)
        if any(d["period"] == NO_DATE for d in docs):
            _fold_into(wanted, report, self.store.no_date_bucket_rows(only), NO_DATE)
        months = sorted({d["period"] for d in docs if d["period"] != NO_DATE})
        if months:
            day_kind = DAY_OF[kind]
            first, end = months[0], _next_month(months[-1])
            days = [d for d in self.store.summary_status(day_kind, first, end, only)
                    if (d["period"][:7], d["pipeline_id"]) in wanted]
            count, stale = {}, {}
            for d in days:
                key = (d["period"][:7], d["pipeline_id"])
                count[key] = count.get(key, 0) + 1
                stale[key] = stale.get(key, 0) + (not _clean(d))
            # mostly stale days (or none): the month from its deals, its days left stale
            direct = [d for d in docs if d["period"] != NO_DATE and
                      2 * stale.get((d["period"], d["pipeline_id"]), 0) >= count.get((d["period"], d["pipeline_id"]), 0)]
            if direct:
                computed = self._days(kind, direct)  # stored by _days
                for d in direct:
                    wanted.pop((d["period"], d["pipeline_id"]))
                docs = [d for d in docs if d["_id"] not in computed]
            days = [d for d in days if (d["period"][:7], d["pipeline_id"]) in wanted]
            fresh_days = self._days(day_kind, [d for d in days if not _clean(d)]) \
                if any(not _clean(d) for d in days) else {}
            if len(fresh_days) < len(days):  # some days are read as stored
                _fold_into(wanted, report, self.store.month_rows_from_days(
                    day_kind, first, end, only, fresh_days.keys()))
            periods = {d["_id"]: (d["period"][:7], d["pipeline_id"]) for d in days}
            for bucket, rows in fresh_days.items():
                for row in rows:
                    wanted[periods[bucket]].add(_row_key(report, row), row)
        rows = {bucket_id(kind, *key): _rows_of(report, fold) for key, fold in wanted.items()}
        self._store(docs, rows)
        if months and direct:
            rows.update(computed)
        return rows

    def _store(self, docs, rows):
        """Compare-and-set on the `dirty` each document was read with; not while a write is
        in flight (stale tokens, of writers taken for dead, are dropped)."""
        now = self.clock()
        writes = []
        for doc in docs:
            fresh, stale = _in_flight(doc, now)
            if not fresh:
                writes.append((doc["_id"], doc.get("dirty"), rows[doc["_id"]], stale))
        if writes:
            self.store.store_summaries(writes)

    def rebuild(self):
        """Every bucket recomputed from the deals (three aggregations over all of them),
        stored with the same compare-and-set as at read (new buckets inserted, a bucket
        created meanwhile by a writer is left dirty), buckets of periods without deals
        emptied. Safe while deals are written (what a concurrent write changes stays dirty)."""
        existing = {d["_id"]: d for d in self.store.summary_status()}
        built = {}  # bucket id -> (kind, period, pipeline, Fold)

        def add(kind, period, pipeline_id, row):
            key = bucket_id(kind, period, pipeline_id)
            if key not in built:
                built[key] = (kind, period, pipeline_id, Fold(SUMS[REPORT_OF[kind]]))
            built[key][3].add(_row_key(REPORT_OF[kind], row), row)

        for day_kind, month_kind in ((SALES_DAY, SALES_MONTH), (FORECAST_DAY, FORECAST_MONTH)):
            report = REPORT_OF[day_kind]
            for group in self.store.deal_bucket_rows(day_kind, None, None):
                period, pipeline_id, row = _split_row(report, group)
                add(day_kind, period, pipeline_id, row)
                add(month_kind, period[:7], pipeline_id, row)
        for group in self.store.no_date_bucket_rows():
            _, pipeline_id, row = _split_row("forecast", group)
            add(FORECAST_MONTH, NO_DATE, pipeline_id, row)
        now = self.clock()
        writes, inserts = [], []
        for key, (kind, period, pipeline_id, fold) in built.items():
            rows = _rows_of(REPORT_OF[kind], fold)
            doc = existing.get(key)
            if doc is None:
                inserts.append({"_id": key, "kind": kind, "period": period,
                                "pipeline_id": pipeline_id, "dirty": 0, "built": 0, "rows": rows})
            else:
                fresh, stale = _in_flight(doc, now)
                if not fresh:
                    writes.append((key, doc.get("dirty"), rows, stale))
        for key, doc in existing.items():
            if key not in built and not _in_flight(doc, now)[0]:
                writes.append((key, doc.get("dirty"), [], _in_flight(doc, now)[1]))
        if writes:
            self.store.store_summaries(writes)
        if inserts:
            self.store.insert_summaries(inserts)
        self.store.set_summaries_ready(VERSION, now)
        return {"buckets": len(built), "inserted": len(inserts), "updated": len(writes)}


# the answers (the same shapes as the definitions' results)
def sales_answer_rows(rows):
    """(key, currency) rows -> the definition's rows per key: won, lost,
    amounts[{currency, won_amount, won}], win_rate, avg_cycle_days; sorted by key."""
    keys = {}
    for row in rows:
        key = row["_id"].get("key")
        acc = keys.setdefault(key, {"_id": key, "won": 0, "lost": 0, "cycle_ms": 0, "amounts": []})
        acc["won"] += row["won"]
        acc["lost"] += row["lost"]
        acc["cycle_ms"] += row["cycle_ms"]
        acc["amounts"].append({"currency": row["_id"].get("currency"),
                               "won_amount": row["won_amount"], "won": row["won"]})
    out = []
    for key in sorted(keys, key=_sortable):
        acc = keys[key]
        won, lost = acc["won"], acc["lost"]
        # the same float operations as the definition's $divide (both exact before dividing)
        acc["win_rate"] = won / (won + lost) if won + lost > 0 else None
        cycle_ms = acc.pop("cycle_ms")
        acc["avg_cycle_days"] = cycle_ms / (won * MS_PER_DAY) if won > 0 else None
        out.append(acc)
    return out
