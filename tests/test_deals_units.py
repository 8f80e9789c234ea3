"""Pure rules of the deals service (no stack needed)."""
from datetime import datetime, timedelta, timezone

import pytest

from services.deals.store import reports
from services.deals.domain import (build_stages, funnel_order, is_rotting, period_range,
                                   ratio)
from contracts.deals import DealIn, PipelineIn
from marshmallow import ValidationError


@pytest.mark.parametrize("period,start,end", [
    ("2026-01", (2026, 1, 1), (2026, 2, 1)), ("2026-12", (2026, 12, 1), (2027, 1, 1)),
    ("2026-Q1", (2026, 1, 1), (2026, 4, 1)), ("2026-Q4", (2026, 10, 1), (2027, 1, 1))])
def test_period_range(period, start, end):
    assert period_range(period) == (datetime(*start, tzinfo=timezone.utc),
                                    datetime(*end, tzinfo=timezone.utc))


def test_build_stages_keeps_ids_and_defaults_probability():
    first = build_stages([{"name": "A", "kind": "open"}, {"name": "W", "kind": "won"},
                          {"name": "L", "kind": "lost"}], {})
    assert [s["probability"] for s in first] == [50, 100, 0]
    existing = {s["id"]: {**s, "probability": 20} for s in first}
    again = build_stages([{"id": first[0]["id"], "name": " B ", "kind": "open"}], existing)
    assert again[0] == {"id": first[0]["id"], "name": "B", "probability": 20, "kind": "open",
                        "rotting_days": None, "position": 0, "required_fields": []}
    assert [s["name"] for s in funnel_order({"stages": first[::-1]})] == ["A", "W"]


def test_rotting_only_for_open_deals_past_the_stage_limit():
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    deal = {"status": "open", "stage_entered_at": now - timedelta(days=4)}
    assert is_rotting(deal, {"rotting_days": 3}, now)
    assert not is_rotting(deal, {"rotting_days": 5}, now)
    assert not is_rotting(deal, {"rotting_days": None}, now)
    assert not is_rotting({**deal, "status": "won"}, {"rotting_days": 3}, now)
    assert ratio(1, 3) == 0.3333 and ratio(1, 0) is None


def test_schemas_reject_bad_money_and_pipelines():
    with pytest.raises(ValidationError):
        DealIn().load({"title": "x", "currency": "EUR", "amount": -5})
    with pytest.raises(ValidationError):
        DealIn().load({"title": "x", "currency": "ABC"})
    assert DealIn().load({"title": "x", "currency": "usd"})["currency"] == "USD"
    with pytest.raises(ValidationError):
        PipelineIn().load({"name": "p", "stages": [{"name": "a"}, {"name": "w", "kind": "won"}]})


def test_reports_scope_picks_the_owner_index():
    start, end = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)
    assert reports.funnel("p", start, end, None)[1] == "funnel"
    pipeline, index = reports.funnel("p", start, end, ["u"])
    assert index == "funnel_owner" and pipeline[0]["$match"]["owner_id"] == "u"
    team = reports.funnel("p", start, end, ["u", "v"])
    assert team[1] == "funnel" and team[0][1] == {"$match": {"owner_id": {"$in": ["u", "v"]}}}
    assert reports.sales("month", start, end, {}, ["u"])[1] == "sales_owner"
    assert reports.forecast({}, None, None, None)[1] == "forecast"


# inbound leads: owner rules, report periods and prorated costs
def test_owner_rule_helpers():
    from services.deals.domain import least_loaded, round_robin_pick, rule_candidates
    assert rule_candidates({"kind": "fixed", "user_id": "u9"}) == ["u9"]
    assert rule_candidates({"user_ids": ["a", "b", "a", "", None]}) == ["a", "b"]
    assert rule_candidates(None) == []
    assert [round_robin_pick(["a", "b", "c"], n) for n in range(1, 8)] == list("abcabca")
    assert least_loaded(["a", "b", "c"], {"a": 2, "b": 1, "c": 1}) == "b"  # tie: list order
    assert least_loaded(["a", "b"], {}) == "a"


