"""Custom roles through the real stack: an admin-defined "operator" edits contact details but
is refused deals, reports, search and exports; a changed role holds from the next request;
bad roles are refused."""
from tests.test_stream import SseClient
from tests.test_search import settle, wait_ready


def test_operator_role_edits_contacts_but_not_deals(api, stack, make_user, unique):
    name = f"op-{unique}"
    bad_roles = ({"name": f"x-{unique}", "label": "X", "permissions": {}},
                 {"name": f"y-{unique}", "label": "Y", "permissions": {"contacts": {"read": None}}},
                 {"name": "admin", "label": "A", "permissions": {"contacts": {"read": "all"}}},
                 {"name": f"z-{unique}", "label": "Z", "permissions": {"planets": {"read": "all"}}},
                 {"name": f"w-{unique}", "label": "W", "permissions": {"contacts": {"read": "most"}}},
                 {"name": f"v-{unique}", "label": "V", "permissions": {"contacts": {"fly": "all"}}},
                 # the document's pattern ends the string at `$`; Python's passed a final "\n"
                 {"name": f"n-{unique}\n", "label": "N", "permissions": {"contacts": {"read": "all"}}})
    for bad in bad_roles:
        answer = api.post("/roles", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    created = api.post("/roles", json={"name": name, "label": "Data-entry operator", "permissions": {
        "contacts": {"read": "all", "create": "all", "edit": "all"},
        "companies": {"read": "all"}}})
    assert created.status_code == 201, created.text
    assert api.post("/roles", json={"name": name, "label": "again", "permissions": {
        "contacts": {"read": "all"}}}).status_code == 409
    listed = {r["name"]: r for r in api.get("/roles").json()["items"]}
    assert {"admin", "manager", "agent", name} <= set(listed) and listed["admin"]["built_in"]
    assert api.patch("/roles/admin", json={"label": "Boss"}).status_code == 409
    assert api.post("/users", json={"email": f"ghost-{unique}@crm.test", "password": "x" * 12,
                                    "name": "G", "role": f"nope-{unique}"}).status_code == 422

    operator = make_user(name)
    # what the console hides follows the grants (GET /users/me)
    held = operator.get("/users/me").json()["permissions"]
    assert held["contacts:read"] == held["contacts:write"] == "all" and held["users:self"] == "self"
    assert "deals:read" not in held and "users:read" not in held
    someone = make_user("agent")
    theirs = api.post("/contacts", json={"first_name": "Other", "last_name": unique,
                                         "owner_id": someone.user["id"]}).json()
    deal = api.post("/deals", json={"title": f"Secret {unique}", "amount": 990000,
                                    "currency": "EUR", "owner_id": someone.user["id"]}).json()

    # contact details: read, create and edit anyone's (scope all)
    assert operator.post("/contacts", json={"first_name": "Op", "last_name": unique}).status_code == 201
    edited = operator.patch(f"/contacts/{theirs['id']}", json={"position": "CFO"})
    assert edited.status_code == 200, edited.text
    seen = operator.get("/contacts", params={"owner_id": someone.user["id"]})
    assert seen.status_code == 200, seen.text
    assert theirs["id"] in [c["id"] for c in seen.json()["items"]]
    # but nothing of deals, and no delete, export, reports or search
    for method, path, kwargs in (("get", "/deals", {}), ("get", f"/deals/{deal['id']}", {}),
                                 ("post", "/deals", {"json": {"title": "x", "currency": "EUR"}}),
                                 ("delete", f"/contacts/{theirs['id']}", {}),
                                 ("get", "/contacts/export", {}),
                                 ("get", "/reports/sales", {}), ("get", "/search", {"params": {"q": "Secret"}}),
                                 ("get", "/roles", {})):
        answer = getattr(operator, method)(path, **kwargs)
        assert answer.status_code == 403, (method, path, answer.text)

    # the live stream: contact events, never a deal's (not even one they own)
    sse = SseClient(stack.stream_url, {"Authorization": operator.headers["Authorization"]})
    try:
        own_deal = api.post("/deals", json={"title": f"Theirs {unique}", "amount": 5,
                                            "currency": "EUR", "owner_id": operator.user["id"]})
        assert own_deal.status_code == 201, own_deal.text
        contact = api.post("/contacts", json={"first_name": "Live", "last_name": unique,
                                              "owner_id": someone.user["id"]}).json()
        assert sse.wait_for(lambda e: e[1] == "contact_created"
                            and e[2]["data"]["contact"]["id"] == contact["id"], timeout=20)
        assert not [e for e in sse.events if e[1].startswith("deal_")], sse.events
    finally:
        sse.close()

    # a changed role holds from the next request: deals of their own only
    changed = api.patch(f"/roles/{name}", json={"permissions": {
        "contacts": {"read": "all", "create": "all", "edit": "all"}, "deals": {"read": "own"}}})
    assert changed.status_code == 200, changed.text
    # (the list reads the search index, which another user's write reaches within a second)
    mine, _ = settle(lambda: (lambda answer: answer if answer.status_code != 200 or [
        d["id"] for d in answer.json()["items"]] == [own_deal.json()["id"]] else None)(
        operator.get("/deals")))
    assert mine and mine.status_code == 200, mine.text if mine else "never listed"
    assert [d["id"] for d in mine.json()["items"]] == [own_deal.json()["id"]]
    assert operator.get(f"/deals/{deal['id']}").status_code == 404
    assert operator.patch(f"/contacts/{theirs['id']}", json={"position": "CEO"}).status_code == 200

    # a role people have cannot be deleted; an unused one can
    assert api.delete(f"/roles/{name}").status_code == 409
    spare = api.post("/roles", json={"name": f"spare-{unique}", "label": "Spare",
                                     "permissions": {"tasks": {"read": "own"}}})
    assert spare.status_code == 201
    assert api.delete(f"/roles/spare-{unique}").status_code == 200


def test_field_grants_hide_amounts_and_refuse_read_only_writes(api, stack, make_user, unique):
    """A "seller" sees and edits deals but never their amount (reads, lists, search,
    reports, stream), reads a custom field it may not change, and exports contacts without
    their emails."""
    key = f"lvl_{unique[:8]}".lower()
    assert api.post("/custom-fields", json={"entity": "deal", "key": key, "label": "Level",
                                            "type": "number"}).status_code == 201
    bad = api.post("/roles", json={"name": f"bad-{unique}", "label": "B", "permissions": {
        "deals": {"read": "all"}}, "fields": {"deals": {"planet": "hidden"}}})
    assert bad.status_code == 422 and "planet" in bad.text
    role = api.post("/roles", json={"name": f"seller-{unique}", "label": "Seller", "permissions": {
        "deals": {"read": "all", "edit": "all"}, "contacts": {"read": "all", "export": "all"},
        "search": {"read": "all"}, "reports": {"read": "all"}},
        "fields": {"deals": {"amount": "hidden", f"custom.{key}": "read"},
                   "contacts": {"emails": "hidden"}}})
    assert role.status_code == 201 and role.json()["fields"]["deals"]["amount"] == "hidden"
    seller = make_user(f"seller-{unique}")
    assert seller.get("/users/me").json()["fields"]["deals"] == {"amount": "hidden",
                                                                  f"custom.{key}": "read"}
    sse = SseClient(stack.stream_url, {"Authorization": seller.headers["Authorization"]})
    try:
        contact = api.post("/contacts", json={"first_name": "Fld", "last_name": unique,
                                              "emails": [f"fld-{unique}@crm.test"]}).json()
        deal = api.post("/deals", json={"title": f"Hush {unique}", "amount": 123456,
                                        "currency": "EUR", "contact_id": contact["id"],
                                        "custom": {key: 3}}).json()
        read = seller.get(f"/deals/{deal['id']}").json()
        assert "amount" not in read and read["title"] == deal["title"]
        assert read["custom"] == {key: 3}
        listed, _ = settle(lambda: [d for d in seller.get("/deals", params={
            "contact_id": contact["id"]}).json()["items"] if d["id"] == deal["id"]])
        assert listed and "amount" not in listed[0]
        hits, _ = settle(lambda: [h for h in seller.get("/search", params={
            "q": f"Hush {unique}"}).json()["items"] if h["id"] == deal["id"]])
        assert hits and "1,234.56" not in (hits[0]["subtitle"] or "")
        # a custom role's search holds only the types it reads (no tasks, calls, notes...)
        assert set(seller.get("/search", params={"q": unique}).json()["counts"]) == {
            "contact", "deal"}
        report = seller.get("/reports/sales").json()
        assert "amount" not in str(report), report
        exported = seller.get("/contacts/export", params={"q": unique})
        assert exported.status_code == 200 and "emails" not in exported.text.splitlines()[0]
        assert f"fld-{unique}" not in exported.text and unique in exported.text
        assert seller.get("/deals", params={"sort": f"cf.{key}"}).status_code == 200
        # read-only and hidden fields: 403 naming them, and nothing changes
        for body in ({"amount": 1}, {"custom": {key: 9}}, {"title": "x", "amount": 2}):
            refused = seller.patch(f"/deals/{deal['id']}", json=body)
            assert refused.status_code == 403, refused.text
        assert api.get(f"/deals/{deal['id']}").json()["amount"] == 123456
        changed = seller.patch(f"/deals/{deal['id']}", json={"title": f"Hush2 {unique}"})
        assert changed.status_code == 200 and "amount" not in changed.json()
        assert sse.wait_for(lambda e: e[1] == "deal_updated"
                            and e[2]["data"]["deal"]["id"] == deal["id"], timeout=20)
        assert not [e for e in sse.events if e[1].startswith("deal_")
                    and "amount" in e[2]["data"]["deal"]], sse.events
    finally:
        sse.close()


def test_field_access_units():
    """The field-grant rules without the stack: what a hit, a report, a write and a filter
    become for a role hiding deal amounts and contact emails and a custom field."""
    import pytest

    from crm_common.errors import Forbidden
    from gateway import field_access
    from gateway.api import Route
    from gateway.permissions import MATRIX

    who = {"fields": {"deals": {"amount": "hidden", "custom.lvl": "read"},
                      "contacts": {"emails": "hidden", "custom": "hidden"}}}
    hit = {"type": "deal", "id": "d1", "subtitle": "Ann Lee · 1,234.56 EUR · open",
           "highlight": {"field": "subtitle", "text": "x", "ranges": []}}
    assert field_access.redact_hit(who, hit) == {**hit, "subtitle": "Ann Lee · open",
                                                 "highlight": None}
    email_hit = {"type": "contact", "id": "c1", "highlight": {"field": "email"}}
    assert field_access.redact_hit(who, email_hit)["highlight"] is None
    report = {"rows": [{"key": "u1", "won_count": 2, "amounts": [{"won_amount": 5}]}]}
    assert field_access.drop_money(report) == {"rows": [{"key": "u1", "won_count": 2}]}
    contact = {"id": "c1", "emails": [{"email": "a@b.c"}], "custom": {"x": 1}, "position": "CEO"}
    company = {"id": "k1", "name": "K", "people": [contact]}
    assert field_access.redact_records(who, "companies", company)["people"] == [
        {"id": "c1", "position": "CEO"}]

    def guard(method, path, permission):
        route = Route(path, method, lambda: None, "", "t", permission=permission)
        return field_access.guard(who, route, MATRIX[permission])

    deal_write = guard("PATCH", "/api/v1/deals/{deal_id}", "deals:write")
    deal_write.check({}, {"title": "ok", "custom": {"other": 1}})
    for body in ({"amount": 1}, {"custom": {"lvl": 2}}):
        with pytest.raises(Forbidden):
            deal_write.check({}, body)
    contact_list = guard("GET", "/api/v1/contacts", "contacts:read")
    contact_list.check({"limit": "5", "sort": "-created_at"}, None)
    for params in ({"cf.x.gte": "1"}, {"sort": "cf.x"}):
        with pytest.raises(Forbidden):
            contact_list.check(params, None)
    with pytest.raises(Forbidden):   # a merge writes fields nobody named
        guard("POST", "/api/v1/contacts/{contact_id}/merge", "contacts:write").check({}, {})
    assert field_access.guard({}, Route("/x", "GET", None, "", "t"), MATRIX["deals:read"]) is None
    event = {"data": {"deal": {"id": "d1", "amount": 5}, "amount": 5, "owner_id": "u"}}
    assert field_access.redact_event(who["fields"], "deal", event) == {
        "data": {"deal": {"id": "d1"}, "owner_id": "u"}}


def test_hidden_fields_never_make_a_record_match(api, stack, make_user, unique):
    """The "operator" (edits contact details, never sees deal amounts nor a secret custom
    field) finds nothing by an amount or by that field's text, in the search box or a
    list's q, while an admin does; the operator still finds the same records by what it
    reads."""
    secret = f"secret_{unique[:8]}".lower()
    assert api.post("/custom-fields", json={"entity": "contact", "key": secret,
                                            "label": "Secret", "type": "text"}).status_code == 201
    role = api.post("/roles", json={"name": f"operator-{unique}", "label": "Operator",
                                    "permissions": {
                                        "contacts": {"read": "all", "create": "all", "edit": "all",
                                                     "export": "all"},
                                        "deals": {"read": "all"}, "search": {"read": "all"}},
                                    "fields": {"deals": {"amount": "hidden"},
                                               "contacts": {f"custom.{secret}": "hidden"}}})
    assert role.status_code == 201, role.text
    operator = make_user(f"operator-{unique}")
    word = f"zebra{unique}"
    contact = api.post("/contacts", json={"first_name": "Hid", "last_name": f"Den{unique}",
                                          "custom": {secret: f"{word} stripes"}}).json()
    deal = api.post("/deals", json={"title": f"Amt {unique}", "amount": 4321987,
                                    "currency": "EUR", "contact_id": contact["id"]}).json()

    def found(client, q, path="/search"):
        answer = client.get(path, params={"q": q})
        assert answer.status_code == 200, answer.text
        return {item["id"] for item in answer.json()["items"]}

    # the admin finds the deal by its amount (as typed, grouped or not) and the contact
    # by its custom field's text, as a whole word and while typing it
    for q in ("43219.87", "43,219.87"):
        hits, _ = settle(lambda q=q: deal["id"] in found(api, q))
        assert hits, q
    for q in (word, f"{word} strip", word[:-2]):
        assert contact["id"] in found(api, q), q
    assert contact["id"] in found(api, word, "/contacts")
    # the operator: nothing by those, the same records by what it reads
    for q in ("43219.87", "43,219.87"):
        assert deal["id"] not in found(operator, q), q
    for q in (word, f"{word} strip", word[:-2]):
        assert contact["id"] not in found(operator, q), q
        assert contact["id"] not in found(operator, q, "/contacts"), q
    assert deal["id"] in found(operator, f"Amt {unique}")
    assert contact["id"] in found(operator, f"Den{unique}")
    assert contact["id"] in found(operator, f"Den{unique}", "/contacts")
    # the deal is still found by its contact's name, which the operator reads
    assert deal["id"] in found(operator, f"Hid Den{unique}")
    # an export by words alike
    assert f"Den{unique}" in api.get("/contacts/export", params={"q": word}).text
    exported = operator.get("/contacts/export", params={"q": word})
    assert exported.status_code == 200 and f"Den{unique}" not in exported.text
    assert f"Den{unique}" in operator.get("/contacts/export", params={"q": f"Den{unique}"}).text


def test_a_hidden_phone_is_no_way_in_while_the_index_is_down(api, stack, make_user, unique):
    """With the search service down, a list's phone `q` goes to the contacts service's own
    lookup, which knows no field grants: for a role that hides contacts' phones it is a 503
    (nothing found through the hidden field), for the admin the lookup's answer."""
    role = api.post("/roles", json={"name": f"nophone-{unique}", "label": "No phones",
                                    "permissions": {"contacts": {"read": "all"}},
                                    "fields": {"contacts": {"phones": "hidden"}}})
    assert role.status_code == 201, role.text
    clerk = make_user(f"nophone-{unique}")
    number = f"+39 347 {int(unique[:6], 16) % 10_000_000:07d}"
    contact = api.post("/contacts", json={"first_name": "Hid", "last_name": f"Phone{unique}",
                                          "phones": [{"number": number}]})
    assert contact.status_code == 201, contact.text
    stack.stop_service("search", 0)
    try:
        refused = clerk.get("/contacts", params={"q": number})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "service_unavailable"
        looked_up = api.get("/contacts", params={"q": number})
        assert looked_up.status_code == 200, looked_up.text
        assert [c["id"] for c in looked_up.json()["items"]] == [contact.json()["id"]]
    finally:
        stack.start_service("search", 0)
        wait_ready(stack)
    found, _ = settle(lambda: [c["id"] for c in clerk.get(
        "/contacts", params={"q": f"Phone{unique}"}).json()["items"]] == [contact.json()["id"]])
    assert found
    assert clerk.get("/contacts", params={"q": number}).json()["items"] == []
