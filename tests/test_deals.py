"""Deals end to end: gateway (gunicorn) -> RabbitMQ -> deals service -> SecantusDB, its
RPC to contacts (contact/company validation), its events on the contact's timeline, and
the merge it listens to."""
import threading
import time

import pytest

from crm_common.messaging.publish import publish_event


def make_contact(api, unique, **fields):
    body = {"first_name": "Anna", "last_name": f"Deal{unique}",
            "emails": [f"anna.{unique}@example.com"], **fields}
    response = api.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def make_pipeline(api, unique, **extra):
    body = {"name": f"Web shop {unique}", "stages": [
        {"name": "New", "probability": 10},
        {"name": "Offer", "probability": 50, "rotting_days": 3},
        {"name": "Won", "kind": "won"},
        {"name": "Lost", "kind": "lost"}], **extra}
    response = api.post("/pipelines", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def stage_ids(pipeline):
    return {s["name"]: s["id"] for s in pipeline["stages"]}


def make_deal(api, pipeline, **fields):
    body = {"title": "Deal", "amount": 1000, "currency": "EUR", "pipeline_id": pipeline["id"],
            **fields}
    response = api.post("/deals", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_until(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def indexes_ensured(log_path):
    """How often a service's log says its indexes were ensured (once per start)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            return sum("indexes ensured for" in line for line in handle)
    except OSError:
        return 0


def test_default_pipeline_exists_once(api, stack):
    items = api.get("/pipelines", params={"limit": 500}).json()["items"]
    defaults = [p for p in items if p["is_default"]]
    assert len(defaults) == 1
    kinds = [s["kind"] for s in defaults[0]["stages"]]
    assert {"open", "won", "lost"} <= set(kinds)
    # a second replica starting (ensure_indexes again) does not add another one
    log = stack.log_path("deals-1")
    started_before = indexes_ensured(log)
    stack.start_service("deals", replica=1)
    try:
        # the replica says when its ensure_indexes (which upserts the default pipeline) is done
        assert wait_until(lambda: indexes_ensured(log) > started_before, timeout=60)
        assert stack.db("deals").pipelines.count_documents({"key": "default"}) == 1
    finally:
        stack.stop_service("deals", replica=1)
    # a deal without pipeline goes to the default pipeline's first open stage
    deal = api.post("/deals", json={"title": "x", "currency": "EUR"}).json()
    assert deal["pipeline_id"] == defaults[0]["id"]
    assert deal["stage_id"] == defaults[0]["stages"][0]["id"] and deal["status"] == "open"


def test_pipeline_edit_keeps_deals_and_history(api, unique):
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    deal = make_deal(api, pipeline)
    api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Offer"]})
    # rename, reorder, add a stage
    stages = [{"id": ids["Offer"], "name": "Proposal", "kind": "open", "probability": 60},
              {"id": ids["New"], "name": "New", "kind": "open"},
              {"name": "Negotiation", "kind": "open", "probability": 80},
              {"id": ids["Won"], "name": "Won", "kind": "won"},
              {"id": ids["Lost"], "name": "Lost", "kind": "lost"}]
    edited = api.patch(f"/pipelines/{pipeline['id']}", json={"name": "Renamed", "stages": stages})
    assert edited.status_code == 200, edited.text
    edited = edited.json()
    assert [s["name"] for s in edited["stages"]] == ["Proposal", "New", "Negotiation", "Won", "Lost"]
    assert edited["stages"][0]["id"] == ids["Offer"] and edited["version"] == 2
    got = api.get(f"/deals/{deal['id']}").json()
    assert got["stage_id"] == ids["Offer"] and got["probability"] == 60
    assert len(api.get(f"/deals/{deal['id']}/history").json()["items"]) == 2

    # removing a stage that holds deals needs a target stage of the same kind
    without_offer = [s for s in stages if s.get("id") != ids["Offer"]]
    without_offer[1]["id"] = edited["stages"][2]["id"]  # Negotiation now exists
    refused = api.patch(f"/pipelines/{pipeline['id']}", json={"stages": without_offer})
    assert refused.status_code == 422 and "move_deals_to" in refused.json()["error"]["details"]["fields"]
    wrong_kind = api.patch(f"/pipelines/{pipeline['id']}",
                           json={"stages": without_offer, "move_deals_to": {ids["Offer"]: ids["Won"]}})
    assert wrong_kind.status_code == 422
    assert api.get(f"/pipelines/{pipeline['id']}").json()["version"] == 2  # nothing changed
    negotiation = edited["stages"][2]["id"]
    done = api.patch(f"/pipelines/{pipeline['id']}",
                     json={"stages": without_offer, "move_deals_to": {ids["Offer"]: negotiation}})
    assert done.status_code == 200, done.text
    assert [s["name"] for s in done.json()["removed_stages"]] == ["Proposal"]
    got = api.get(f"/deals/{deal['id']}").json()
    assert got["stage_id"] == negotiation and got["probability"] == 80
    history = api.get(f"/deals/{deal['id']}/history").json()["items"]
    assert [h["to_stage_id"] for h in history] == [ids["Offer"], ids["New"]]  # intact

    # a pipeline with deals cannot be deleted; an empty one can; the default never
    assert api.delete(f"/pipelines/{pipeline['id']}").status_code == 409
    empty = make_pipeline(api, unique + "e")
    assert api.delete(f"/pipelines/{empty['id']}").status_code == 200
    assert api.get(f"/pipelines/{empty['id']}").status_code == 404
    default = next(p for p in api.get("/pipelines").json()["items"] if p["is_default"])
    assert api.delete(f"/pipelines/{default['id']}").status_code == 409


def test_bad_pipelines_are_refused(api, unique):
    for body in ({"name": "x", "stages": [{"name": "a"}]},  # no won/lost stage
                 {"name": "x", "stages": [{"name": "a"}, {"name": "A", "kind": "won"},
                                          {"name": "l", "kind": "lost"}]},  # duplicate name
                 {"name": "x", "stages": [{"name": "a", "probability": 101},
                                          {"name": "w", "kind": "won"}, {"name": "l", "kind": "lost"}]},
                 {"name": "x", "stages": [{"name": "a", "kind": "maybe"}]}):
        assert api.post("/pipelines", json=body).status_code == 422, body


def test_deal_crud_validation_and_duplicate_flag(api, stack, unique):
    contact = make_contact(api, unique)
    company = api.post("/companies", json={"name": f"Acme {unique}"}).json()
    pipeline = make_pipeline(api, unique)
    other = make_pipeline(api, unique + "o")
    deal = make_deal(api, pipeline, title="Shop", contact_id=contact["id"], company_id=company["id"],
                     owner_id=stack.add_user(f"user-{unique}"), source="website", expected_close_date="2026-12-01",
                     notes="first talk", currency="eur")
    assert deal["currency"] == "EUR" and deal["status"] == "open" and deal["probability"] == 10
    assert deal["possible_duplicates"] == [] and deal["closed_at"] is None
    assert deal["expected_close_date"] == "2026-12-01" and deal["rotting"] is False
    second = make_deal(api, pipeline, contact_id=contact["id"])
    assert second["possible_duplicates"] == [deal["id"]]  # flagged, not refused
    assert make_deal(api, other, contact_id=contact["id"])["possible_duplicates"] == []

    bad = [({"contact_id": "nope"}, "contact_id"), ({"company_id": "nope"}, "company_id"),
           ({"amount": -1}, "amount"), ({"amount": 1.5}, "amount"), ({"currency": "XXY"}, "currency"),
           ({"pipeline_id": "nope"}, "pipeline_id"), ({"stage_id": "nope"}, "stage_id"),
           ({"stage_id": stage_ids(other)["New"]}, "stage_id"),
           ({"stage_id": stage_ids(pipeline)["Won"]}, "stage_id"),
           ({"source": "carrier pigeon"}, "source"), ({"title": ""}, "title")]
    before = api.get("/deals", params={"pipeline_id": pipeline["id"], "include_total": "true"}).json()["total"]
    for fields, field in bad:
        body = {"title": "Bad", "amount": 1, "currency": "EUR", "pipeline_id": pipeline["id"], **fields}
        response = api.post("/deals", json=body)
        assert response.status_code == 422, (fields, response.text)
        assert field in response.json()["error"]["details"]["fields"], response.text
    after = api.get("/deals", params={"pipeline_id": pipeline["id"], "include_total": "true"}).json()["total"]
    assert after == before

    patched = api.patch(f"/deals/{deal['id']}", json={"amount": 2500, "notes": None})
    assert patched.status_code == 200 and patched.json()["amount"] == 2500 and patched.json()["notes"] is None
    assert api.patch(f"/deals/{deal['id']}", json={"stage_id": stage_ids(pipeline)["Offer"]}).status_code == 422
    assert api.patch(f"/deals/{deal['id']}", json={"contact_id": "nope"}).status_code == 422
    assert api.get(f"/deals/{deal['id']}").json()["amount"] == 2500

    listed = api.get("/deals", params={"contact_id": contact["id"], "pipeline_id": pipeline["id"]}).json()
    assert {d["id"] for d in listed["items"]} == {deal["id"], second["id"]}
    page1 = api.get("/deals", params={"pipeline_id": pipeline["id"], "limit": 1}).json()
    page2 = api.get("/deals", params={"pipeline_id": pipeline["id"], "limit": 1,
                                      "cursor": page1["next_cursor"]}).json()
    assert page1["items"][0]["id"] == second["id"] and page2["items"][0]["id"] == deal["id"]
    assert api.get("/deals", params={"owner_id": f"user-{unique}"}).json()["items"][0]["id"] == deal["id"]

    assert api.delete(f"/deals/{second['id']}").status_code == 200
    assert api.get(f"/deals/{second['id']}").status_code == 404


def test_moves_history_lost_reasons_and_closing(api, unique):
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    deal = make_deal(api, pipeline)
    moved = api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Offer"]}).json()
    assert moved["stage_id"] == ids["Offer"] and moved["probability"] == 50

    # lost needs a reason from the configured list (plus optional free text)
    assert api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Lost"]}).status_code == 422
    assert api.post(f"/deals/{deal['id']}/move",
                    json={"stage_id": ids["Lost"], "lost_reason": "aliens"}).status_code == 422
    assert api.post(f"/deals/{deal['id']}/move",
                    json={"stage_id": ids["Offer"], "lost_reason": "price"}).status_code == 422
    other = make_pipeline(api, unique + "x")
    assert api.post(f"/deals/{deal['id']}/move",
                    json={"stage_id": stage_ids(other)["Offer"]}).status_code == 422
    assert api.post("/deals/nope/move", json={"stage_id": ids["Offer"]}).status_code == 404
    assert api.get(f"/deals/{deal['id']}").json()["version"] == moved["version"]  # nothing changed

    lost = api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Lost"], "lost_reason": "price",
                                                       "lost_note": "20% cheaper elsewhere"})
    assert lost.status_code == 200, lost.text
    lost = lost.json()
    assert lost["status"] == "lost" and lost["lost_reason"] == "price"
    assert lost["lost_note"] == "20% cheaper elsewhere" and lost["closed_at"].endswith("Z")
    reopened = api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["New"]}).json()
    assert reopened["status"] == "open" and reopened["closed_at"] is None and reopened["lost_reason"] is None
    won = api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Won"]}).json()
    assert won["status"] == "won" and won["closed_at"] and won["probability"] == 100
    # moving to the stage it is in changes nothing
    again = api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Won"]}).json()
    assert again["version"] == won["version"]
    assert api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Won"], "expected_version": 1}).status_code == 409

    history = api.get(f"/deals/{deal['id']}/history").json()["items"]
    assert [(h["from_stage_id"], h["to_stage_id"]) for h in history] == [
        (ids["New"], ids["Won"]), (ids["Lost"], ids["New"]), (ids["Offer"], ids["Lost"]),
        (ids["New"], ids["Offer"]), (None, ids["New"])]
    assert history[2]["lost_reason"] == "price" and history[2]["to_kind"] == "lost"
    assert all(h["at"].endswith("Z") for h in history)
    assert history[0]["seconds_in_from_stage"] >= 0 and history[-1]["seconds_in_from_stage"] is None


def test_rotting_flag(api, stack, unique):
    pipeline = make_pipeline(api, unique)
    deal = make_deal(api, pipeline)
    api.post(f"/deals/{deal['id']}/move", json={"stage_id": stage_ids(pipeline)["Offer"]})
    assert api.get(f"/deals/{deal['id']}").json()["rotting"] is False
    from datetime import datetime, timedelta, timezone
    stack.db("deals").deals.update_one(
        {"_id": deal["id"]}, {"$set": {"stage_entered_at": datetime.now(timezone.utc) - timedelta(days=4)}})
    assert api.get(f"/deals/{deal['id']}").json()["rotting"] is True


def test_deal_settings_are_configurable(api, unique):
    settings = api.get("/deal-settings").json()
    assert "website" in settings["lead_sources"] and "price" in settings["lost_reasons"]
    source = f"fair-{unique}"
    response = api.patch("/deal-settings", json={"lead_sources": settings["lead_sources"] + [source]})
    assert response.status_code == 200 and source in response.json()["lead_sources"]
    assert response.json()["lost_reasons"] == settings["lost_reasons"]
    pipeline = make_pipeline(api, unique)
    assert make_deal(api, pipeline, source=source)["source"] == source
    assert api.patch("/deal-settings", json={"lead_sources": []}).status_code == 422
    assert api.patch("/deal-settings", json={"lead_sources": settings["lead_sources"]}).status_code == 200
    assert api.post("/deals", json={"title": "t", "currency": "EUR", "source": source}).status_code == 422


def test_concurrent_moves_never_lose_history(api, unique):
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    deal = make_deal(api, pipeline)
    targets = [ids["Offer"], ids["New"]] * 8
    results = []

    def move(stage_id):
        results.append(api.request("POST", f"/deals/{deal['id']}/move",
                                   json={"stage_id": stage_id}).status_code)

    threads = [threading.Thread(target=move, args=(stage,)) for stage in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * len(targets)
    final = api.get(f"/deals/{deal['id']}").json()
    history = api.get(f"/deals/{deal['id']}/history", params={"limit": 100}).json()["items"]
    # every version step is one entry, and the entries chain: each starts where the last ended
    assert len(history) == final["version"]
    chain = list(reversed(history))
    assert chain[0]["from_stage_id"] is None
    for before, after in zip(chain, chain[1:]):
        assert after["from_stage_id"] == before["to_stage_id"]
    assert chain[-1]["to_stage_id"] == final["stage_id"]


def test_deal_events_reach_the_contact_timeline(api, record_events, unique):
    recorder = record_events("deals")
    contact = make_contact(api, unique)
    pipeline = make_pipeline(api, unique)
    ids = stage_ids(pipeline)
    deal = make_deal(api, pipeline, title=f"Big {unique}", contact_id=contact["id"])
    api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Offer"]})
    api.post(f"/deals/{deal['id']}/move", json={"stage_id": ids["Won"]})
    lost_deal = make_deal(api, pipeline, contact_id=contact["id"])
    api.post(f"/deals/{lost_deal['id']}/move", json={"stage_id": ids["Lost"], "lost_reason": "timing"})

    mine = lambda e: e["data"].get("ref", {}).get("id") in (deal["id"], lost_deal["id"])  # noqa: E731
    wait_until(lambda: len([e for e in recorder.drain(0.3) if mine(e)]) >= 7)
    events = [e for e in recorder.events if mine(e)]
    types = sorted(e["type"] for e in events)
    assert types == sorted(["deal_created", "deal_stage_changed", "deal_stage_changed", "deal_won",
                            "deal_created", "deal_stage_changed", "deal_lost"])
    changed = next(e for e in events if e["type"] == "deal_stage_changed")
    assert changed["data"]["from_stage_id"] == ids["New"] and changed["data"]["to_stage_id"] == ids["Offer"]
    assert changed["data"]["pipeline_id"] == pipeline["id"] and changed["data"]["deal_id"] == deal["id"]
    won = next(e for e in events if e["type"] == "deal_won")
    assert won["data"]["amount"] == 1000 and won["data"]["currency"] == "EUR"
    assert next(e for e in events if e["type"] == "deal_lost")["data"]["lost_reason"] == "timing"

    def timeline():
        items = api.get(f"/contacts/{contact['id']}/timeline").json()["items"]
        return items if len([i for i in items if i["kind"].startswith("deal_")]) >= 7 else None

    items = wait_until(timeline)
    assert items, "deal events never reached the timeline"
    kinds = [i["kind"] for i in items if i["kind"].startswith("deal_")]
    assert sorted(kinds) == types
    entry = next(i for i in items if i["kind"] == "deal_won")
    assert entry["ref"] == {"service": "deals", "type": "deal", "id": deal["id"]}
    assert entry["summary"] == f"Deal won: Big {unique}"


def test_contact_merge_repoints_deals(api, stack, unique):
    survivor = make_contact(api, unique)
    merged = make_contact(api, unique + "m", emails=[f"other.{unique}@example.com"])
    pipeline = make_pipeline(api, unique)
    deal = make_deal(api, pipeline, contact_id=merged["id"])
    untouched = make_deal(api, pipeline, contact_id=survivor["id"])
    data = {"survivor_id": survivor["id"], "merged_ids": [merged["id"]]}
    event_id = f"merge-{unique}"
    for _ in range(2):  # delivered twice: same result
        publish_event(stack.amqp_uri, "contacts", "contact_merged", data, event_id=event_id)
    assert wait_until(lambda: api.get(f"/deals/{deal['id']}").json()["contact_id"] == survivor["id"])
    # the list (the search index) applies the same merge from the same event
    assert wait_until(lambda: {d["id"] for d in api.get("/deals", params={
        "contact_id": survivor["id"]}).json()["items"]} == {deal["id"], untouched["id"]})
    assert api.get("/deals", params={"contact_id": merged["id"]}).json()["items"] == []


def test_agent_sees_only_own_deals(api, stack, unique):
    pipeline = make_pipeline(api, unique)
    mine = make_deal(api, pipeline, owner_id=stack.add_user(f"a-{unique}"))
    theirs = make_deal(api, pipeline, owner_id=stack.add_user(f"b-{unique}"))
    agent = {"user_id": f"a-{unique}", "user_role": "agent"}
    listed = stack.rpc.call("deals", "list_deals", {"pipeline_id": pipeline["id"]}, context=agent)
    assert [d["id"] for d in listed["items"]] == [mine["id"]]
    assert stack.rpc.call("deals", "get_deal", mine["id"], context=agent)["id"] == mine["id"]
    from crm_common.errors import NotFound
    try:
        stack.rpc.call("deals", "get_deal", theirs["id"], context=agent)
        raise AssertionError("an agent read another agent's deal")
    except NotFound:
        pass
    manager = {"user_id": f"m-{unique}", "user_role": "manager",
               "user_team_members": [f"a-{unique}", f"b-{unique}"]}
    listed = stack.rpc.call("deals", "list_deals", {"pipeline_id": pipeline["id"]}, context=manager)
    assert {d["id"] for d in listed["items"]} == {mine["id"], theirs["id"]}
    filtered = stack.rpc.call("deals", "list_deals", {"owner_id": f"b-{unique}"}, context=agent)
    assert filtered["items"] == []
    # the sales setup is for managers and admins
    from crm_common.errors import Forbidden
    try:
        stack.rpc.call("deals", "create_pipeline", {"name": "x", "stages": []}, context=agent)
        raise AssertionError("an agent created a pipeline")
    except Forbidden:
        pass


def test_openapi_documents_the_deals_api(api):
    spec = api.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/deals", "/api/v1/deals/{deal_id}/move", "/api/v1/deals/{deal_id}/history",
                 "/api/v1/pipelines", "/api/v1/targets/progress", "/api/v1/reports/funnel",
                 "/api/v1/reports/sales", "/api/v1/reports/forecast", "/api/v1/deal-settings"):
        assert path in spec["paths"], path


def test_roles_through_the_gateway(api, stack, make_user, unique):
    """Signed-in people: an agent's deals default to them and they see only their own;
    the sales setup (pipelines, lists, targets) is for managers and admins."""
    agent = make_user("agent", team=f"team-{unique}")
    pipeline = make_pipeline(api, unique)
    own = agent.post("/deals", json={"title": "Mine", "currency": "EUR", "pipeline_id": pipeline["id"]})
    assert own.status_code == 201, own.text
    assert own.json()["owner_id"] == agent.user["id"]
    other = make_deal(api, pipeline, owner_id=stack.add_user(f"someone-{unique}"))
    listed = agent.get("/deals", params={"pipeline_id": pipeline["id"]}).json()["items"]
    assert [d["id"] for d in listed] == [own.json()["id"]]
    assert agent.get(f"/deals/{other['id']}").status_code == 404
    assert agent.post(f"/deals/{other['id']}/move", json={"stage_id": stage_ids(pipeline)["Offer"]}).status_code == 404
    assert agent.post("/pipelines", json={"name": "x", "stages": [{"name": "a"}, {"name": "w", "kind": "won"},
                                                                   {"name": "l", "kind": "lost"}]}).status_code == 403
    assert agent.patch("/deal-settings", json={"lead_sources": ["x"]}).status_code == 403
    assert agent.post("/targets", json={"user_id": agent.user["id"], "period": "2026-01",
                                        "deals_count": 1}).status_code == 403
    sales = agent.get("/reports/sales", params={"pipeline_id": pipeline["id"]}).json()
    assert all(r["key"] == agent.user["id"] for r in sales["rows"])


def test_history_entry_survives_a_crash_between_the_two_writes(api, stack, unique):
    """The entry rides in the deal's own atomic update; if the process dies before writing
    it to deal_history, reading the history writes it (once)."""
    pipeline = make_pipeline(api, unique)
    deal = make_deal(api, pipeline)
    moved = api.post(f"/deals/{deal['id']}/move", json={"stage_id": stage_ids(pipeline)["Offer"]}).json()
    stack.db("deals").deal_history.delete_one({"_id": f"{deal['id']}:{moved['version']}"})
    for _ in range(2):
        history = api.get(f"/deals/{deal['id']}/history").json()["items"]
        assert [h["to_stage_id"] for h in history] == [stage_ids(pipeline)["Offer"], stage_ids(pipeline)["New"]]


def test_deleted_deal_restored(api, stack, unique, make_user):
    """POST /deals/{id}/restore: the deal is back, as it was; restoring a deal that is not
    deleted changes nothing; an agent restores only their own deals (another's is 404)."""
    pipeline = make_pipeline(api, unique)
    agent, other = make_user("agent"), make_user("agent")
    deal = make_deal(api, pipeline, owner_id=agent.user["id"], amount=4200)
    assert api.delete(f"/deals/{deal['id']}").status_code == 200
    assert api.get(f"/deals/{deal['id']}").status_code == 404
    assert other.post(f"/deals/{deal['id']}/restore").status_code == 404
    assert api.post(f"/deals/unknown-{unique}/restore").status_code == 404
    answer = agent.post(f"/deals/{deal['id']}/restore")
    assert answer.status_code == 200, answer.text
    restored = answer.json()
    assert restored["amount"] == 4200 and restored["version"] == deal["version"] + 2
    assert api.get(f"/deals/{deal['id']}").json()["amount"] == 4200
    again = api.post(f"/deals/{deal['id']}/restore").json()
    assert again["version"] == restored["version"]