def test_report_buckets_clip_and_key():
    from services.deals.domain import report_buckets
    utc = timezone.utc
    start, end = datetime(2025, 1, 15, 12, tzinfo=utc), datetime(2025, 3, 2, tzinfo=utc)
    months = report_buckets(start, end, "month")
    assert [(k, s.day, e.month) for k, s, e in months] == [("2025-01", 15, 2), ("2025-02", 1, 3), ("2025-03", 1, 3)]
    assert months[0][1] == start and months[-1][2] == end
    weeks = report_buckets(datetime(2024, 12, 31, tzinfo=utc), datetime(2025, 1, 7, tzinfo=utc), "week")
    assert [k for k, _, _ in weeks] == ["2025-W01", "2025-W02"]  # ISO weeks: Dec 30 2024 is in 2025-W01
    assert report_buckets(start, end, "all") == [("all", start, end)]
    assert report_buckets(datetime(2000, 1, 1, tzinfo=utc), end, "day") is None  # too many
    last = report_buckets(datetime(9999, 12, 1, tzinfo=utc), datetime(9999, 12, 31, tzinfo=utc), "month")
    assert [k for k, _, _ in last] == ["9999-12"]


def test_costs_are_prorated_to_the_period():
    from services.deals.domain import prorated_costs
    utc = timezone.utc
    costs = [{"period": "2025-01", "amount": 3100, "currency": "EUR"},
             {"period": "2025-02", "amount": 100, "currency": "USD"}]
    assert prorated_costs(costs, datetime(2025, 1, 1, tzinfo=utc), datetime(2025, 2, 1, tzinfo=utc)) == {"EUR": 3100}
    assert prorated_costs(costs, datetime(2025, 1, 1, tzinfo=utc), datetime(2025, 1, 16, tzinfo=utc)) == {"EUR": 1500}
    # one day of February: 100/28 = 3.57 -> 4; the whole range sums before rounding
    assert prorated_costs(costs, datetime(2025, 2, 3, tzinfo=utc), datetime(2025, 2, 4, tzinfo=utc)) == {"USD": 4}
    assert prorated_costs(costs, datetime(2024, 1, 1, tzinfo=utc), datetime(2030, 1, 1, tzinfo=utc)) == {"EUR": 3100, "USD": 100}
    assert prorated_costs(costs, datetime(2025, 3, 1, tzinfo=utc), datetime(2025, 4, 1, tzinfo=utc)) == {}


def test_lead_summary_and_source_schemas():
    from services.deals.domain import lead_summary
    from contracts.deals import LeadSourceIn
    assert lead_summary("website", "form", True, "Quote", "u1", "round_robin") == \
        'Lead from website via form: new deal "Quote", assigned to u1 by round robin'
    assert lead_summary("telegram", "telegram", False, "Quote", None, "no_rule") == \
        'Lead from telegram: joined open deal "Quote", no owner (no rule)'
    ok = LeadSourceIn().load({"name": "fair", "costs": [{"period": "2026-02", "amount": 5, "currency": "usd"}]})
    assert ok["costs"][0]["currency"] == "USD"
    for costs in ([{"period": "2026-2", "amount": 5, "currency": "USD"}],
                  [{"period": "2026-02", "amount": 5.5, "currency": "USD"}],
                  [{"period": "2026-02", "amount": 5, "currency": "USD"}] * 2):
        with pytest.raises(ValidationError):
            LeadSourceIn().load({"name": "fair", "costs": costs})


# funnel counters (services/deals/funnel.py)
def _utc(*parts):
    return datetime(*parts, tzinfo=timezone.utc)


