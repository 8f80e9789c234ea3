"""Pure rules of the deals service (no stack needed)."""
from datetime import datetime, timedelta, timezone

import pytest

from services.deals import reports
from services.deals.domain import (build_stages, funnel_order, is_rotting, period_range,
                                   ratio)
from services.deals.schemas import DealIn, PipelineIn
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
                        "rotting_days": None, "position": 0}
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
    assert reports.funnel("p", start, end, {})[1] == "funnel"
    pipeline, hint = reports.funnel("p", start, end, {"owner_id": {"$in": ["u"]}})
    assert hint == "funnel_owner" and pipeline[0]["$match"]["owner_id"] == "u"
    team = reports.funnel("p", start, end, {"owner_id": {"$in": ["u", "v"]}})
    assert team[1] == "funnel" and team[0][1] == {"$match": {"owner_id": {"$in": ["u", "v"]}}}
    assert reports.sales("month", start, end, {}, {"owner_id": "u"})[1] == "sales_owner"
    assert reports.forecast({}, {}, {})[1] == "forecast"
