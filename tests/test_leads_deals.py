"""Inbound leads in the deals service (docs/leads.md), end to end: a `contacts.lead_captured`
event published on the real broker -> the deals service records the lead, joins the
contact's open deal or opens one, chooses the owner and announces `deals.lead_routed`;
the lead-source registry with costs and the sources report against hand-computed numbers."""
import uuid
from datetime import datetime, timedelta, timezone

from crm_common.messaging.publish import publish_event
from tests.test_deals import make_contact, make_deal, make_pipeline, stage_ids, wait_until


def lead_data(contact, source="website", **extra):
    request_id = uuid.uuid4().hex
    data = {"request_id": request_id, "ref": {"type": "inbound_request", "id": request_id},
            "received_at": datetime.now(timezone.utc).isoformat(), "channel": "form",
            "contact_id": contact["id"], "contact_created": False, "contact_owner_id": None,
            "contact_name": f"{contact['first_name']} {contact['last_name']}",
            "form_id": None, "route_name": None, "source": source,
            "utm": {"source": "google", "medium": "cpc", "campaign": "spring"}, "referrer": None,
            "pipeline_id": None, "stage_id": None, "owner_rule": {"kind": "none", "user_ids": []},
            "first_task": {"due_minutes": 15, "kind": "call", "title": "Call back"},
            "deal_title": f"Request from {contact['last_name']}", "summary": "Asked for a quote",
            "text": "Hello, how much is it?"}
    data.update(extra)
    return data


def send(stack, data):
    publish_event(stack.amqp_uri, "contacts", "lead_captured", data,
                  event_id="lead:" + data["request_id"])
    return data


def routed(recorder, data, count=1, timeout=15):
    """The lead_routed events of this request (waits until `count` arrived)."""
    mine = lambda e: e["type"] == "lead_routed" and e["data"]["request_id"] == data["request_id"]  # noqa: E731
    wait_until(lambda: len([e for e in recorder.drain(0.2) if mine(e)]) >= count, timeout)
    found = [e for e in recorder.events if mine(e)]
    assert len(found) >= count, f"no lead_routed for {data['request_id']}"
    return found


def route(stack, recorder, data):
    return routed(recorder, send(stack, data))[0]["data"]


def test_a_new_lead_opens_a_deal(api, stack, record_events, unique):
    recorder = record_events("deals")
    contact = make_contact(api, unique)
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    owner = f"u-{unique}"
    data = send(stack, lead_data(contact, pipeline_id=pipeline["id"], stage_id=ids["Offer"],
                                 owner_rule={"kind": "fixed", "user_ids": [owner]}))
    event = routed(recorder, data)[0]
    assert event["event_id"] == f"routed:{data['request_id']}" and event["source"] == "deals"
    out = event["data"]
    assert out["deal_created"] is True and out["owner_id"] == owner and out["owner_reason"] == "fixed_user"
    assert out["pipeline_id"] == pipeline["id"] and out["contact_id"] == contact["id"]
    assert out["source"] == "website" and out["channel"] == "form"
    assert out["first_task"] == data["first_task"] and out["contact_name"] == data["contact_name"]
    assert out["ref"] == {"type": "deal", "id": out["deal_id"]}
    assert out["received_at"].startswith(data["received_at"][:19])
    assert "fixed user" in out["summary"] and "website" in out["summary"]

    deal = api.get(f"/deals/{out['deal_id']}").json()
    assert (deal["pipeline_id"], deal["stage_id"], deal["status"]) == (pipeline["id"], ids["Offer"], "open")
    assert (deal["source"], deal["owner_id"], deal["contact_id"]) == ("website", owner, contact["id"])
    assert (deal["title"], deal["amount"], deal["currency"]) == (data["deal_title"], 0, "EUR")
    assert [r["request_id"] for r in deal["requests"]] == [data["request_id"]]
    assert deal["requests"][0]["summary"] == "Asked for a quote" and deal["requests"][0]["channel"] == "form"
    created = [e for e in recorder.wait_for(lambda e: e["type"] == "deal_created"
                                            and e["data"]["deal"]["id"] == out["deal_id"])]
    assert created and created[0]["event_id"] == f"lead-deal:{data['request_id']}"
    assert created[0]["data"]["contact_id"] == contact["id"]

    lead = stack.db("deals").leads.find_one({"_id": data["request_id"]})
    assert lead["deal_id"] == out["deal_id"] and lead["owner_reason"] == "fixed_user"
    assert lead["utm"] == data["utm"] and lead["routed_at"] is not None
    # no stage given -> the first open stage; the contact's timeline shows the routing
    other = make_contact(api, unique + "b", emails=[f"b.{unique}@example.com"])
    out2 = route(stack, recorder, lead_data(other, pipeline_id=pipeline["id"]))
    assert api.get(f"/deals/{out2['deal_id']}").json()["stage_id"] == ids["New"]
    assert out2["owner_id"] is None and out2["owner_reason"] == "no_rule"

    def timeline():
        items = api.get(f"/contacts/{contact['id']}/timeline").json()["items"]
        return [i for i in items if i["kind"] == "lead_routed"]

    entries = wait_until(timeline)
    assert entries and entries[0]["summary"] == out["summary"]