def test_funnel_split_reads_months_days_and_partial_days():
    from services.deals.funnel import split
    assert split(_utc(2026, 1, 1), _utc(2026, 3, 1)) == [("funnel_months", "2026-01", "2026-03")]
    assert split(_utc(2026, 1, 1, 5), _utc(2026, 3, 1, 7)) == [
        ("history", _utc(2026, 1, 1, 5), _utc(2026, 1, 2)),
        ("funnel_days", "2026-01-02", "2026-02-01"), ("funnel_months", "2026-02", "2026-03"),
        ("history", _utc(2026, 3, 1), _utc(2026, 3, 1, 7))]
    assert split(_utc(2026, 1, 3, 5), _utc(2026, 1, 4, 9)) == [
        ("history", _utc(2026, 1, 3, 5), _utc(2026, 1, 4, 9))]
    assert split(_utc(2026, 1, 3), _utc(2026, 1, 20)) == [("funnel_days", "2026-01-03", "2026-01-20")]
    # the calendar's ends: zero-padded keys, no overflow
    whole = split(datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc))
    assert whole[0] == ("funnel_months", "0001-01", "9999-12")
    assert split(_utc(9999, 12, 31, 1), datetime.max.replace(tzinfo=timezone.utc))[0][0] == "history"


def test_funnel_tally_counts_distinct_deals_like_the_history():
    """Bits OR-ed over documents and entries: a deal entering a stage twice counts once,
    won = entered a won stage too; numbers are per owner, so owners add up."""
    from services.deals.funnel import Builder, Tally, bit
    assert bit(0) == ("w0", 1) and bit(63) == ("w0", -(1 << 63)) and bit(64) == ("w1", 1)
    entries = [
        {"pipeline_id": "p", "owner_id": "a", "funnel_no": 1, "to_stage_id": "s1", "to_kind": "open",
         "at": _utc(2026, 1, 1)},
        {"pipeline_id": "p", "owner_id": "a", "funnel_no": 1, "to_stage_id": "s2", "to_kind": "open",
         "from_stage_id": "s1", "seconds_in_from_stage": 10, "at": _utc(2026, 1, 2)},
        {"pipeline_id": "p", "owner_id": "a", "funnel_no": 1, "to_stage_id": "s1", "to_kind": "open",
         "from_stage_id": "s2", "seconds_in_from_stage": 5, "at": _utc(2026, 2, 2)},
        {"pipeline_id": "p", "owner_id": "a", "funnel_no": 1, "to_stage_id": "w", "to_kind": "won",
         "from_stage_id": "s1", "seconds_in_from_stage": 20, "at": _utc(2026, 2, 3)},
        {"pipeline_id": "p", "owner_id": "b", "funnel_no": 1, "to_stage_id": "s1", "to_kind": "open",
         "at": _utc(2026, 2, 3)},
        {"pipeline_id": "p", "owner_id": "a", "funnel_no": 70, "to_stage_id": "s1", "to_kind": "open",
         "at": _utc(2026, 2, 4)},
    ]
    builder = Builder()
    for entry in entries:
        builder.add(entry)
    assert len(builder.docs["funnel_months"]) == 3 and len(builder.docs["funnel_days"]) == 6
    from_docs, from_entries = Tally(), Tally()
    for doc in builder.docs["funnel_months"].values():
        from_docs.add_doc(doc)
    for entry in entries:
        from_entries.add_entry(entry)
    entered, times = from_docs.rows()
    assert (entered, times) == from_entries.rows()
    assert entered == {"s1": {"entered": 3, "won": 1}, "s2": {"entered": 1, "won": 1},
                       "w": {"entered": 1, "won": 1}}
    assert times == {"s1": {"moves_out": 2, "avg": 15.0}, "s2": {"moves_out": 1, "avg": 5.0}}


# report summaries (services/deals/summaries.py): range splitting and bucket rules
from datetime import date  # noqa: E402

from services.deals import summaries  # noqa: E402

UTC = timezone.utc


