"""Sales reports and targets against hand-computed numbers. The data set is seeded straight
into the deals database (fixed past timestamps make every number exact), in a pipeline of
its own so other tests' deals never count; a last test goes through the API end to end.
The funnel counters and the sales / forecast summaries are compared with their definitions
(the aggregations over the history / the deals, RPC exact=True) after every kind of write."""
import threading
from datetime import datetime, timedelta, timezone

import pytest

from services.deals import summaries
from services.deals.store import DealsStore
from tests.test_deals import make_deal, make_pipeline, stage_ids

DAY = 86400


def at(month, day):
    return datetime(2026 if month > 0 else 2025, month if month > 0 else 12, day, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def seeded(api, stack):
    unique = stack.db_prefix + "rep"
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    kinds = {s["id"]: s["kind"] for s in pipeline["stages"]}
    probability = {s["id"]: s["probability"] for s in pipeline["stages"]}
    u1, u2 = stack.add_user(f"u1-{unique}"), stack.add_user(f"u2-{unique}")
    # name: owner, source, currency, amount, expected close, [(stage, when), ...]
    plan = {
        "d1": (u1, "website", "EUR", 1000, None, [("New", at(1, 1)), ("Offer", at(1, 3)), ("Won", at(1, 11))]),
        "d2": (u1, "referral", "EUR", 3000, None, [("New", at(1, 5)), ("Won", at(2, 4))]),
        "d3": (u2, "website", "EUR", 500, None, [("New", at(1, 2)), ("Offer", at(1, 4)), ("Lost", at(1, 20))]),
        "d4": (u2, "website", "USD", 2000, None, [("New", at(1, 3)), ("Offer", at(1, 5)), ("Won", at(1, 23))]),
        "d5": (u1, "website", "EUR", 10000, "2026-03-15", [("New", at(1, 10)), ("Offer", at(1, 12))]),
        "d6": (u2, "social", "EUR", 4000, "2026-03-20", [("New", at(1, 15))]),
        "d7": (u2, "social", "USD", 1000, "2026-04-02", [("New", at(1, 16))]),
        "d8": (u1, "website", "EUR", 700, None, [("New", at(0, 1)), ("Lost", at(0, 20))]),
    }
    deals, history = [], []
    for name, (owner, source, currency, amount, close, path) in plan.items():
        deal_id = f"{unique}-{name}"
        last_stage, last_at = path[-1]
        status = kinds[ids[last_stage]]
        deals.append({"_id": deal_id, "title": name, "amount": amount, "currency": currency,
                      "pipeline_id": pipeline["id"], "stage_id": ids[last_stage],
                      "probability": probability[ids[last_stage]], "status": status,
                      "contact_id": None, "company_id": None, "owner_id": owner, "source": source,
                      "expected_close_date": close,
                      "lost_reason": "price" if status == "lost" else None, "lost_note": None,
                      "notes": None, "stage_entered_at": last_at,
                      "closed_at": last_at if status != "open" else None,
                      "created_at": path[0][1], "updated_at": last_at, "deleted_at": None,
                      "created_by": None, "possible_duplicates": [], "version": len(path)})
        previous = None
        for version, (stage, when) in enumerate(path, 1):
            history.append({"_id": f"{deal_id}:{version}", "deal_id": deal_id,
                            "pipeline_id": pipeline["id"], "owner_id": owner,
                            "from_stage_id": ids[previous[0]] if previous else None,
                            "to_stage_id": ids[stage], "to_kind": kinds[ids[stage]],
                            "actor_id": owner, "at": when,
                            "seconds_in_from_stage": int((when - previous[1]).total_seconds())
                            if previous else None, "lost_reason": None, "lost_note": None})
            previous = (stage, when)
    db = stack.db("deals")
    db.deals.insert_many(deals)
    db.deal_history.insert_many(history)
    # written behind the service's back (as a database from before the funnel counters):
    # the rebuild numbers these deals and counts their history
    rebuilt = stack.rpc.call("deals", "rebuild_funnel_counters", timeout=120)
    assert rebuilt["numbered_deals"] >= len(plan)
    # and the sales / forecast summaries (summaries.py) recomputed from the deals
    assert stack.rpc.call("deals", "rebuild_report_summaries", timeout=120)["buckets"] > 0
    return {"pipeline": pipeline, "ids": ids, "u1": u1, "u2": u2, "unique": unique}


def agent(user):
    return {"user_id": user, "user_role": "agent"}


def test_funnel_report(api, stack, seeded):
    ids, pipeline = seeded["ids"], seeded["pipeline"]
    response = api.get("/reports/funnel", params={"pipeline_id": pipeline["id"],
                                                  "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    report = response.json()
    stages = {s["name"]: s for s in report["stages"]}
    assert [s["name"] for s in report["stages"]] == ["New", "Offer", "Won", "Lost"]
    new, offer, won, lost = stages["New"], stages["Offer"], stages["Won"], stages["Lost"]
    assert (new["entered"], new["won"]) == (7, 3)
    assert new["conversion_to_next"] == round(4 / 7, 4) and new["conversion_to_won"] == round(3 / 7, 4)
    assert (offer["entered"], offer["won"]) == (4, 2)
    assert offer["conversion_to_next"] == 0.75 and offer["conversion_to_won"] == 0.5
    assert (won["entered"], won["won"], won["conversion_to_won"]) == (3, 3, 1.0)
    assert won["conversion_to_next"] is None
    assert (lost["entered"], lost["won"], lost["conversion_to_won"]) == (1, 0, 0.0)
    # time in New: 2, 30, 2, 2, 2 days; in Offer: 8, 16, 18 days
    assert new["avg_seconds_in_stage"] == 7.6 * DAY and new["moves_out"] == 5
    assert offer["avg_seconds_in_stage"] == 14 * DAY and offer["moves_out"] == 3
    assert won["avg_seconds_in_stage"] is None and won["moves_out"] == 0

    # a shorter period: d2's win (Feb 4) falls out
    january = api.get("/reports/funnel", params={"pipeline_id": pipeline["id"], "from": "2026-01-01T00:00:00Z",
                                                 "to": "2026-02-01T00:00:00Z"}).json()
    stages = {s["name"]: s for s in january["stages"]}
    assert (stages["New"]["entered"], stages["New"]["won"], stages["Won"]["entered"]) == (7, 2, 2)
    assert stages["New"]["avg_seconds_in_stage"] == 2 * DAY

    # an agent sees their own deals' funnel only (d1, d2, d5)
    own = stack.rpc.call("deals", "funnel_report", {"pipeline_id": pipeline["id"], "from": "2026-01-01T00:00:00Z",
                                                    "to": "2026-03-01T00:00:00Z"}, context=agent(seeded["u1"]))
    stages = {s["name"]: s for s in own["stages"]}
    assert (stages["New"]["entered"], stages["Offer"]["entered"], stages["Won"]["entered"]) == (3, 2, 2)

    plan = stack.rpc.call("deals", "funnel_report", {"pipeline_id": pipeline["id"]}, explain=True)
    assert "funnel" in str(plan) and "IXSCAN" in str(plan)


def _rows(report):
    return {r["key"]: r for r in report["rows"]}


def test_sales_report_by_owner_month_and_source(api, stack, seeded):
    base = {"pipeline_id": seeded["pipeline"]["id"], "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    u1, u2 = seeded["u1"], seeded["u2"]
    by_owner = api.get("/reports/sales", params={**base, "group_by": "owner"})
    assert by_owner.status_code == 200, by_owner.text
    rows = _rows(by_owner.json())
    assert set(rows) == {u1, u2}
    assert (rows[u1]["won_count"], rows[u1]["lost_count"], rows[u1]["win_rate"]) == (2, 0, 1.0)
    assert rows[u1]["avg_cycle_days"] == 20.0
    assert rows[u1]["amounts"] == [{"currency": "EUR", "won_amount": 4000, "avg_deal_size": 2000.0, "share": 1.0}]
    assert (rows[u2]["won_count"], rows[u2]["lost_count"], rows[u2]["win_rate"]) == (1, 1, 0.5)
    assert rows[u2]["avg_cycle_days"] == 20.0
    assert rows[u2]["amounts"] == [{"currency": "USD", "won_amount": 2000, "avg_deal_size": 2000.0, "share": 1.0}]

    rows = _rows(api.get("/reports/sales", params={**base, "group_by": "month"}).json())
    assert set(rows) == {"2026-01", "2026-02"}
    jan, feb = rows["2026-01"], rows["2026-02"]
    assert (jan["won_count"], jan["lost_count"], jan["win_rate"], jan["avg_cycle_days"]) == (2, 1, 0.6667, 15.0)
    assert jan["amounts"] == [{"currency": "EUR", "won_amount": 1000, "avg_deal_size": 1000.0, "share": 0.25},
                              {"currency": "USD", "won_amount": 2000, "avg_deal_size": 2000.0, "share": 1.0}]
    assert (feb["won_count"], feb["lost_count"], feb["avg_cycle_days"]) == (1, 0, 30.0)
    assert feb["amounts"][0]["share"] == 0.75

    # lead source attribution: which sources bring won money
    rows = _rows(api.get("/reports/sales", params={**base, "group_by": "source"}).json())
    assert set(rows) == {"website", "referral"}
    assert (rows["website"]["won_count"], rows["website"]["lost_count"]) == (2, 1)
    assert [(a["currency"], a["won_amount"], a["share"]) for a in rows["website"]["amounts"]] == [
        ("EUR", 1000, 0.25), ("USD", 2000, 1.0)]
    assert [(a["currency"], a["won_amount"], a["share"]) for a in rows["referral"]["amounts"]] == [("EUR", 3000, 0.75)]

    eur = _rows(api.get("/reports/sales", params={**base, "group_by": "owner", "currency": "EUR"}).json())
    assert (eur[u2]["won_count"], eur[u2]["lost_count"]) == (0, 1)

    # roles: an agent sees their own numbers, a manager their team's
    own = stack.rpc.call("deals", "sales_report", {**base, "group_by": "owner"}, context=agent(u2))
    assert set(_rows(own)) == {u2}
    team = stack.rpc.call("deals", "sales_report", {**base, "group_by": "owner"},
                          context={"user_id": "boss", "user_role": "manager", "user_team_members": [u1]})
    assert set(_rows(team)) == {u1}
    assert api.get("/reports/sales", params={"group_by": "team"}).status_code == 422
    assert api.get("/reports/sales", params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}).status_code == 422


def test_forecast_report(api, stack, seeded):
    params = {"pipeline_id": seeded["pipeline"]["id"]}
    response = api.get("/reports/forecast", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [
        {"month": "2026-03", "currency": "EUR", "open_count": 2, "open_amount": 14000, "weighted_amount": 5400},
        {"month": "2026-04", "currency": "USD", "open_count": 1, "open_amount": 1000, "weighted_amount": 100}]
    march = api.get("/reports/forecast", params={**params, "from": "2026-03-01", "to": "2026-04-01"}).json()
    assert [r["month"] for r in march["rows"]] == ["2026-03"]
    own = stack.rpc.call("deals", "forecast_report", params, context=agent(seeded["u2"]))
    assert own["rows"][0] == {"month": "2026-03", "currency": "EUR", "open_count": 1, "open_amount": 4000,
                              "weighted_amount": 400}


def test_targets_progress(api, stack, seeded):
    u1, u2 = seeded["u1"], seeded["u2"]
    monthly = api.post("/targets", json={"user_id": u1, "period": "2026-01", "deals_count": 4,
                                         "amount": 5000, "currency": "EUR"})
    assert monthly.status_code == 201, monthly.text
    assert monthly.json()["period_start"] == "2026-01-01T00:00:00Z"
    api.post("/targets", json={"user_id": u1, "period": "2026-Q1", "deals_count": 10})
    team = api.post("/targets", json={"team": f"team-{seeded['unique']}", "member_ids": [u1, u2],
                                      "period": "2026-Q1", "amount": 8000, "currency": "EUR"}).json()

    progress = api.get("/targets/progress", params={"user_id": u1, "period": "2026-01"}).json()["items"]
    assert len(progress) == 1
    assert (progress[0]["won_count"], progress[0]["won_amount"]) == (1, 1000)
    assert progress[0]["count_percent"] == 25.0 and progress[0]["amount_percent"] == 20.0
    assert progress[0]["summary"] == "1 of 4 won; 1000 of 5000 EUR"
    quarter = api.get("/targets/progress", params={"user_id": u1, "period": "2026-Q1"}).json()["items"]
    assert quarter[0]["summary"] == "2 of 10 won" and quarter[0]["amount_percent"] is None
    team_progress = api.get("/targets/progress", params={"team": team["team"]}).json()["items"]
    assert (team_progress[0]["won_count"], team_progress[0]["won_amount"]) == (3, 4000)
    assert team_progress[0]["amount_percent"] == 50.0

    # an agent sees their own targets (and their team's), not another agent's
    mine = stack.rpc.call("deals", "target_progress", {"period": "2026-Q1"}, context=agent(u2))
    assert [i["target"]["team"] for i in mine["items"]] == [team["team"]]

    for bad in ({"user_id": u1, "period": "2026-13", "deals_count": 1},
                {"user_id": u1, "period": "2026-01"},
                {"user_id": u1, "team": "x", "period": "2026-01", "deals_count": 1},
                {"user_id": u1, "period": "2026-01", "amount": 100},
                {"team": "x", "period": "2026-01", "deals_count": 1}):
        assert api.post("/targets", json=bad).status_code == 422, bad
    patched = api.patch(f"/targets/{monthly.json()['id']}", json={"deals_count": 2})
    assert patched.status_code == 200 and patched.json()["deals_count"] == 2
    listed = api.get("/targets", params={"user_id": u1}).json()["items"]
    assert len(listed) == 2
    assert api.delete(f"/targets/{monthly.json()['id']}").status_code == 200
    assert api.get(f"/targets/{monthly.json()['id']}").status_code == 404


def test_reports_follow_api_moves_end_to_end(api, stack, unique):
    """Deals created and moved through the API show up in this month's reports and targets."""
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    owner = stack.add_user(f"live-{unique}")
    won = make_deal(api, pipeline, owner_id=owner, amount=1200, source="referral")
    api.post(f"/deals/{won['id']}/move", json={"stage_id": ids["Offer"]})
    api.post(f"/deals/{won['id']}/move", json={"stage_id": ids["Won"]})
    lost = make_deal(api, pipeline, owner_id=owner, amount=300)
    api.post(f"/deals/{lost['id']}/move", json={"stage_id": ids["Lost"], "lost_reason": "competitor"})
    make_deal(api, pipeline, owner_id=owner, amount=5000, expected_close_date="2030-06-10")

    now = datetime.now(timezone.utc)
    period = {"from": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
              "to": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")}
    funnel = {s["name"]: s for s in api.get("/reports/funnel", params={
        "pipeline_id": pipeline["id"], **period}).json()["stages"]}
    assert (funnel["New"]["entered"], funnel["New"]["won"], funnel["Offer"]["entered"]) == (3, 1, 1)
    assert (funnel["Won"]["entered"], funnel["Lost"]["entered"]) == (1, 1)
    sales = _rows(api.get("/reports/sales", params={"pipeline_id": pipeline["id"], **period}).json())
    assert (sales[owner]["won_count"], sales[owner]["lost_count"], sales[owner]["win_rate"]) == (1, 1, 0.5)
    assert sales[owner]["amounts"][0]["won_amount"] == 1200
    forecast = api.get("/reports/forecast", params={"pipeline_id": pipeline["id"]}).json()["rows"]
    assert forecast == [{"month": "2030-06", "currency": "EUR", "open_count": 1, "open_amount": 5000,
                         "weighted_amount": 500}]
    month = now.strftime("%Y-%m")
    api.post("/targets", json={"user_id": owner, "period": month, "deals_count": 2})
    progress = api.get("/targets/progress", params={"user_id": owner, "period": month}).json()["items"]
    assert progress[0]["summary"] == "1 of 2 won" and progress[0]["count_percent"] == 50.0


# the funnel from its counters (services/deals/funnel.py) against the definition (the
# aggregation over deal_history, funnel_report(exact=True))
def _funnel(stack, pipeline_id, start, end, context=None, exact=False, owner_id=None):
    params = {"pipeline_id": pipeline_id, "from": _z(start), "to": _z(end)}
    if owner_id:
        params["owner_id"] = owner_id
    return stack.rpc.call("deals", "funnel_report", params, exact=exact, context=context)


def _z(moment):
    return moment.isoformat().replace("+00:00", "Z")


def _assert_counters_exact(stack, pipeline_id, ranges, contexts):
    for start, end in ranges:
        for context in contexts:
            fast = _funnel(stack, pipeline_id, start, end, context)
            exact = _funnel(stack, pipeline_id, start, end, context, exact=True)
            assert fast == exact, (start, end, context)


def test_funnel_counters_equal_history_on_seeded_days(stack, seeded):
    """Whole months, whole days of partial months and partial days at both ends."""
    h = timedelta(hours=1)
    ranges = [(at(1, 1), at(3, 1)), (at(0, 1), at(3, 1)), (at(1, 1) + 5 * h, at(2, 4) + 7 * h),
              (at(1, 3) + 13 * h, at(1, 20)), (at(1, 3) + h, at(1, 3) + 9 * h),
              (at(0, 20) - 30 * h, at(1, 11) + 2 * h), (at(1, 12), at(1, 16) + 30 * h),
              (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))]
    manager = {"user_id": seeded["u1"], "user_role": "manager", "user_team_members": [seeded["u2"]]}
    _assert_counters_exact(stack, seeded["pipeline"]["id"], ranges, [None, agent(seeded["u2"]), manager])


def test_funnel_counters_follow_moves_owner_changes_and_a_rebuild(api, stack, unique):
    """Deals created, moved back and forth, won, reopened, lost and reassigned through the
    API: the counter funnel equals the history's, and the counters written move by move
    equal the ones the rebuild computes from the history."""
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    a, b = stack.add_user(f"fa-{unique}"), stack.add_user(f"fb-{unique}")
    d1 = make_deal(api, pipeline, owner_id=a)
    d2 = make_deal(api, pipeline, owner_id=a)
    d3 = make_deal(api, pipeline, owner_id=b)
    for deal, path in ((d1, ["Offer", "New", "Offer", "Won", "Offer", "Won"]),
                       (d2, ["Offer", "Lost", "New"]), (d3, ["Won"])):
        for stage in path:
            body = {"stage_id": ids[stage]}
            if stage == "Lost":
                body["lost_reason"] = "price"
            response = api.post(f"/deals/{deal['id']}/move", json=body)
            assert response.status_code == 200, response.text
    assert api.patch(f"/deals/{d2['id']}", json={"owner_id": b}).status_code == 200
    now = datetime.now(timezone.utc)
    ranges = [(now - timedelta(hours=1), now + timedelta(hours=1)),
              (now - timedelta(days=40), now + timedelta(days=40)),
              (now - timedelta(days=400), now + timedelta(days=1))]
    contexts = [None, agent(a), agent(b),
                {"user_id": a, "user_role": "manager", "user_team_members": [b]}]
    _assert_counters_exact(stack, pipeline["id"], ranges, contexts)
    report = {s["name"]: s for s in _funnel(stack, pipeline["id"], *ranges[0])["stages"]}
    assert (report["New"]["entered"], report["New"]["won"], report["Offer"]["entered"]) == (3, 2, 2)
    assert (report["Won"]["entered"], report["Lost"]["entered"], report["Offer"]["moves_out"]) == (2, 1, 4)
    mine = {s["name"]: s for s in _funnel(stack, pipeline["id"], *ranges[0], context=agent(b))["stages"]}
    assert (mine["New"]["entered"], mine["Won"]["entered"], mine["Lost"]["entered"]) == (2, 1, 1)

    db = stack.db("deals")

    def counters():
        out = {}
        for name in ("funnel_months", "funnel_days"):
            for doc in db[name].find({"pipeline_id": pipeline["id"]}):
                out[(name, doc["_id"])] = _nonzero({k: v for k, v in doc.items() if k != "_id"})
        return out

    live = counters()
    assert live
    stack.rpc.call("deals", "rebuild_funnel_counters", timeout=120)
    assert counters() == live
    _assert_counters_exact(stack, pipeline["id"], ranges[:1], [None])


def _nonzero(value):
    """Counters without the zeros a reassignment leaves behind (a rebuild writes none)."""
    if isinstance(value, dict):
        kept = {k: _nonzero(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (0, {})}
    return value


# the sales and forecast reports from their summaries (services/deals/summaries.py) against
# their definitions (the aggregations over the deals, sales_report / forecast_report exact=True)
GROUPS = ("owner", "month", "source")


def _report(stack, method, params, context=None, exact=False):
    return stack.rpc.call("deals", method, params, exact=exact, context=context, timeout=60)


def _assert_summaries_exact(stack, ranges, contexts, forecast_ranges=((None, None),),
                            extra=({},)):
    """Fast == exact for each sales group_by and the forecast, per range, caller and extra
    filters (pipeline_id, currency, owner_id)."""
    for context in contexts:
        for filters in extra:
            for start, end in ranges:
                for group_by in GROUPS:
                    params = {"group_by": group_by, "from": _z(start), "to": _z(end), **filters}
                    fast = _report(stack, "sales_report", params, context)
                    exact = _report(stack, "sales_report", params, context, exact=True)
                    assert fast == exact, (params, context)
            for lo, hi in forecast_ranges:
                params = {k: v for k, v in filters.items() if k != "currency"}
                if lo:
                    params["from"] = lo
                if hi:
                    params["to"] = hi
                fast = _report(stack, "forecast_report", params, context)
                exact = _report(stack, "forecast_report", params, context, exact=True)
                assert fast == exact, (params, context)


def test_summaries_equal_the_deals_on_the_seeded_set(stack, seeded):
    """Ranges of whole months, whole days and partial days at either end, every caller,
    with and without filters; the whole database (other tests' deals too) as well."""
    h = timedelta(hours=1)
    ranges = [(at(1, 1), at(3, 1)), (at(0, 1), at(3, 1)), (at(1, 1) + 5 * h, at(2, 4) + 7 * h),
              (at(1, 3) + 13 * h, at(1, 20)), (at(1, 11) - h, at(1, 11) + 9 * h),
              (at(0, 20) - 30 * h, at(1, 23) + 2 * h), (at(1, 12), at(1, 16) + 30 * h),
              (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))]
    manager = {"user_id": seeded["u1"], "user_role": "manager", "user_team_members": [seeded["u2"]]}
    pipeline_id = seeded["pipeline"]["id"]
    forecast_ranges = [(None, None), ("2026-03-01", "2026-04-01"), ("2026-03-16", "2026-04-02"),
                       ("2026-03-20", None), (None, "2026-04-03"), ("2026-02-10", "2026-05-01")]
    _assert_summaries_exact(
        stack, ranges, [None, agent(seeded["u2"]), manager], forecast_ranges,
        extra=({"pipeline_id": pipeline_id}, {"pipeline_id": pipeline_id, "currency": "EUR"},
               {"pipeline_id": pipeline_id, "owner_id": seeded["u1"]}, {}))
    plan = stack.rpc.call("deals", "sales_report", {"from": _z(at(1, 1) + 5 * h), "to": _z(at(3, 1) + h)},
                          explain=True)
    assert "summaries" in str(plan) and "COLLSCAN" not in str(plan), plan
    plan = stack.rpc.call("deals", "forecast_report", {"from": "2026-03-05", "to": "2026-05-07"},
                          explain=True)
    assert "summaries" in str(plan) and "COLLSCAN" not in str(plan), plan


def _move(api, deal, stage_id, **body):
    response = api.post(f"/deals/{deal['id']}/move", json={"stage_id": stage_id, **body})
    assert response.status_code == 200, response.text
    return response.json()


def _patch(api, deal, **body):
    response = api.patch(f"/deals/{deal['id']}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_summaries_follow_every_kind_of_write(api, stack, unique):
    """Creates, moves to won and lost, reopening, updates of every field the reports read,
    delete and restore, a stage probability edit, a stage removed with its deals moved,
    concurrent moves: after each, the reports from the summaries equal the definitions for
    admin, agent and manager, with ranges ending mid-day and mid-month."""
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    a, b = stack.add_user(f"sa-{unique}"), stack.add_user(f"sb-{unique}")
    deals = [make_deal(api, pipeline, owner_id=owner, amount=amount, currency=currency,
                       source=source, expected_close_date=close)
             for owner, amount, currency, source, close in (
                 (a, 1000, "EUR", "website", "2030-06-10"), (a, 2500, "USD", "referral", "2030-06-25"),
                 (b, 700, "EUR", "website", "2030-07-03"), (b, 1200, "EUR", "social", None),
                 (a, 300, "EUR", None, "2030-08-01"), (b, 4000, "USD", "event", "2030-06-10"))]
    now = datetime.now(timezone.utc)
    h = timedelta(hours=1)
    ranges = [(now - h, now + h), (now - timedelta(days=40) - 5 * h, now + 3 * h),
              (now - timedelta(days=400), now + timedelta(days=40))]
    forecast_ranges = [(None, None), ("2030-06-10", "2030-07-04"), ("2030-06-01", "2030-08-01"),
                       ("2030-06-11", None), (None, "2030-06-26")]
    contexts = [None, agent(a), {"user_id": b, "user_role": "manager", "user_team_members": [a]}]
    only = ({"pipeline_id": pipeline["id"]},)

    def check(everything=False):
        _assert_summaries_exact(stack, ranges, contexts, forecast_ranges,
                                extra=only + (({},) if everything else ()))

    check(everything=True)
    _move(api, deals[0], ids["Won"])
    _move(api, deals[1], ids["Offer"])
    _move(api, deals[2], ids["Lost"], lost_reason="price")
    _move(api, deals[5], ids["Won"])
    check()
    _move(api, deals[0], ids["Offer"])  # reopened
    _move(api, deals[2], ids["New"])
    _move(api, deals[0], ids["Won"])
    check()
    _patch(api, deals[0], amount=1800)  # a won deal's amount, owner, source, currency
    _patch(api, deals[5], owner_id=a, source="partner", currency="EUR")
    _patch(api, deals[1], expected_close_date="2030-07-20", amount=2600)  # open deals
    _patch(api, deals[3], expected_close_date="2030-06-15")
    _patch(api, deals[4], expected_close_date=None, owner_id=b)
    check()
    assert api.delete(f"/deals/{deals[5]['id']}").status_code == 200
    assert api.delete(f"/deals/{deals[1]['id']}").status_code == 200
    check()
    restored = stack.rpc.call("deals", "restore_deal", deals[1]["id"])
    assert restored["id"] == deals[1]["id"] and api.get(f"/deals/{deals[1]['id']}").status_code == 200
    check()

    # a stage's probability: the open deals in it follow, so do the forecast buckets
    stages = [{"id": s["id"], "name": s["name"], "kind": s["kind"], "probability": s["probability"]}
              for s in pipeline["stages"]]
    stages[1]["probability"] = 70
    edited = api.patch(f"/pipelines/{pipeline['id']}", json={"stages": stages})
    assert edited.status_code == 200, edited.text
    assert api.get(f"/deals/{deals[1]['id']}").json()["probability"] == 70
    check(everything=True)
    # the Offer stage removed: its deals go to a new open stage with another probability
    def stage_list(doc):
        return [{"id": s["id"], "name": s["name"], "kind": s["kind"], "probability": s["probability"]}
                for s in doc["stages"]]

    added = api.patch(f"/pipelines/{pipeline['id']}", json={"stages": stage_list(
        api.get(f"/pipelines/{pipeline['id']}").json()) + [
        {"name": "Proposal", "kind": "open", "probability": 40}]})
    assert added.status_code == 200, added.text
    proposal_id = next(s["id"] for s in added.json()["stages"] if s["name"] == "Proposal")
    removed = api.patch(f"/pipelines/{pipeline['id']}", json={
        "stages": [s for s in stage_list(added.json()) if s["id"] != ids["Offer"]],
        "move_deals_to": {ids["Offer"]: proposal_id}})
    assert removed.status_code == 200, removed.text
    assert api.get(f"/deals/{deals[1]['id']}").json()["stage_id"] == proposal_id
    check(everything=True)

    # concurrent moves of the same deals between open, won and lost stages
    targets = [(deal, stage) for deal in (deals[0], deals[2], deals[3])
               for stage in (ids["New"], ids["Won"], proposal_id, ids["Lost"])] * 2
    failures = []

    def move(deal, stage):
        body = {"stage_id": stage, **({"lost_reason": "price"} if stage == ids["Lost"] else {})}
        response = api.request("POST", f"/deals/{deal['id']}/move", json=body)
        if response.status_code != 200:
            failures.append(response.text)

    threads = [threading.Thread(target=move, args=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    check(everything=True)


def test_deals_opened_by_leads_count_in_the_forecast(stack, unique):
    """A lead opens a deal without an expected close date: the no-date forecast bucket."""
    before = _report(stack, "forecast_report", {})
    assert before == _report(stack, "forecast_report", {}, exact=True)
    # the lead_captured path writes through store.insert_deal_once: call it as the handler would
    db = stack.db("deals")
    store = DealsStore(db, None)
    pipeline = store.default_pipeline()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    doc = {"_id": f"lead-{unique}", "title": "Lead", "amount": 0, "currency": "EUR",
           "pipeline_id": pipeline["_id"], "stage_id": pipeline["stages"][0]["id"],
           "probability": pipeline["stages"][0]["probability"], "status": "open",
           "owner_id": f"lo-{unique}", "source": "website", "expected_close_date": None,
           "closed_at": None, "created_at": now, "updated_at": now, "deleted_at": None,
           "version": 1}
    assert store.insert_deal_once(doc) and not store.insert_deal_once(doc)
    after = _report(stack, "forecast_report", {})
    assert after == _report(stack, "forecast_report", {}, exact=True) != before


def test_summaries_stay_exact_when_a_writer_dies_between_its_two_marks(api, stack, unique):
    """A writer marks the buckets, writes the deal, and dies before its second mark: its
    token keeps the bucket from being stored (recomputed at each read, exact) until the
    token is older than summaries.PENDING_TIMEOUT; then a read stores it and drops the token."""
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    deal = _move(api, make_deal(api, pipeline, owner_id=stack.add_user(f"w-{unique}"), amount=500), ids["Won"])
    now = datetime.now(timezone.utc)
    params = {"group_by": "owner", "pipeline_id": pipeline["id"],
              "from": _z(now - timedelta(days=3)), "to": _z(now + timedelta(days=1))}
    fast = _report(stack, "sales_report", params)
    assert fast["rows"][0]["amounts"][0]["won_amount"] == 500
    db = stack.db("deals")
    day = f"{summaries.SALES_DAY}|{deal['closed_at'][:10]}|{pipeline['id']}"
    assert db.report_summaries.find_one({"_id": day}) is not None
    # the writer's first mark and its deal write (as store.change_deal), then nothing
    db.report_summaries.update_one({"_id": day}, {"$inc": {"dirty": 1}, "$set": {"pending.dead": now}})
    db.deals.update_one({"_id": deal["id"]}, {"$set": {"amount": 900}, "$inc": {"version": 1}})
    for _ in range(2):
        fast = _report(stack, "sales_report", params)
        assert fast == _report(stack, "sales_report", params, exact=True)
        assert fast["rows"][0]["amounts"][0]["won_amount"] == 900
        doc = db.report_summaries.find_one({"_id": day})
        assert doc["built"] != doc["dirty"] and "dead" in doc["pending"]  # not stored
    db.report_summaries.update_one({"_id": day}, {"$set": {
        "pending.dead": now - summaries.PENDING_TIMEOUT - timedelta(seconds=1)}})
    assert _report(stack, "sales_report", params) == _report(stack, "sales_report", params, exact=True)
    doc = db.report_summaries.find_one({"_id": day})
    assert doc["built"] == doc["dirty"] and not doc.get("pending")


class _WriteDuringRecompute(DealsStore):
    """A store whose first aggregation over the deals lets a whole write of a deal happen
    in the middle (after the report read the buckets' dirty counters, before it stores)."""

    def __init__(self, db, write):
        super().__init__(db, None)
        self.write = write

    def aggregate(self, collection, pipeline, index=None):
        rows = super().aggregate(collection, pipeline, index)
        if collection == "deals" and self.write:
            write, self.write = self.write, None
            write(self)
        return rows


def test_a_recompute_racing_a_write_is_not_stored(api, stack, unique):
    """The report recomputes a stale bucket while a deal of it is written (both marks and
    the write happen between its read of `dirty` and its compare-and-set): what it computed
    answers this report only; the bucket stays dirty and the next report is exact."""
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    deal = _move(api, make_deal(api, pipeline, owner_id=stack.add_user(f"r-{unique}"), amount=500), ids["Won"])
    db = stack.db("deals")
    day = f"{summaries.SALES_DAY}|{deal['closed_at'][:10]}|{pipeline['id']}"
    start = datetime.fromisoformat(deal["closed_at"].replace("Z", "+00:00")).replace(
        hour=0, minute=0, second=0, microsecond=0)
    params = {"group_by": "owner", "pipeline_id": pipeline["id"], "from": _z(start),
              "to": _z(start + timedelta(days=1))}
    _report(stack, "sales_report", params)
    doc = db.report_summaries.find_one({"_id": day})
    assert doc["built"] == doc["dirty"]  # stored
    db.report_summaries.update_one({"_id": day}, {"$inc": {"dirty": 1}})  # stale

    def write(store):
        current = db.deals.find_one({"_id": deal["id"]})
        assert store.change_deal(current, {"amount": 1500})

    store = _WriteDuringRecompute(db, write)
    reader = summaries.Summaries(store)
    rows = reader.sales_rows("owner", start, start + timedelta(days=1),
                             {"pipeline_id": pipeline["id"]}, None)
    assert store.write is None  # the write happened during the recompute
    assert [r["won_amount"] for r in rows] in ([500], [1500])
    doc = db.report_summaries.find_one({"_id": day})
    assert doc["built"] != doc["dirty"] and not doc.get("pending")  # left dirty
    fast = _report(stack, "sales_report", params)
    assert fast == _report(stack, "sales_report", params, exact=True)
    assert fast["rows"][0]["amounts"][0]["won_amount"] == 1500


def test_rebuild_keeps_what_the_writes_built(api, stack, unique):
    """The summaries written write by write equal the ones the rebuild computes."""
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    deal = make_deal(api, pipeline, owner_id=stack.add_user(f"rb-{unique}"), expected_close_date="2031-01-15")
    _move(api, make_deal(api, pipeline, owner_id=stack.add_user(f"rb-{unique}")), ids["Won"])
    _patch(api, deal, amount=777)
    now = datetime.now(timezone.utc)
    params = {"group_by": "source", "from": _z(now - timedelta(days=70)), "to": _z(now + timedelta(hours=2))}
    _report(stack, "sales_report", params)  # the buckets it reads are clean after this
    _report(stack, "forecast_report", {"pipeline_id": pipeline["id"], "from": "2031-01-10"})  # a day part
    db = stack.db("deals")

    def clean_rows():
        return {d["_id"]: d["rows"] for d in db.report_summaries.find({"pipeline_id": pipeline["id"]})
                if d.get("built") == d.get("dirty")}

    live = clean_rows()
    assert any(key.startswith(summaries.FORECAST_DAY) for key in live)
    stack.rpc.call("deals", "rebuild_report_summaries", timeout=120)
    rebuilt = clean_rows()
    assert {k: v for k, v in rebuilt.items() if k in live} == live
    _assert_summaries_exact(stack, [(now - timedelta(days=70), now + timedelta(hours=2))], [None],
                            extra=({"pipeline_id": pipeline["id"]},))
