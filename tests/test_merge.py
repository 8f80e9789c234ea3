"""Probable duplicates across the base and merging them: the survivor takes every phone,
email, tag and custom field (survivor wins conflicts), the sources are soft-deleted with
merged_into and restorable, contact_merged is announced and deals follow the survivor."""
import time


def make(api, unique, suffix, **fields):
    body = {"first_name": "Dup", "last_name": f"Licate{unique}", **fields}
    response = api.post("/contacts", params={"force": "true"}, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def phone(unique, n):
    return f"+39 333 {int(unique, 16) % 10**5:05d}{n:02d}"


def e164(text):
    return text.replace(" ", "")


def wait_until(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_duplicates_are_grouped_and_scored(api, unique):
    company = api.post("/companies", json={"name": f"Dupco {unique}"}).json()
    a = make(api, unique, "a", emails=[f"same.{unique}@example.com"], phones=[phone(unique, 1)])
    b = make(api, unique, "b", first_name="Other", emails=[f"SAME.{unique}@example.com"])
    c = make(api, unique, "c", first_name="Third", phones=[phone(unique, 1)])
    d = make(api, unique, "d", first_name="Named", last_name=f"Twin{unique}",
             company_id=company["id"])
    e = make(api, unique, "e", first_name="named", last_name=f"TWIN{unique}",
             company_id=company["id"])
    lonely = make(api, unique, "f", first_name="Lonely", emails=[f"lonely.{unique}@example.com"])
    groups = api.get("/contacts/duplicates", params={"limit": 500}).json()["items"]
    by_member = {i: g for g in groups for i in g["contact_ids"]}
    first = by_member[a["id"]]
    assert set(first["contact_ids"]) == {a["id"], b["id"], c["id"]}  # email + phone chain
    assert first["reasons"] == ["email", "phone"] and first["score"] > 0.99
    assert f"email:same.{unique}@example.com" in first["keys"]
    named = by_member[d["id"]]
    assert set(named["contact_ids"]) == {d["id"], e["id"]}
    assert named["reasons"] == ["name_company"] and named["score"] == 0.7
    assert {x["id"] for x in named["contacts"]} == {d["id"], e["id"]}
    assert lonely["id"] not in by_member
    strong = api.get("/contacts/duplicates", params={"limit": 500, "min_score": 0.9}).json()
    assert d["id"] not in {i for g in strong["items"] for i in g["contact_ids"]}
    assert api.get("/contacts/duplicates", params={"limit": 0}).status_code == 422


def test_merge_keeps_everything_announces_and_repoints_a_deal_a_task_and_a_call(api, stack, record_events,
                                                              unique):
    recorder = record_events("contacts")
    company = api.post("/companies", json={"name": f"Mergeco {unique}"}).json()
    survivor = make(api, unique, "s", emails=[f"s.{unique}@example.com"],
                    phones=[phone(unique, 1)], tags=["a"], custom={"tier": "gold", "x": 1})
    first = make(api, unique, "1", first_name="Ignored", emails=[f"one.{unique}@example.com"],
                 phones=[phone(unique, 1), phone(unique, 2)], tags=["b"], position="CTO",
                 custom={"tier": "silver", "y": 2}, company_id=company["id"])
    second = make(api, unique, "2", emails=[f"two.{unique}@example.com"], tags=["c", "a"],
                  do_not_contact=True, birthday="1990-01-02", position="CEO")
    deal = api.post("/deals", json={"title": f"Deal {unique}", "currency": "EUR",
                                    "amount": 1000, "contact_id": first["id"]})
    assert deal.status_code == 201, deal.text
    me = api.get("/users/me").json()["id"]
    task = api.post("/tasks", json={"title": f"Call {unique}", "kind": "call", "assignee_id": me,
                                    "due_at": "2030-01-01T10:00:00Z", "contact_id": first["id"]})
    assert task.status_code == 201, task.text
    ring = api.post("/telephony/events", json={
        "event_id": f"merge-{unique}", "provider": "mergetest", "call_id": f"m-{unique}",
        "direction": "inbound", "from": phone(unique, 2), "to": "+390200000009",
        "state": "ringing"})
    assert ring.status_code == 200, ring.text
    call_id = ring.json()["call"]["id"]
    assert api.get(f"/calls/{call_id}").json()["contact_id"] == first["id"]

    merged = api.post(f"/contacts/{survivor['id']}/merge",
                      json={"source_ids": [first["id"], second["id"]]})
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert body["id"] == survivor["id"] and body["merged_ids"] == [first["id"], second["id"]]
    assert body["first_name"] == "Dup"  # the survivor's value wins
    assert [e["email"] for e in body["emails"]] == [f"s.{unique}@example.com",
                                                    f"one.{unique}@example.com",
                                                    f"two.{unique}@example.com"]
    assert [p["e164"] for p in body["phones"]] == [e164(phone(unique, 1)), e164(phone(unique, 2))]
    assert body["tags"] == ["a", "b", "c"]
    assert body["custom"] == {"tier": "gold", "x": 1, "y": 2}
    assert body["position"] == "CTO"  # empty on the survivor: the first source's
    assert body["company_id"] == company["id"] and body["company_name"] == f"Mergeco {unique}"
    assert body["birthday"] == "1990-01-02" and body["do_not_contact"] is True

    # the sources are gone from reads and lookups, and kept with merged_into
    assert api.get(f"/contacts/{first['id']}").status_code == 404
    found = api.get("/contacts/lookup", params={"email": f"one.{unique}@example.com"}).json()
    assert [c["id"] for c in found["items"]] == [survivor["id"]]
    stored = stack.db("contacts")["contacts"].find_one({"_id": first["id"]})
    assert stored["merged_into"] == survivor["id"] and stored["deleted_at"] is not None
    assert stack.db("contacts")["merges"].find_one({"survivor_id": survivor["id"]})[
        "merged_ids"] == [first["id"], second["id"]]

    event = recorder.wait_for(lambda e: e["type"] == "contact_merged"
                              and e["data"]["survivor_id"] == survivor["id"])
    assert event and event[0]["data"]["merged_ids"] == [first["id"], second["id"]]
    timeline = api.get(f"/contacts/{survivor['id']}/timeline").json()["items"]
    assert "contact_merged" in [t["kind"] for t in timeline]

    # deals follow the survivor (the deals service handles contact_merged)
    repointed = wait_until(lambda: api.get(f"/deals/{deal.json()['id']}").json()
                           .get("contact_id") == survivor["id"])
    assert repointed, api.get(f"/deals/{deal.json()['id']}").json()
    # so do tasks and calls (their services handle contact_merged too)
    assert wait_until(lambda: api.get(f"/tasks/{task.json()['id']}").json()
                      .get("contact_id") == survivor["id"]), api.get(f"/tasks/{task.json()['id']}").json()
    assert wait_until(lambda: api.get(f"/calls/{call_id}").json()
                      .get("contact_id") == survivor["id"]), api.get(f"/calls/{call_id}").json()

    # a merged contact is restorable
    assert api.post(f"/contacts/{second['id']}/restore").status_code == 200
    assert api.get(f"/contacts/{second['id']}").status_code == 200


def test_bad_merges_change_nothing(api, unique):
    survivor = make(api, unique, "s", emails=[f"bad.{unique}@example.com"])
    other = make(api, unique, "o", emails=[f"bad2.{unique}@example.com"])
    cases = [({"source_ids": []}, 422), ({"source_ids": [survivor["id"]]}, 422),
             ({"source_ids": ["nope"]}, 422), ({}, 422), ({"source_ids": "x"}, 422),
             ({"source_ids": [other["id"]], "keep": {"first_name": "stranger"}}, 422),
             ({"source_ids": [other["id"]], "keep": {"status": other["id"]}}, 422)]
    for body, status in cases:
        response = api.post(f"/contacts/{survivor['id']}/merge", json=body)
        assert response.status_code == status, (body, response.text)
    assert api.post("/contacts/nope/merge", json={"source_ids": [other["id"]]}).status_code == 404
    assert api.get(f"/contacts/{other['id']}").status_code == 200
    assert api.get(f"/contacts/{survivor['id']}").json() == survivor