def test_sales_parts_split_months_days_and_partial_days():
    start = datetime(2026, 1, 30, 15, 0, tzinfo=UTC)
    end = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)
    assert summaries.sales_parts(start, end) == [
        ("deals", start, datetime(2026, 1, 31, tzinfo=UTC)),
        (summaries.SALES_DAY, "2026-01-31", "2026-02-01"),
        (summaries.SALES_MONTH, "2026-02", "2026-04"),
        (summaries.SALES_DAY, "2026-04-01", "2026-04-02"),
        ("deals", datetime(2026, 4, 2, tzinfo=UTC), end)]
    # whole months only; whole days only; inside one day
    assert summaries.sales_parts(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)) == [
        (summaries.SALES_MONTH, "2026-01", "2026-03")]
    assert summaries.sales_parts(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 9, tzinfo=UTC)) == [
        (summaries.SALES_DAY, "2026-01-05", "2026-01-09")]
    inside = (datetime(2026, 1, 5, 1, tzinfo=UTC), datetime(2026, 1, 5, 20, tzinfo=UTC))
    assert summaries.sales_parts(*inside) == [("deals", *inside)]
    # across a year end, the days of a partial month at each end
    parts = summaries.sales_parts(datetime(2025, 12, 20, tzinfo=UTC), datetime(2026, 2, 3, 12, tzinfo=UTC))
    assert [p[0] for p in parts] == [summaries.SALES_DAY, summaries.SALES_MONTH, summaries.SALES_DAY, "deals"]
    assert parts[0][1:] == ("2025-12-20", "2026-01-01") and parts[1][1:] == ("2026-01", "2026-02")


def test_sales_parts_cover_the_range_exactly():
    """Each instant of the range is in exactly one part, for ranges ending anywhere."""
    base = datetime(2025, 11, 28, tzinfo=UTC)
    for start_h, end_h in ((0, 24 * 70), (7, 24 * 70 + 5), (30, 31), (24 * 3 + 1, 24 * 95 - 2)):
        start, end = base + timedelta(hours=start_h), base + timedelta(hours=end_h)
        parts = summaries.sales_parts(start, end)
        for hour in range(start_h - 2, end_h + 2):
            moment = base + timedelta(hours=hour, minutes=17)
            inside = [p for p in parts if _covers(p, moment)]
            assert len(inside) == (1 if start <= moment < end else 0), (start, end, moment, parts)


def _covers(part, moment):
    kind, first, last = part
    if kind == "deals":
        return first <= moment < last
    key = summaries._month(moment) if kind == summaries.SALES_MONTH else summaries._day(moment)
    return first <= key < last


def test_forecast_parts_split_months_and_days():
    F_M, F_D = summaries.FORECAST_MONTH, summaries.FORECAST_DAY
    assert summaries.forecast_parts(None, None) == [(F_M, "", None)]  # with the no-date bucket
    assert summaries.forecast_parts(date(2026, 3, 1), date(2026, 6, 1)) == [(F_M, "2026-03", "2026-06")]
    assert summaries.forecast_parts(date(2026, 3, 10), date(2026, 5, 20)) == [
        (F_D, "2026-03-10", "2026-04-01"), (F_M, "2026-04", "2026-05"), (F_D, "2026-05-01", "2026-05-20")]
    assert summaries.forecast_parts(date(2026, 3, 10), date(2026, 3, 20)) == [(F_D, "2026-03-10", "2026-03-20")]
    assert summaries.forecast_parts(date(2026, 3, 10), date(2026, 4, 1)) == [(F_D, "2026-03-10", "2026-04-01")]
    assert summaries.forecast_parts(date(2026, 3, 10), None) == [
        (F_D, "2026-03-10", "2026-04-01"), (F_M, "2026-04", None)]
    assert summaries.forecast_parts(None, date(2026, 3, 10)) == [
        (F_M, "0", "2026-03"), (F_D, "2026-03-01", "2026-03-10")]  # from "0": not the no-date bucket
    assert summaries.forecast_parts(date(2026, 3, 10), date(2026, 3, 10)) == []
    assert summaries.forecast_parts(date(9999, 12, 5), None) == [(F_D, "9999-12-05", None)]