def test_second_request_joins_the_open_deal_and_redelivery_adds_nothing(api, stack, record_events, unique):
    recorder = record_events("deals")
    contact = make_contact(api, unique)
    pipeline = make_pipeline(api, unique)
    rule = {"kind": "fixed", "user_ids": [f"first-{unique}"]}
    first = lead_data(contact, pipeline_id=pipeline["id"], owner_rule=rule)
    out1 = route(stack, recorder, first)
    assert out1["deal_created"] is True
    # the same contact writes again (another channel): it joins the open deal, whose owner keeps it
    second = lead_data(contact, pipeline_id=pipeline["id"], channel="telegram", source="social",
                       owner_rule={"kind": "fixed", "user_ids": [f"other-{unique}"]},
                       summary="Telegram: any news?")
    out2 = route(stack, recorder, second)
    assert out2["deal_created"] is False and out2["deal_id"] == out1["deal_id"]
    assert (out2["owner_id"], out2["owner_reason"]) == (f"first-{unique}", "open_deal_owner")
    deal = api.get(f"/deals/{out1['deal_id']}").json()
    assert [r["request_id"] for r in deal["requests"]] == [first["request_id"], second["request_id"]]
    assert deal["requests"][1]["channel"] == "telegram" and deal["requests"][1]["summary"] == "Telegram: any news?"
    # joining adds no stage entry: the funnel counts stage moves only
    assert len(api.get(f"/deals/{deal['id']}/history").json()["items"]) == 1

    # redelivery of both requests: the same lead_routed (same id), nothing new
    send(stack, first)
    send(stack, second)
    again1 = routed(recorder, first, count=2)
    again2 = routed(recorder, second, count=2)
    assert {e["event_id"] for e in again1} == {f"routed:{first['request_id']}"}
    assert {e["event_id"] for e in again2} == {f"routed:{second['request_id']}"}
    assert again1[1]["data"]["deal_id"] == out1["deal_id"] and again1[1]["data"]["deal_created"] is True
    assert again2[1]["data"]["deal_created"] is False
    deals = api.get("/deals", params={"contact_id": contact["id"]}).json()["items"]
    assert [d["id"] for d in deals] == [out1["deal_id"]]
    assert len(api.get(f"/deals/{out1['deal_id']}").json()["requests"]) == 2
    assert stack.db("deals").leads.count_documents({"contact_id": contact["id"]}) == 2

    # the default pipeline (pipeline_id null) is another pipeline: a deal of its own there
    out3 = route(stack, recorder, lead_data(contact, owner_rule=rule))
    assert out3["deal_created"] is True and out3["deal_id"] != out1["deal_id"]
    default = next(p for p in api.get("/pipelines", params={"limit": 500}).json()["items"] if p["is_default"])
    assert out3["pipeline_id"] == default["id"]
    # once the deal is won, the next request opens a new deal
    ids = stage_ids(pipeline)
    assert api.post(f"/deals/{out1['deal_id']}/move", json={"stage_id": ids["Won"]}).status_code == 200
    out4 = route(stack, recorder, lead_data(contact, pipeline_id=pipeline["id"], owner_rule=rule))
    assert out4["deal_created"] is True and out4["deal_id"] != out1["deal_id"]


