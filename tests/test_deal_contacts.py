"""Several contacts on a deal, each with a role, one primary; the contact card's deals."""


def person(api, unique, name):
    response = api.post("/contacts", json={"first_name": name, "last_name": f"Role{unique}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_deal_with_three_contacts_in_roles(api, stack, make_user, unique, record_events):
    recorder = record_events("deals")
    boss, accountant, lawyer = (person(api, unique, n) for n in ("Boss", "Acc", "Law"))
    deal = api.post("/deals", json={"title": f"Big {unique}", "contact_id": boss,
                                    "amount": 500000, "currency": "EUR"}).json()
    # a deal from before the list: its contact is the primary one
    assert api.get(f"/deals/{deal['id']}/contacts").json()["contacts"] == [
        {"contact_id": boss, "role": None, "primary": True}]

    people = [{"contact_id": boss, "role": "decision maker"},
              {"contact_id": accountant, "role": "accountant", "primary": True},
              {"contact_id": lawyer, "role": "lawyer"}]
    answer = api.put(f"/deals/{deal['id']}/contacts", json={"contacts": people})
    assert answer.status_code == 200, answer.text
    got = api.get(f"/deals/{deal['id']}").json()
    assert got["contact_id"] == accountant
    assert [(p["contact_id"], p["role"], p["primary"]) for p in got["contacts"]] == [
        (boss, "decision maker", False), (accountant, "accountant", True), (lawyer, "lawyer", False)]
    assert recorder.wait_for(lambda e: e["type"] == "deal_updated"
                             and e["data"]["deal_id"] == deal["id"]
                             and "contacts" in e["data"]["changed"])

    # the contact card lists the deals where the person takes part, with the role
    for contact_id, role, primary in ((lawyer, "lawyer", False), (accountant, "accountant", True)):
        cards = api.get(f"/contacts/{contact_id}/deals").json()["items"]
        assert [(d["id"], d["role"], d["primary"]) for d in cards] == [(deal["id"], role, primary)]
    # an agent sees only the deals they see, of the contacts they see
    agent = make_user("agent")
    assert agent.get(f"/contacts/{lawyer}/deals").status_code == 404
    theirs = api.post("/contacts", json={"first_name": "Mine", "last_name": unique,
                                         "owner_id": agent.user["id"]}).json()
    assert agent.get(f"/contacts/{theirs['id']}/deals").json()["items"] == []
    assert agent.put(f"/deals/{deal['id']}/contacts",
                     json={"contacts": []}).status_code == 404

    # bad input: nothing changes
    for bad in ({"contacts": [{"contact_id": boss}, {"contact_id": lawyer}]},  # no primary
                {"contacts": [{"contact_id": boss, "primary": True},
                              {"contact_id": lawyer, "primary": True}]},
                {"contacts": [{"contact_id": boss, "primary": True},
                              {"contact_id": boss}]},
                {"contacts": [{"contact_id": "no-such", "primary": True}]},
                {"contacts": [{"contact_id": boss, "primary": True, "role": "x" * 51}]},
                {}):
        response = api.put(f"/deals/{deal['id']}/contacts", json=bad)
        assert response.status_code == 422, (bad, response.text)
    assert api.get(f"/deals/{deal['id']}").json()["contact_id"] == accountant

    # taking someone off: no longer on their card
    api.put(f"/deals/{deal['id']}/contacts",
            json={"contacts": [{"contact_id": accountant, "role": "accountant", "primary": True}]})
    assert api.get(f"/contacts/{lawyer}/deals").json()["items"] == []
    # a deleted contact has no card (found by the fuzz job's use-after-free check)
    assert api.delete(f"/contacts/{lawyer}").status_code == 200
    for sub in ("deals", "timeline"):
        gone = api.get(f"/contacts/{lawyer}/{sub}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found", gone.text
    assert api.post(f"/contacts/{lawyer}/restore").status_code == 200
    assert api.get(f"/contacts/{lawyer}/timeline").json()["items"]


def test_a_merge_moves_roles_notes_and_commitments_to_the_survivor(api, stack, unique):
    import time
    boss, lawyer, survivor = (person(api, unique, n) for n in ("Boss2", "Law2", "Surv2"))
    deal = api.post("/deals", json={"title": f"Merge {unique}", "contact_id": boss,
                                    "currency": "EUR"}).json()
    api.put(f"/deals/{deal['id']}/contacts", json={"contacts": [
        {"contact_id": boss, "role": "decision maker", "primary": True},
        {"contact_id": lawyer, "role": "lawyer"}]})
    note = api.post("/notes", json={"record_type": "contact", "record_id": lawyer,
                                    "body": "Lawyer prefers mornings"}).json()
    merged = api.post(f"/contacts/{survivor}/merge", json={"source_ids": [lawyer]})
    assert merged.status_code == 200, merged.text

    def settled():
        people = api.get(f"/deals/{deal['id']}/contacts").json()["contacts"]
        notes = api.get("/notes", params={"record_type": "contact",
                                          "record_id": survivor}).json().get("items", [])
        return people, notes
    deadline = time.time() + 20
    while True:
        people, notes = settled()
        if (survivor in [p["contact_id"] for p in people] and notes) or time.time() > deadline:
            break
        time.sleep(0.3)
    assert [(p["contact_id"], p["role"]) for p in people] == [
        (boss, "decision maker"), (survivor, "lawyer")]
    assert [n["id"] for n in notes] == [note["id"]]
    cards = api.get(f"/contacts/{survivor}/deals").json()["items"]
    assert [(d["id"], d["role"]) for d in cards] == [(deal["id"], "lawyer")]


def test_read_only_deal_contacts_refuse_every_write_of_them(api, stack, make_user, unique):
    """A role whose deal contact_id is read-only changes it neither by PATCH nor by
    PUT /deals/{id}/contacts (which sets it) nor by a merge (which repoints deals); a role
    that only reads deals cannot replace a deal's people: 403, nothing changed."""
    first, second = person(api, unique, "First"), person(api, unique, "Second")
    deal = api.post("/deals", json={"title": f"Locked {unique}", "contact_id": first,
                                    "amount": 10, "currency": "EUR"}).json()
    for name, deals, fields in (
            (f"fixer-{unique}", {"read": "all", "edit": "all"}, {"deals": {"contact_id": "read"}}),
            (f"peek-{unique}", {"read": "all"}, {})):
        created = api.post("/roles", json={"name": name, "label": name, "permissions": {
            "deals": deals, "contacts": {"read": "all", "create": "all", "edit": "all"}},
            "fields": fields})
        assert created.status_code == 201, created.text
    fixer, peek = make_user(f"fixer-{unique}"), make_user(f"peek-{unique}")
    swap = {"contacts": [{"contact_id": second, "role": "buyer", "primary": True}]}
    refused = fixer.put(f"/deals/{deal['id']}/contacts", json=swap)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"]["fields"] == ["contacts"]  # locked with it
    assert fixer.patch(f"/deals/{deal['id']}", json={"contact_id": second}).status_code == 403
    merged = fixer.post(f"/contacts/{first}/merge", json={"source_ids": [second]})
    assert merged.status_code == 403, merged.text
    assert merged.json()["error"]["details"].get("fields") == [
        "deals.contact_id", "deals.contacts"], merged.text
    assert peek.put(f"/deals/{deal['id']}/contacts", json=swap).status_code == 403
    got = api.get(f"/deals/{deal['id']}").json()
    assert got["contact_id"] == first and [p["contact_id"] for p in got["contacts"]] == [first]
    assert api.get(f"/contacts/{second}").status_code == 200  # not merged away
    # what the grant leaves open still works: another field, and reading the people
    assert fixer.patch(f"/deals/{deal['id']}", json={"title": f"Open {unique}"}).status_code == 200
    assert fixer.get(f"/deals/{deal['id']}/contacts").json()["contacts"][0]["contact_id"] == first


def test_hidden_deal_contacts_are_not_shown(api, stack, make_user, unique):
    """A role for which a deal's contact is hidden reads the deal without it, and neither
    reads nor replaces its people (403)."""
    first = person(api, unique, "Hush")
    deal = api.post("/deals", json={"title": f"Hush {unique}", "contact_id": first,
                                    "currency": "EUR"}).json()
    created = api.post("/roles", json={"name": f"blind-{unique}", "label": "Blind",
                                       "permissions": {"deals": {"read": "all", "edit": "all"}},
                                       "fields": {"deals": {"contact_id": "hidden"}}})
    assert created.status_code == 201, created.text
    blind = make_user(f"blind-{unique}")
    read = blind.get(f"/deals/{deal['id']}").json()
    assert "contact_id" not in read and "contacts" not in read and read["title"] == deal["title"]
    assert blind.get(f"/deals/{deal['id']}/contacts").status_code == 403
    assert blind.put(f"/deals/{deal['id']}/contacts", json={"contacts": [
        {"contact_id": first, "primary": True}]}).status_code == 403