def test_touched_buckets_of_a_write():
    closed = datetime(2026, 2, 3, 10, tzinfo=UTC)
    open_deal = {"pipeline_id": "p", "status": "open", "expected_close_date": "2026-05-20",
                 "amount": 10, "deleted_at": None}
    won = {**open_deal, "status": "won", "closed_at": closed}
    assert summaries.touched(None, open_deal) == [
        (summaries.FORECAST_DAY, "2026-05-20", "p"), (summaries.FORECAST_MONTH, "2026-05", "p")]
    assert summaries.touched(open_deal, won) == sorted([
        (summaries.FORECAST_DAY, "2026-05-20", "p"), (summaries.FORECAST_MONTH, "2026-05", "p"),
        (summaries.SALES_DAY, "2026-02-03", "p"), (summaries.SALES_MONTH, "2026-02", "p")])
    assert summaries.touched(won, {**won, "notes": "x", "title": "y"}) == []  # nothing the rows read
    assert summaries.touched(won, {**won, "deleted_at": closed}) == [
        (summaries.SALES_DAY, "2026-02-03", "p"), (summaries.SALES_MONTH, "2026-02", "p")]
    assert (summaries.FORECAST_MONTH, "", "p") in summaries.touched(  # the no-date bucket
        {**open_deal, "expected_close_date": None}, open_deal)
    moved = summaries.touched(open_deal, {**open_deal, "expected_close_date": "2026-07-01"})
    assert {b[1] for b in moved} == {"2026-05-20", "2026-05", "2026-07-01", "2026-07"}


def test_runs_and_restage():
    assert summaries.runs(["2026-01-01", "2026-01-02", "2026-01-05", "2026-01-04", "2026-03-01"]) == [
        ("2026-01-01", "2026-01-05"), ("2026-03-01", "2026-03-01")]
    rows = [{"owner_id": "u", "currency": "EUR", "stage_id": "s1", "probability": 10,
             "open_count": 2, "open_amount": 300, "weighted": 3000},
            {"owner_id": "u", "currency": "EUR", "stage_id": "s2", "probability": 40,
             "open_count": 1, "open_amount": 100, "weighted": 4000}]
    assert summaries.restage(rows, {"s1": ("s2", 40)}) == [
        {"owner_id": "u", "currency": "EUR", "stage_id": "s2", "probability": 40,
         "open_count": 3, "open_amount": 400, "weighted": 16000}]
    assert summaries.restageable({"dirty": 4, "built": 3, "pending": {"t": 1}}, "t")
    assert not summaries.restageable({"dirty": 5, "built": 3, "pending": {"t": 1}}, "t")
    assert not summaries.restageable({"dirty": 4, "built": 3, "pending": {"t": 1, "u": 2}}, "t")
    assert not summaries.restageable({"dirty": 1, "pending": {"t": 1}}, "t")


def test_sales_answer_rows_compute_as_the_definition():
    rows = summaries.sales_answer_rows([
        {"_id": {"key": "b", "currency": "EUR"}, "won": 1, "lost": 2, "won_amount": 10, "cycle_ms": 86400000},
        {"_id": {"key": None, "currency": "USD"}, "won": 0, "lost": 1, "won_amount": 0, "cycle_ms": 0},
        {"_id": {"key": "b", "currency": "USD"}, "won": 2, "lost": 0, "won_amount": 5, "cycle_ms": 86400000}])
    assert [r["_id"] for r in rows] == [None, "b"]  # null first, as $sort
    assert rows[0]["win_rate"] == 0.0 and rows[0]["avg_cycle_days"] is None
    assert rows[1]["win_rate"] == 3 / 5 and rows[1]["avg_cycle_days"] == 2 * 86400000 / (3 * 86400000.0)