def test_two_requests_at_once_open_one_deal(api, stack, record_events, unique):
    recorder = record_events("deals")
    pipeline = make_pipeline(api, unique)
    for round_ in range(3):
        contact = make_contact(api, f"{unique}{round_}", emails=[f"c{round_}.{unique}@example.com"])
        batch = [lead_data(contact, pipeline_id=pipeline["id"]) for _ in range(4)]
        for data in batch:
            send(stack, data)
        outs = [routed(recorder, data)[0]["data"] for data in batch]
        assert len({o["deal_id"] for o in outs}) == 1
        assert sorted(o["deal_created"] for o in outs) == [False, False, False, True]
        deals = api.get("/deals", params={"contact_id": contact["id"]}).json()["items"]
        assert len(deals) == 1 and len(deals[0]["requests"]) == 4


def test_owner_rules(api, stack, record_events, unique):
    recorder = record_events("deals")
    pipeline = make_pipeline(api, unique)
    people = [make_contact(api, f"{unique}{i}", emails=[f"p{i}.{unique}@example.com"]) for i in range(8)]
    users = [f"rr{i}-{unique}" for i in range(3)]
    form = f"form-{unique}"
    rr = {"kind": "round_robin", "user_ids": users, "team": "sales"}
    owners = []
    for person in people[:4]:
        out = route(stack, recorder, lead_data(person, pipeline_id=pipeline["id"], form_id=form, owner_rule=rr))
        assert out["owner_reason"] == "round_robin"
        owners.append(out["owner_id"])
    assert owners == users + users[:1]

    # least open deals: a has 2 open deals, b 0, c 1 -> b; then b and c tie at 1 -> b (listed first)
    a, b, c = (stack.add_user(f"lo{x}-{unique}") for x in "abc")
    for owner in (a, a, c):
        make_deal(api, pipeline, owner_id=owner)
    lost = make_deal(api, pipeline, owner_id=b)  # closed deals do not count
    api.post(f"/deals/{lost['id']}/move", json={"stage_id": stage_ids(pipeline)["Lost"], "lost_reason": "price"})
    least = {"kind": "least_open_deals", "user_ids": [a, b, c]}
    out = route(stack, recorder, lead_data(people[4], pipeline_id=pipeline["id"], owner_rule=least))
    assert (out["owner_id"], out["owner_reason"]) == (b, "least_open_deals")
    out = route(stack, recorder, lead_data(people[5], pipeline_id=pipeline["id"], owner_rule=least))
    assert (out["owner_id"], out["owner_reason"]) == (b, "least_open_deals")
    out = route(stack, recorder, lead_data(people[6], pipeline_id=pipeline["id"], owner_rule=least))
    assert out["owner_id"] == c

    # the contact's owner wins over any rule
    out = route(stack, recorder, lead_data(people[7], pipeline_id=pipeline["id"], owner_rule=rr,
                                           contact_owner_id=f"boss-{unique}"))
    assert (out["owner_id"], out["owner_reason"]) == (f"boss-{unique}", "contact_owner")
    assert api.get(f"/deals/{out['deal_id']}").json()["owner_id"] == f"boss-{unique}"
    # ...also over the open deal's owner
    out2 = route(stack, recorder, lead_data(people[0], pipeline_id=pipeline["id"], owner_rule=rr,
                                            contact_owner_id=f"boss-{unique}"))
    assert (out2["owner_id"], out2["owner_reason"], out2["deal_created"]) == (f"boss-{unique}", "contact_owner", False)
    # a rule without users, or kind none: no owner
    out = route(stack, recorder, lead_data(make_contact(api, unique + "z", emails=[f"z.{unique}@example.com"]),
                                           pipeline_id=pipeline["id"], owner_rule={"kind": "round_robin", "user_ids": []}))
    assert (out["owner_id"], out["owner_reason"]) == (None, "no_rule")


