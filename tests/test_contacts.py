"""Contacts and companies end to end: gateway (gunicorn) -> RabbitMQ -> contacts service
-> SecantusDB, and the events it announces."""
import pytest


def make_contact(api, unique, **fields):
    body = {"first_name": "Mario", "last_name": f"Rossi{unique}",
            "emails": [f"mario.{unique}@example.com"], **fields}
    response = api.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_get_patch_delete_restore(api, unique):
    created = make_contact(api, unique, phones=["+39 333 123 4567".replace("4567", unique[:4].translate(str.maketrans("abcdef", "123456")))],
                           tags=["vip", "vip", "b2b"], custom={"budget": 1000, "segment": "smb", "ok": True},
                           birthday="1980-05-01", source="web", position="CEO")
    assert created["id"]
    assert created["tags"] == ["b2b", "vip"]
    assert created["emails"] == [{"email": f"mario.{unique}@example.com", "type": "work"}]
    assert created["phones"][0]["e164"].startswith("+39333")
    assert created["status"] == "lead" and created["do_not_contact"] is False
    assert created["created_at"].endswith("Z")

    got = api.get(f"/contacts/{created['id']}").json()
    assert got == created

    patched = api.patch(f"/contacts/{created['id']}", json={"status": "customer", "tags": ["vip"]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "customer"
    assert patched.json()["tags"] == ["vip"]
    assert patched.json()["first_name"] == "Mario"

    assert api.delete(f"/contacts/{created['id']}").status_code == 200
    assert api.get(f"/contacts/{created['id']}").status_code == 404
    listed = api.get("/contacts", params={"q": f"rossi{unique}"}).json()["items"]
    assert listed == []
    restored = api.post(f"/contacts/{created['id']}/restore")
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None
    assert api.get(f"/contacts/{created['id']}").status_code == 200


@pytest.mark.parametrize("typed", ["+39 333 {a} {b}", "333{a}{b}", "0039 333 {a} {b}",
                                   "+39-333-{a}-{b}", "(333) {a} {b}"])
def test_q_finds_phone_in_any_typed_form(api, unique, typed):
    digits = str(int(unique, 16))[-7:].rjust(7, "0")
    a, b = digits[:3], digits[3:]
    contact = make_contact(api, unique, phones=[f"+39 333 {a}{b}"])
    found = api.get("/contacts", params={"q": typed.format(a=a, b=b)}).json()["items"]
    assert [c["id"] for c in found] == [contact["id"]]


def test_q_finds_name_email_and_company(api, unique):
    company = api.post("/companies", json={"name": f"Zeta{unique} Srl"}).json()
    contact = make_contact(api, unique, first_name="Élodie", company_id=company["id"])
    for q in ("elodie", f"rossi{unique}", f"ÉLODIE ROSSI{unique}", f"zeta{unique}",
              f"mario.{unique}@example.com", f"mario.{unique}"):
        ids = [c["id"] for c in api.get("/contacts", params={"q": q}).json()["items"]]
        assert contact["id"] in ids, q
    # renaming the company keeps search by the new name working
    api.patch(f"/companies/{company['id']}", json={"name": f"Omega{unique}"})
    ids = [c["id"] for c in api.get("/contacts", params={"q": f"omega{unique}"}).json()["items"]]
    assert ids == [contact["id"]]


def test_filters_sort_cursor_and_total(api, stack, unique):
    owner = stack.add_user(f"owner-{unique}")
    made = [make_contact(api, f"{unique}{i}", owner_id=owner, tags=[f"t{unique}"],
                         source="fair", status="prospect" if i % 2 else "lead",
                         phones=[f"+3933{int(unique, 16) % 10**7:07d}{i}"])
            for i in range(7)]
    pages, cursor = [], None
    while True:
        params = {"owner_id": owner, "limit": 3, "sort": "created_at"}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/contacts", params=params).json()
        pages.append([c["id"] for c in body["items"]])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sum(pages, []) == [c["id"] for c in made]
    newest = api.get("/contacts", params={"owner_id": owner, "limit": 2}).json()["items"]
    assert [c["id"] for c in newest] == [made[6]["id"], made[5]["id"]]

    both = api.get("/contacts", params={"tag": f"t{unique}", "status": "prospect",
                                        "source": "fair", "include_total": "true"}).json()
    assert both["total"] == 3 and len(both["items"]) == 3
    assert "total" not in api.get("/contacts", params={"owner_id": owner}).json()
    by_name = api.get("/contacts", params={"owner_id": owner, "sort": "name"}).json()["items"]
    assert [c["last_name"] for c in by_name] == sorted(c["last_name"] for c in made)

    window = api.get("/contacts", params={"owner_id": owner,
                                          "created_after": made[2]["created_at"],
                                          "created_before": made[5]["created_at"]}).json()
    assert {c["id"] for c in window["items"]} == {c["id"] for c in made[2:5]}
    never = api.get("/contacts", params={"owner_id": owner,
                                         "not_contacted_since": "2020-01-01T00:00:00Z"}).json()
    assert len(never["items"]) == 7


def test_lookup_by_phone_and_email_uses_an_index(api, stack, unique):
    contact = make_contact(api, unique, phones=["+39 02 1234 5678"])
    for phone in ("+390212345678", "0039 02 1234 5678", "02 1234 5678"):
        items = api.get("/contacts/lookup", params={"phone": phone}).json()["items"]
        assert contact["id"] in [c["id"] for c in items], phone
    items = api.get("/contacts/lookup", params={"email": f"MARIO.{unique}@example.com"}).json()["items"]
    assert [c["id"] for c in items] == [contact["id"]]
    for params in ({"phone": "+390212345678"}, {"email": f"mario.{unique}@example.com"}):
        plan = stack.rpc.call("contacts", "explain_lookup", params)
        text = str(plan)
        assert "IXSCAN" in text and "COLLSCAN" not in text, text[:2000]
    # a deleted contact is no longer found by lookup, and is again once restored
    api.delete(f"/contacts/{contact['id']}")
    assert api.get("/contacts/lookup", params={"phone": "+390212345678"}).json()["items"] == []
    api.post(f"/contacts/{contact['id']}/restore")
    items = api.get("/contacts/lookup", params={"phone": "+390212345678"}).json()["items"]
    assert [c["id"] for c in items] == [contact["id"]]
    assert api.get("/contacts/lookup").status_code == 422
    assert api.get("/contacts/lookup", params={"phone": "12", "email": "a@b.c"}).status_code == 422


def test_duplicate_email_or_phone_is_409_unless_forced(api, unique):
    first = make_contact(api, unique)
    again = api.post("/contacts", json={"first_name": "Other", "emails": [f"MARIO.{unique}@example.com"]})
    assert again.status_code == 409
    assert again.json()["error"]["details"]["existing_ids"] == [first["id"]]
    forced = api.post("/contacts", params={"force": "true"},
                      json={"first_name": "Other", "emails": [f"mario.{unique}@example.com"]})
    assert forced.status_code == 201
    assert forced.json()["possible_duplicates"] == [first["id"]]


def test_company_lists_its_people(api, unique):
    company = api.post("/companies", json={"name": f"Acme {unique}", "domain": "acme.example",
                                           "phones": ["+39 06 1234 5678"],
                                           "address": {"city": "Roma", "country": "IT"}})
    assert company.status_code == 201, company.text
    cid = company.json()["id"]
    people = [make_contact(api, f"{unique}{i}", company_id=cid) for i in range(3)]
    got = api.get(f"/companies/{cid}").json()
    assert {p["id"] for p in got["people"]} == {p["id"] for p in people}
    assert got["people"][0]["company_name"] == f"Acme {unique}"
    listed = api.get("/companies", params={"q": f"acme {unique}"}).json()["items"]
    assert [c["id"] for c in listed] == [cid]
    assert api.delete(f"/companies/{cid}").status_code == 200
    assert api.get(f"/companies/{cid}").status_code == 404
    assert api.post(f"/companies/{cid}/restore").status_code == 200


def test_timeline_has_its_final_shape(api, unique):
    contact = make_contact(api, unique)
    api.patch(f"/contacts/{contact['id']}", json={"position": "CTO"})
    body = api.get(f"/contacts/{contact['id']}/timeline").json()
    assert set(body) == {"items", "next_cursor"}
    kinds = [e["kind"] for e in body["items"]]
    assert kinds == ["contact_updated", "contact_created"]
    entry = body["items"][0]
    assert set(entry) >= {"id", "contact_id", "occurred_at", "kind", "summary", "actor_id", "ref", "data"}
    assert entry["data"]["fields"] == ["position"]
    assert api.get("/contacts/nope/timeline").status_code == 404


def test_events_follow_successful_writes_only(api, record_events, unique):
    recorder = record_events("contacts")
    contact = make_contact(api, unique)
    api.patch(f"/contacts/{contact['id']}", json={"position": "CFO"})
    api.delete(f"/contacts/{contact['id']}")
    wanted = {"contact_created", "contact_updated", "contact_deleted"}
    for event_type in wanted:
        found = recorder.wait_for(lambda e, t=event_type: e["type"] == t and
                                  (e["data"].get("contact", {}).get("id") == contact["id"]
                                   or e["data"].get("contact_id") == contact["id"]))
        assert found, event_type
        assert found[0]["event_id"] and found[0]["source"] == "contacts"
    # a rejected write announces nothing: the event of the write after them, published by
    # the same process, is the next one
    before = len(recorder.events)
    assert api.post("/contacts", json={"first_name": "X", "emails": ["nope"]}).status_code == 422
    assert api.patch(f"/contacts/{contact['id']}x", json={"position": "X"}).status_code == 404
    assert api.post(f"/contacts/{contact['id']}/restore").status_code == 200
    assert recorder.wait_for(lambda e: e["type"] == "contact_restored")
    assert [e["type"] for e in recorder.events[before:]] == ["contact_restored"]


def test_bad_input_is_rejected_and_writes_nothing(api, stack, unique):
    contacts = stack.db("contacts")["contacts"]
    count = contacts.count_documents({})
    cases = [
        ({"first_name": "A", "emails": ["not-an-email"]}, "emails"),
        ({"first_name": "A", "phones": ["call me maybe"]}, "phones"),
        ({"first_name": "A", "birthday": "31/12/1990"}, "birthday"),
        ({"first_name": 12}, "first_name"),
        ({"first_name": "A", "status": "vip"}, "status"),
        ({"first_name": "A", "custom": {"nested": {"x": 1}}}, "custom"),
        ({"first_name": "A", "custom": {"$where": "x"}}, "custom"),
        ({"first_name": "A", "company_id": "unknown"}, "company_id"),
        ({"position": "CEO"}, "_schema"),
    ]
    for body, field in cases:
        response = api.post("/contacts", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert field in error["details"]["fields"], (body, error)
    malformed = api.post("/contacts", data="{bad json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_request"
    wrong_type = api.post("/contacts", data="first_name=A", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong_type.status_code == 415
    too_big = api.post("/contacts", json={"first_name": "A", "custom": {"x": "y" * 1500},
                                          "tags": ["t"] * 10, "position": "p" * (2 * 1024 * 1024)})
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    assert api.get("/contacts/does-not-exist").status_code == 404
    assert api.get("/contacts", params={"limit": 501}).status_code == 422
    assert api.get("/contacts", params={"created_after": "yesterday"}).status_code == 422
    assert api.get("/contacts", params={"cursor": "garbage"}).status_code == 422
    assert api.get("/contacts", params={"sort": "password"}).status_code == 422
    assert api.patch("/contacts/nope", json={"first_name": "B"}).status_code == 404
    assert contacts.count_documents({}) == count


def test_other_services_events_land_on_the_timeline_once(api, stack, unique):
    from crm_common.messaging.publish import publish_event
    contact = make_contact(api, unique)
    data = {"call": {"id": f"call-{unique}"}, "contact_id": contact["id"],
            "summary": "Call answered, 3 min",
            "ref": {"type": "call", "id": f"call-{unique}"}, "direction": "inbound",
            "contacted_at": "2030-01-02T10:00:00Z"}
    event_id = f"evt-{unique}"
    for _ in range(2):  # delivered twice: one entry
        publish_event(stack.amqp_uri, "telephony", "call_ended", data, event_id=event_id)
    older = dict(data, contacted_at="2029-01-01T00:00:00Z")
    publish_event(stack.amqp_uri, "telephony", "call_answered", older)

    import time
    deadline = time.time() + 10
    while time.time() < deadline:
        items = api.get(f"/contacts/{contact['id']}/timeline").json()["items"]
        if len(items) >= 3:
            break
        time.sleep(0.1)
    kinds = sorted(e["kind"] for e in items)
    assert kinds == ["call_answered", "call_ended", "contact_created"]
    call = next(e for e in items if e["kind"] == "call_ended")
    assert call["summary"] == "Call answered, 3 min"
    assert call["ref"] == {"service": "telephony", "type": "call", "id": f"call-{unique}"}
    assert call["data"]["direction"] == "inbound"
    # the later touch wins even though the older one arrived last
    assert api.get(f"/contacts/{contact['id']}").json()["last_contacted_at"] == "2030-01-02T10:00:00Z"


def test_message_events_handled_together_land_once_and_touch_each_contact_once(api, stack,
                                                                             unique):
    """conversations' message events go through the follower's group commit (one insert of
    the entries, one write per contact): a burst with a redelivery and touches out of
    order leaves one entry per message and each contact's latest touch."""
    from crm_common.messaging.publish import publish_event
    people = [make_contact(api, f"{unique}{n}") for n in range(2)]
    sent = []
    for n in range(12):
        contact = people[n % 2]
        when = f"2031-01-01T10:{n:02d}:00Z" if n < 10 else "2030-06-01T00:00:00Z"
        data = {"message_id": f"m-{unique}-{n}", "conversation_id": f"c-{unique}",
                "contact_id": contact["id"], "channel": "email", "direction": "outbound",
                "subject": f"S{n}", "preview": "hi", "summary": f"email message sent: S{n}",
                "ref": {"type": "message", "id": f"m-{unique}-{n}"}, "contacted_at": when}
        sent.append((f"m-{unique}-{n}:message_sent:{contact['id']}", data))
    sent.append(sent[3])  # delivered twice: one entry
    for event_id, data in sent:
        publish_event(stack.amqp_uri, "conversations", "message_sent", data, event_id=event_id)
    publish_event(stack.amqp_uri, "conversations", "message_received", {
        "message_id": f"r-{unique}", "conversation_id": f"c-{unique}",
        "contact_id": people[0]["id"], "channel": "telegram", "direction": "inbound",
        "summary": "telegram message from them", "ref": {"type": "message", "id": f"r-{unique}"}})

    import time
    deadline = time.time() + 15
    while time.time() < deadline:
        kinds = [sorted(e["kind"] for e in api.get(f"/contacts/{p['id']}/timeline").json()["items"])
                 for p in people]
        if len(kinds[0]) >= 8 and len(kinds[1]) >= 7:
            break
        time.sleep(0.1)
    assert kinds[0] == ["contact_created", "message_received"] + ["message_sent"] * 6
    assert kinds[1] == ["contact_created"] + ["message_sent"] * 6
    time.sleep(1)  # nothing more comes (the redelivery)
    assert len(api.get(f"/contacts/{people[0]['id']}/timeline").json()["items"]) == 8
    # each contact's latest touch, whatever the order (n=8 and n=9; n=10, 11 are older)
    assert api.get(f"/contacts/{people[0]['id']}").json()["last_contacted_at"] == "2031-01-01T10:08:00Z"
    assert api.get(f"/contacts/{people[1]['id']}").json()["last_contacted_at"] == "2031-01-01T10:09:00Z"