def test_an_unknown_source_is_registered(api, stack, record_events, unique):
    recorder = record_events("deals")
    source = f"banner-{unique}"
    assert api.post("/deals", json={"title": "t", "currency": "EUR", "source": source}).status_code == 422
    out = route(stack, recorder, lead_data(make_contact(api, unique), source=source))
    assert out["source"] == source and api.get(f"/deals/{out['deal_id']}").json()["source"] == source
    registered = [s for s in api.get("/lead-sources", params={"limit": 500}).json()["items"] if s["name"] == source]
    assert len(registered) == 1 and registered[0]["auto_registered"] is True and registered[0]["active"] is True
    assert source in api.get("/deal-settings").json()["lead_sources"]
    assert api.post("/deals", json={"title": "t", "currency": "EUR", "source": source}).status_code == 201


def test_lead_sources_crud_and_bad_input(api, stack, make_user, unique):
    name = f"fair-{unique}"
    body = {"name": name, "description": "Trade fair booth",
            "costs": [{"period": "2026-03", "amount": 120000, "currency": "eur"}]}
    created = api.post("/lead-sources", json=body)
    assert created.status_code == 201, created.text
    source = created.json()
    assert source["costs"] == [{"period": "2026-03", "amount": 120000, "currency": "EUR"}]
    assert source["active"] is True and source["auto_registered"] is False
    assert name in api.get("/deal-settings").json()["lead_sources"]
    assert api.get(f"/lead-sources/{source['id']}").json() == source
    duplicate = api.post("/lead-sources", json={"name": name})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["details"]["id"] == source["id"]

    count = stack.db("deals").lead_sources.count_documents({})
    bad = [{"name": ""}, {"description": "no name"}, {"name": "x" * 51},
           {"name": f"b-{unique}", "costs": [{"period": "2026-13", "amount": 1, "currency": "EUR"}]},
           {"name": f"b-{unique}", "costs": [{"period": "2026-01", "amount": -1, "currency": "EUR"}]},
           {"name": f"b-{unique}", "costs": [{"period": "2026-01", "amount": "5", "currency": "EUR"}]},
           {"name": f"b-{unique}", "costs": [{"period": "2026-01", "amount": 5, "currency": "XXX"}]},
           {"name": f"b-{unique}", "costs": [{"period": "2026-01", "amount": 5, "currency": "EUR"},
                                             {"period": "2026-01", "amount": 6, "currency": "EUR"}]},
           {"name": f"b-{unique}", "unknown": 1}]
    for payload in bad:
        response = api.post("/lead-sources", json=payload)
        assert response.status_code == 422, (payload, response.text)
    assert stack.db("deals").lead_sources.count_documents({}) == count

    missing = "nope" + unique
    assert api.get(f"/lead-sources/{missing}").status_code == 404
    assert api.patch(f"/lead-sources/{missing}", json={"description": "x"}).status_code == 404
    assert api.delete(f"/lead-sources/{missing}").status_code == 404
    assert api.patch(f"/lead-sources/{source['id']}", json={"name": "renamed"}).status_code == 422
    assert api.patch(f"/lead-sources/{source['id']}", json={"costs": [{"period": "2026-03"}]}).status_code == 422
    assert api.get(f"/lead-sources/{source['id']}").json() == source  # nothing changed

    agent = make_user("agent")
    assert agent.get(f"/lead-sources/{source['id']}").status_code == 403  # costs: managers
    assert agent.post("/lead-sources", json={"name": f"a-{unique}"}).status_code == 403
    assert agent.patch(f"/lead-sources/{source['id']}", json={"description": "x"}).status_code == 403
    assert agent.delete(f"/lead-sources/{source['id']}").status_code == 403

    costs = [{"period": "2026-03", "amount": 100000, "currency": "EUR"},
             {"period": "2026-04", "amount": 5000, "currency": "USD"}]
    patched = api.patch(f"/lead-sources/{source['id']}", json={"costs": costs, "description": None})
    assert patched.status_code == 200 and patched.json()["costs"] == costs and patched.json()["description"] is None
    # inactive: off the settings list and refused for new deals; the registry keeps it
    assert api.patch(f"/lead-sources/{source['id']}", json={"active": False}).json()["active"] is False
    assert name not in api.get("/deal-settings").json()["lead_sources"]
    assert api.post("/deals", json={"title": "t", "currency": "EUR", "source": name}).status_code == 422
    inactive = api.get("/lead-sources", params={"active": "false", "limit": 500}).json()["items"]
    assert source["id"] in [s["id"] for s in inactive]
    # the settings list switches it back on (and registers names it does not know)
    settings = api.get("/deal-settings").json()["lead_sources"]
    new_name = f"new-{unique}"
    assert api.patch("/deal-settings", json={"lead_sources": settings + [name, new_name]}).status_code == 200
    assert api.get(f"/lead-sources/{source['id']}").json()["active"] is True
    assert any(s["name"] == new_name for s in api.get("/lead-sources", params={"limit": 500}).json()["items"])
    assert api.patch("/deal-settings", json={"lead_sources": settings}).status_code == 200
    assert api.get(f"/lead-sources/{source['id']}").json()["costs"] == costs  # costs stay

    assert api.delete(f"/lead-sources/{source['id']}").status_code == 200
    assert api.get(f"/lead-sources/{source['id']}").status_code == 404
    # keyset pages by name
    page1 = api.get("/lead-sources", params={"limit": 2}).json()
    page2 = api.get("/lead-sources", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    names = [s["name"] for s in page1["items"] + page2["items"]]
    assert names == sorted(names) and len(set(names)) == 4


def _month(moment):
    start = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def _iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def test_sources_report_against_hand_computed_numbers(api, stack, record_events, unique):
    recorder = record_events("deals")
    source = f"ads-{unique}"
    owner = f"mkt-{unique}"
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    rule = {"kind": "fixed", "user_ids": [owner]}
    people = [make_contact(api, f"{unique}{i}", emails=[f"s{i}.{unique}@example.com"]) for i in range(3)]
    outs = [route(stack, recorder, lead_data(p, source=source, pipeline_id=pipeline["id"], owner_rule=rule))
            for p in people]
    # a second request of the first person joins its deal: a lead, not a deal
    route(stack, recorder, lead_data(people[0], source=source, pipeline_id=pipeline["id"], owner_rule=rule))
    manual = make_deal(api, pipeline, source=source, amount=7000)  # owned by the admin
    d1, d2, d3 = (o["deal_id"] for o in outs)
    assert api.patch(f"/deals/{d1}", json={"amount": 50000}).status_code == 200
    assert api.patch(f"/deals/{d2}", json={"amount": 20000, "currency": "USD"}).status_code == 200
    for deal_id in (d1, d2):
        assert api.post(f"/deals/{deal_id}/move", json={"stage_id": ids["Won"]}).status_code == 200
    assert api.post(f"/deals/{d3}/move", json={"stage_id": ids["Lost"], "lost_reason": "price"}).status_code == 200
    sources = {s["name"]: s for s in api.get("/lead-sources", params={"limit": 500}).json()["items"]}
    start, end = _month(datetime.now(timezone.utc))
    costs = [{"period": start.strftime("%Y-%m"), "amount": 9000, "currency": "EUR"}]
    assert api.patch(f"/lead-sources/{sources[source]['id']}", json={"costs": costs}).status_code == 200

    params = {"from": _iso(start), "to": _iso(end), "source": source}
    for period, key in (("all", "all"), ("month", start.strftime("%Y-%m"))):
        report = api.get("/reports/sources", params={**params, "period": period})
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["scope"] == "all" and body["period"] == period
        assert len(body["rows"]) == 1
        row = body["rows"][0]
        assert (row["source"], row["period"]) == (source, key)
        assert (row["leads"], row["deals"], row["won_deals"]) == (4, 4, 2)
        assert row["won_amount"] == [{"currency": "EUR", "amount": 50000}, {"currency": "USD", "amount": 20000}]
        assert row["conversion"] == 0.5
        assert row["cost"] == [{"currency": "EUR", "amount": 9000}]
        assert row["cost_per_won_deal"] == [{"currency": "EUR", "amount": 4500.0}]

    # the owner's own view: their leads and deals (not the admin's manual deal), no cost per won deal
    own = stack.rpc.call("deals", "sources_report", {**params, "period": "all"},
                         context={"user_id": owner, "user_role": "agent"})
    assert own["scope"] == "limited"
    row = own["rows"][0]
    assert (row["leads"], row["deals"], row["won_deals"], row["cost_per_won_deal"]) == (4, 3, 2, None)
    stranger = stack.rpc.call("deals", "sources_report", {**params, "period": "all"},
                              context={"user_id": f"x-{unique}", "user_role": "agent"})
    assert [(r["leads"], r["deals"], r["won_deals"]) for r in stranger["rows"]] == [(0, 0, 0)]  # cost only
    assert manual["source"] == source


def test_sources_report_periods_and_prorated_costs(api, stack, record_events, unique):
    """Leads received in past months (their deals are created now, outside these ranges)."""
    recorder = record_events("deals")
    source = f"radio-{unique}"
    contact = make_contact(api, unique)
    for when in ("2025-01-10T09:00:00+00:00", "2025-01-20T10:00:00+00:00", "2025-02-05T11:00:00+00:00"):
        route(stack, recorder, lead_data(contact, source=source, received_at=when))
    sources = {s["name"]: s for s in api.get("/lead-sources", params={"limit": 500}).json()["items"]}
    costs = [{"period": "2025-01", "amount": 3100, "currency": "EUR"},
             {"period": "2025-02", "amount": 2800, "currency": "EUR"},
             {"period": "2025-02", "amount": 100, "currency": "USD"}]
    assert api.patch(f"/lead-sources/{sources[source]['id']}", json={"costs": costs}).status_code == 200

    def rows(**params):
        response = api.get("/reports/sources", params={"source": source, **params})
        assert response.status_code == 200, response.text
        return [(r["period"], r["leads"], r["deals"], r["won_deals"], r["conversion"],
                 [(c["currency"], c["amount"]) for c in r["cost"]], r["cost_per_won_deal"])
                for r in response.json()["rows"]]

    assert rows(**{"from": "2025-01-01T00:00:00Z", "to": "2025-03-01T00:00:00Z", "period": "month"}) == [
        ("2025-01", 2, 0, 0, 0.0, [("EUR", 3100)], None),
        ("2025-02", 1, 0, 0, 0.0, [("EUR", 2800), ("USD", 100)], None)]
    # half a month of January: 3100 x 15/31 days
    assert rows(**{"from": "2025-01-01T00:00:00Z", "to": "2025-01-16T00:00:00Z", "period": "all"}) == [
        ("all", 1, 0, 0, 0.0, [("EUR", 1500)], None)]
    # ISO weeks 2 and 3 of 2025 (Mon Jan 6 - Mon Jan 20): 7/31 of 3100 each; the Jan 20 lead is outside
    assert rows(**{"from": "2025-01-06T00:00:00Z", "to": "2025-01-20T00:00:00Z", "period": "week"}) == [
        ("2025-W02", 1, 0, 0, 0.0, [("EUR", 700)], None),
        ("2025-W03", 0, 0, 0, None, [("EUR", 700)], None)]
    days = rows(**{"from": "2025-02-04T00:00:00Z", "to": "2025-02-06T00:00:00Z", "period": "day"})
    # a day of February: 2800/28 EUR, 100/28 = 3.57 USD rounded to 4
    assert days == [("2025-02-04", 0, 0, 0, None, [("EUR", 100), ("USD", 4)], None),
                    ("2025-02-05", 1, 0, 0, 0.0, [("EUR", 100), ("USD", 4)], None)]
    # a range with nothing of the source: no rows
    assert rows(**{"from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z"}) == []
    bad = [{"period": "year"}, {"from": "2025-02-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"},
           {"from": "2020-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z", "period": "day"}]
    for params in bad:
        assert api.get("/reports/sources", params=params).status_code == 422, params
