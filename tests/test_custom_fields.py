"""Typed custom fields through the real stack: defined by admins per entity, validated on
every write (API and import) by the owning service, filtered and sorted in lists, renamed
and retired without losing data, described in the OpenAPI document; required fields per
pipeline stage."""
import time

from flask import Flask
from tests.test_search import settle

GOOD = {"text": "hello", "long_text": "a" * 1500, "number": 42.5,
        "money": {"amount": 150000, "currency": "eur"}, "date": "2026-03-31",
        "datetime": "2026-03-31T10:00:00+02:00", "boolean": True, "select": "gold",
        "multi_select": ["a", "b"], "url": "https://example.com/x", "email": "Ada@Example.com",
        "phone": "+39 333 123 4567"}
STORED = {"money": {"amount": 150000, "currency": "EUR"}, "datetime": "2026-03-31T08:00:00Z",
          "email": "ada@example.com", "phone": "+393331234567"}
BAD = {"text": 5, "long_text": "a" * 2001, "number": "42", "money": {"amount": 1.5, "currency": "EUR"},
       "date": "31/03/2026", "datetime": "2026-03-31", "boolean": "yes", "select": "bronze",
       "multi_select": ["a", "z"], "user": "no-such-user", "url": "javascript:alert(1)",
       "email": "not-an-email", "phone": "call me"}


def define(api, entity, key, kind, **extra):
    body = {"entity": entity, "key": key, "label": key.replace("_", " ").title(), "type": kind,
            **extra}
    if kind in ("select", "multi_select") and "options" not in extra:
        body["options"] = ["gold", "silver"] if kind == "select" else ["a", "b", "c"]
    response = api.post("/custom-fields", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_every_type_validated_on_api_writes(api, stack, make_user, unique):
    agent = make_user("agent")
    keys = {kind: f"{kind}_{unique}" for kind in list(GOOD) + ["user"]}
    for kind, key in keys.items():
        define(api, "contact", key, kind)
    # admins only; keys are unique and never reused; options only for selects
    assert agent.post("/custom-fields", json={"entity": "contact", "key": f"x{unique}",
                                              "label": "X", "type": "text"}).status_code == 403
    assert api.post("/custom-fields", json={"entity": "contact", "key": keys["text"],
                                            "label": "again", "type": "text"}).status_code == 409
    for bad in ({"entity": "contact", "key": f"s{unique}", "label": "S", "type": "select"},
                {"entity": "contact", "key": f"t{unique}", "label": "T", "type": "text",
                 "options": ["x"]},
                {"entity": "contact", "key": "Bad Key", "label": "B", "type": "text"},
                {"entity": "planet", "key": f"p{unique}", "label": "P", "type": "text"},
                {"entity": "contact", "key": f"q{unique}", "label": "Q", "type": "color"}):
        assert api.post("/custom-fields", json=bad).status_code == 422, bad

    custom = {keys[k]: v for k, v in GOOD.items()}
    custom[keys["user"]] = agent.user["id"]
    created = api.post("/contacts", json={"first_name": "Typed", "last_name": unique,
                                          "tags": [unique], "custom": custom})
    assert created.status_code == 201, created.text
    stored = created.json()["custom"]
    for kind in GOOD:
        assert stored[keys[kind]] == STORED.get(kind, GOOD[kind]), kind
    contact_id = created.json()["id"]

    # a value of the wrong type, each type: 422 naming the key, nothing changes
    for kind, value in BAD.items():
        answer = api.patch(f"/contacts/{contact_id}", json={"custom": {**stored, keys[kind]: value}})
        assert answer.status_code == 422, (kind, answer.text)
        assert keys[kind] in answer.json()["error"]["details"]["fields"]["custom"], kind
        create = api.post("/contacts", json={"first_name": "Bad", "last_name": unique,
                                              "custom": {keys[kind]: value}})
        assert create.status_code == 422, (kind, create.text)
    assert api.get(f"/contacts/{contact_id}").json()["custom"] == stored
    listed = api.get("/contacts", params={"tag": unique}).json()["items"]
    assert [c["id"] for c in listed] == [contact_id]

    # rename: values stay under the key; retire: no new values, stored ones kept
    key = keys["select"]
    renamed = api.patch(f"/custom-fields/contact:{key}", json={"label": "Contract tier"})
    assert renamed.status_code == 200 and renamed.json()["label"] == "Contract tier"
    assert api.get(f"/contacts/{contact_id}").json()["custom"][key] == "gold"
    assert api.patch(f"/custom-fields/contact:{key}", json={"retired": True}).status_code == 200
    refused = api.patch(f"/contacts/{contact_id}", json={"custom": {**stored, key: "silver"}})
    assert refused.status_code == 422, refused.text
    assert api.get(f"/contacts/{contact_id}").json()["custom"][key] == "gold"
    listed = api.get("/custom-fields", params={"entity": "contact"}).json()["items"]
    assert next(f for f in listed if f["key"] == key)["retired"] is True
    assert api.patch(f"/custom-fields/contact:{key}", json={"retired": False}).status_code == 200

    # the OpenAPI document describes the fields that exist now
    def described():
        spec = api.get("/openapi.json").json()
        return spec["components"]["schemas"]["ContactIn"]["properties"]["custom"].get(
            "properties", {})
    deadline = time.time() + 20
    while keys["select"] not in described() and time.time() < deadline:
        time.sleep(1)
    props = described()
    assert props[keys["select"]]["enum"] == ["gold", "silver"]
    assert props[keys["money"]]["properties"]["amount"]["type"] == "integer"
    assert props[keys["date"]]["format"] == "date"


def test_filter_and_sort_by_custom_fields(api, unique):
    tier, score, budget = f"tier_{unique}", f"score_{unique}", f"budget_{unique}"
    define(api, "contact", tier, "select")
    define(api, "contact", score, "number")
    define(api, "contact", budget, "money")
    ids = {}
    for n, (t, s) in enumerate((("gold", 5), ("silver", 1), ("gold", 9), ("gold", None))):
        custom = {tier: t, budget: {"amount": n * 1000, "currency": "EUR"}}
        if s is not None:
            custom[score] = s
        made = api.post("/contacts", json={"first_name": f"F{n}", "last_name": unique,
                                           "tags": [unique], "custom": custom})
        assert made.status_code == 201, made.text
        ids[n] = made.json()["id"]

    def listing(**params):
        answer = api.get("/contacts", params={"tag": unique, **params})
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert {c["id"] for c in listing(**{f"cf.{tier}": "gold"})["items"]} == {ids[0], ids[2], ids[3]}
    assert [c["id"] for c in listing(**{f"cf.{score}.gte": "2", "sort": f"cf.{score}"})["items"]] == [
        ids[0], ids[2]]
    assert [c["id"] for c in listing(sort=f"-cf.{score}")["items"]] == [ids[2], ids[0], ids[1]]
    assert {c["id"] for c in listing(**{f"cf.{budget}.gte": "2000"})["items"]} == {ids[2], ids[3]}
    # keyset pages over a custom sort
    first = listing(sort=f"cf.{score}", limit=2)
    second = listing(sort=f"cf.{score}", limit=2, cursor=first["next_cursor"])
    assert [c["id"] for c in first["items"] + second["items"]] == [ids[1], ids[0], ids[2]]
    # bad filters: unknown field, a key no field can have (was a 500), value of the wrong
    # type, a select value not in the list
    for params in ({"cf.nope_field": "x"}, {"cf.A": ""}, {f"cf.{score}.gte": "many"},
                   {f"cf.{tier}": "bronze"}, {"sort": "cf.nope_field"}):
        answer = api.get("/contacts", params={"tag": unique, **params})
        assert answer.status_code in (400, 422), (params, answer.text)


def test_import_by_label_validates_typed_values(api, unique):
    tier = f"tier_{unique}"
    field = define(api, "contact", tier, "select")
    api.patch(f"/custom-fields/{field['id']}", json={"label": f"Contract tier {unique}"})
    score = f"score_{unique}"
    define(api, "contact", score, "number")
    csv = (f"First name,Last name,Email,Contract tier {unique},{score}\n"
           f"Ann,Imp{unique},ann.{unique}@example.com,gold,12\n"
           f"Bob,Imp{unique},bob.{unique}@example.com,bronze,3\n"
           f"Cid,Imp{unique},cid.{unique}@example.com,silver,lots\n").encode()
    started = api.post("/imports", files={"file": ("typed.csv", csv)}, timeout=120)
    assert started.status_code == 202, started.text
    deadline = time.time() + 60
    while True:
        job = api.get(f"/imports/{started.json()['id']}").json()
        if job["status"] in ("done", "failed") or time.time() > deadline:
            break
        time.sleep(0.3)
    assert job["status"] == "done", job
    fields = sorted((e["row"], e["field"]) for e in job["errors"])
    assert fields == [(3, f"custom.{tier}"), (4, f"custom.{score}")], job["errors"]
    # words in q are searched in the search index, which reads the imported batch by its ids
    found, _ = settle(lambda: api.get("/contacts", params={
        f"cf.{tier}": "gold", "q": f"Imp{unique}"}).json()["items"])
    assert len(found) == 1 and found[0]["custom"][score] == 12
    assert api.get("/contacts/lookup", params={"email": f"bob.{unique}@example.com"}).json()[
        "items"] == []


def test_deal_and_task_fields_and_required_fields_per_stage(api, unique):
    po, size = f"po_{unique}", f"size_{unique}"
    define(api, "deal", po, "text")
    define(api, "deal", size, "select", options=["S", "M", "L"])
    phase = f"phase_{unique}"
    define(api, "task", phase, "select", options=["plan", "do"])
    assert api.post("/tasks", json={"title": "t", "custom": {phase: "done"}}).status_code == 422
    task = api.post("/tasks", json={"title": "t", "custom": {phase: "plan"}})
    assert task.status_code == 201 and task.json()["custom"] == {phase: "plan"}
    helper = f"helper_{unique}"
    define(api, "task", helper, "user")
    me = api.get("/users/me").json()["id"]
    assert api.post("/tasks", json={"title": "t", "custom": {helper: "ghost"}}).status_code == 422
    assert api.post("/tasks", json={"title": "t", "custom": {helper: me}}).status_code == 201

    pipeline = api.post("/pipelines", json={"name": f"Req {unique}", "stages": [
        {"name": "New"},
        {"name": "Proposal", "required_fields": ["amount", f"custom.{po}", "contact.emails",
                                                 "expected_close_date"]},
        {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]})
    assert pipeline.status_code == 201, pipeline.text
    stages = {s["name"]: s for s in pipeline.json()["stages"]}
    assert stages["Proposal"]["required_fields"][0] == "amount"
    bad_rule = api.post("/pipelines", json={"name": f"Bad {unique}", "stages": [
        {"name": "A", "required_fields": ["favourite_colour"]}, {"name": "W", "kind": "won"},
        {"name": "L", "kind": "lost"}]})
    assert bad_rule.status_code == 422

    contact = api.post("/contacts", json={"first_name": "Req", "last_name": unique}).json()
    deal = api.post("/deals", json={"title": f"Req {unique}", "currency": "EUR",
                                    "pipeline_id": pipeline.json()["id"],
                                    "contact_id": contact["id"]}).json()
    assert api.patch(f"/deals/{deal['id']}", json={"custom": {size: "XL"}}).status_code == 422
    move = {"stage_id": stages["Proposal"]["id"]}
    blocked = api.post(f"/deals/{deal['id']}/move", json=move)
    assert blocked.status_code == 422, blocked.text
    assert blocked.json()["error"]["details"]["missing"] == [
        "amount", f"custom.{po}", "contact.emails", "expected_close_date"]
    assert api.get(f"/deals/{deal['id']}").json()["stage_id"] == stages["New"]["id"]

    filled = api.patch(f"/deals/{deal['id']}", json={
        "amount": 120000, "expected_close_date": "2026-06-30", "custom": {po: "PO-1", size: "L"}})
    assert filled.status_code == 200, filled.text
    still = api.post(f"/deals/{deal['id']}/move", json=move)
    assert still.status_code == 422 and still.json()["error"]["details"]["missing"] == [
        "contact.emails"]
    api.patch(f"/contacts/{contact['id']}", json={"emails": [{"email": f"req.{unique}@example.com"}]})
    moved = api.post(f"/deals/{deal['id']}/move", json=move)
    assert moved.status_code == 200, moved.text
    assert moved.json()["stage_id"] == stages["Proposal"]["id"]

    # deal lists filter and sort by the deal's typed fields
    other = api.post("/deals", json={"title": f"Other {unique}", "currency": "EUR",
                                     "pipeline_id": pipeline.json()["id"],
                                     "custom": {size: "M", po: "PO-0"}}).json()
    scope = {"pipeline_id": pipeline.json()["id"]}
    assert [d["id"] for d in api.get("/deals", params={**scope, f"cf.{size}": "L"})
            .json()["items"]] == [deal["id"]]
    assert [d["id"] for d in api.get("/deals", params={**scope, "sort": f"cf.{po}"})
            .json()["items"]] == [other["id"], deal["id"]]
    assert api.get("/deals", params={**scope, f"cf.{size}": "XL"}).status_code in (400, 422)


def test_completeness_report_per_owner(api, make_user, unique):
    agent = make_user("agent")
    region = f"region_{unique}"
    define(api, "contact", region, "text", required=True)
    minimal = api.put("/custom-fields/minimal/contact", json={"standard": ["emails", "phones"]})
    assert minimal.status_code == 200, minimal.text
    assert f"custom.{region}" in minimal.json()["fields"]
    assert api.put("/custom-fields/minimal/contact",
                   json={"standard": ["shoe_size"]}).status_code == 422
    assert agent.put("/custom-fields/minimal/contact",
                     json={"standard": ["emails"]}).status_code == 403
    owner = agent.user["id"]
    for n, (email, phone, custom) in enumerate((
            (True, True, {region: "north"}), (True, False, {region: "south"}),
            (False, True, {}))):
        body = {"first_name": f"C{n}", "last_name": unique, "owner_id": owner, "custom": custom}
        if email:
            body["emails"] = [{"email": f"c{n}.{unique}@example.com"}]
        if phone:
            body["phones"] = [{"number": f"+39 02 1234 {n:04d}"}]
        made = api.post("/contacts", json=body)
        assert made.status_code == 201, made.text
    report = agent.get("/reports/completeness", params={"entity": "contact"})
    assert report.status_code == 200, report.text
    rows = report.json()["items"]
    # an agent sees their own records (and the unowned ones other tests may have left)
    assert {r["owner_id"] for r in rows} - {None} == {owner}
    row = next(r for r in rows if r["owner_id"] == owner)
    assert (row["records"], row["complete"], row["share"]) == (3, 1, 0.3333)
    assert row["missing"] == {"emails": 1, "phones": 1, f"custom.{region}": 1}
    # leave the company's minimal set as other tests expect it
    api.patch(f"/custom-fields/contact:{region}", json={"required": False})
    api.put("/custom-fields/minimal/contact", json={"standard": []})


def test_export_has_a_column_per_typed_field_by_label(api, unique):
    import csv
    import io
    budget = f"budget_{unique}"
    field = define(api, "contact", budget, "money")
    api.patch(f"/custom-fields/{field['id']}", json={"label": f"Budget {unique}"})
    api.post("/contacts", json={"first_name": "Exp", "last_name": unique, "tags": [unique],
                                "custom": {budget: {"amount": 123456, "currency": "EUR"}}})
    exported = api.get("/contacts/export", params={"format": "csv", "tag": unique})
    assert exported.status_code == 200, exported.text
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    column = rows[0].index(f"Budget {unique}")
    assert rows[1][column] == "1234.56 EUR"


def test_company_and_task_lists_filter_custom_fields_from_the_index(api, unique):
    """Companies and tasks filter by their typed fields too (equals, .ne, ranges over
    numbers and dates), answered by the search index: a company list with words in `q`,
    which only the index answers, takes the ranges."""
    staff, since = f"staff_{unique}", f"since_{unique}"
    define(api, "company", staff, "number")
    define(api, "task", since, "date")
    define(api, "task", f"tier_{unique}", "select")
    companies = [api.post("/companies", json={"name": f"Acme{unique} {n}",
                                              "custom": {staff: n * 10}}).json()["id"]
                 for n in range(4)]
    tasks = [api.post("/tasks", json={"title": f"Call {unique}", "custom": {
        since: f"2026-0{n + 1}-15", f"tier_{unique}": "gold" if n % 2 else "silver"}}).json()["id"]
        for n in range(4)]

    def ids(path, **params):
        answer = api.get(path, params=params)
        assert answer.status_code == 200, (params, answer.text)
        return {item["id"] for item in answer.json()["items"]}

    assert ids("/companies", q=f"Acme{unique}", **{f"cf.{staff}.gte": "10",
                                                   f"cf.{staff}.lte": "25"}) == set(companies[1:3])
    assert ids("/companies", q=f"Acme{unique}", **{f"cf.{staff}": "30"}) == {companies[3]}
    assert ids("/tasks", **{f"cf.{since}.gte": "2026-02-01", f"cf.tier_{unique}": "gold"}) == {
        tasks[1], tasks[3]}
    assert ids("/tasks", **{f"cf.{since}.lte": "2026-02-15", f"cf.tier_{unique}.ne": "gold"}) == {
        tasks[0]}
    assert [t["id"] for t in api.get("/tasks", params={
        f"cf.{since}.gte": "2026-01-01", "sort": f"-cf.{since}", "limit": 2}).json()["items"]] == [
        tasks[3], tasks[2]]
    for params in ({f"cf.{since}.gte": "soon"}, {f"cf.tier_{unique}": "bronze"},
                   {f"cf.nope_{unique}": "1"}):
        assert api.get("/tasks", params=params).status_code in (400, 422), params


def test_filtered_lists_go_to_the_index_with_stored_values(monkeypatch):
    """gateway/lists.py without the stack: the `cf.` values checked and sent to the index
    in their stored form, a custom sort with its type; a text range or a boolean sort goes
    to the owner."""
    from gateway import lists
    asked = []

    def call(service, method, *args):
        asked.append((service, method))
        if method == "list_custom_fields":
            return {"items": [{"key": "n", "type": "number"}, {"key": "mail", "type": "email"},
                              {"key": "on", "type": "boolean"}]}
        return {"params": args[1] if service == "search" else args[0]}

    monkeypatch.setattr(lists, "call", call)
    monkeypatch.setattr(lists, "recent_writes", lambda kind: [])
    monkeypatch.setattr(lists, "_definitions", {})
    with Flask(__name__).app_context():
        answer = lists.from_index("task", "tasks", "list_tasks", {
            "cf.n.gte": "2.50", "cf.mail": "Ada@Example.com", "cf.on": "TRUE"})
        assert asked[-1] == ("search", "list_records")
        assert answer["params"] == {"cf.n.gte": "2.5", "cf.mail": "ada@example.com",
                                    "cf.on": "true"}
        lists.from_index("task", "tasks", "list_tasks", {"cf.mail.gte": "a@b.cd"})
        assert asked[-1] == ("tasks", "list_tasks")
        # a custom sort goes to the index with its type (a boolean's: to the owner)
        lists.from_index("task", "tasks", "list_tasks", {"sort": "cf.n"})
        assert asked[-1] == ("search", "list_records")
        lists.from_index("task", "tasks", "list_tasks", {"sort": "-cf.on"})  # a boolean
        assert asked[-1] == ("tasks", "list_tasks")


def test_custom_sorts_are_answered_by_the_index_with_the_owners_cursors(api, stack, unique):
    """A list sorted by a custom field of each sortable type, from the search index: the
    owner's order (the value, then the id; records without a value left out), keyset pages
    whose cursors the owner's own list continues, and words in q with it."""
    from crm_common.messaging.rpc import RpcPool
    kinds = ("number", "money", "date", "datetime", "text", "select")
    keys = {kind: f"s{kind}_{unique}" for kind in kinds}
    for kind, key in keys.items():
        define(api, "contact", key, kind)
    rows = (
        {"number": 5, "money": 100, "date": "2026-03-01", "datetime": "2026-03-01T10:00:00+00:00",
         "text": "pear", "select": "silver"},
        {"number": -1.5, "money": 300, "date": "2025-12-31",
         "datetime": "2026-03-01T09:00:00+02:00", "text": "Apple", "select": "gold"},
        {"number": 5, "money": 200, "date": "2026-03-01", "datetime": "2026-03-01T07:00:00Z",
         "text": "apple", "select": None},
        {"number": 12, "money": 200, "date": None, "datetime": "2030-01-01T00:00:00Z",
         "text": "pear", "select": "gold"},
        {"number": None, "money": 50, "date": "2027-01-01", "datetime": None, "text": None,
         "select": "silver"})
    for n, row in enumerate(rows):
        custom = {keys[k]: ({"amount": v, "currency": "EUR"} if k == "money" else v)
                  for k, v in row.items() if v is not None}
        made = api.post("/contacts", json={"first_name": f"S{n}", "last_name": f"Srt{unique}",
                                           "tags": [unique], "custom": custom})
        assert made.status_code == 201, made.text
    stored = {c["id"]: c["custom"] for c in api.get("/contacts", params={
        "tag": unique, "limit": 50}).json()["items"]}
    assert len(stored) == len(rows)

    def expected(kind, descending):
        def value(custom):
            found = custom.get(keys[kind])
            return found["amount"] if isinstance(found, dict) else found
        having = [(value(c), i) for i, c in stored.items() if value(c) is not None]
        return [i for _, i in sorted(having, reverse=descending)]

    def pages(get, sort, limit=2):
        out, cursor = [], None
        for _ in range(10):
            answer = get({"tag": unique, "sort": sort, "limit": limit,
                          **({"cursor": cursor} if cursor else {})})
            out += [c["id"] for c in answer["items"]]
            cursor = answer["next_cursor"]
            if not cursor:
                return out
        raise AssertionError("no end")

    def through_api(params):
        answer = api.get("/contacts", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    pool = RpcPool(stack.amqp_uri, size=2, timeout=15)
    try:
        for kind in kinds:
            def from_index(params, kind=kind):
                return pool.call("search", "list_records", "contact", params, None,
                                 {"sort_type": kind})
            for sort in (f"cf.{keys[kind]}", f"-cf.{keys[kind]}"):
                want = expected(kind, sort.startswith("-"))
                assert pages(through_api, sort) == want, (kind, sort, stored)
                # the index itself orders it (not the owner's list)...
                got, _ = settle(lambda: pages(from_index, sort) == want or None)
                assert got, (kind, sort, pages(from_index, sort), want)
                # ...and its cursor is the owner's: the owner's list goes on from it
                first = from_index({"tag": unique, "sort": sort, "limit": 2})
                rest = pool.call("contacts", "list_contacts", {
                    "tag": unique, "sort": sort, "limit": 50, "cursor": first["next_cursor"]})
                assert [c["id"] for c in first["items"] + rest["items"]] == want, kind
                # and the other way round
                owned = pool.call("contacts", "list_contacts",
                                  {"tag": unique, "sort": sort, "limit": 2})
                after = from_index({"tag": unique, "sort": sort, "limit": 50,
                                    "cursor": owned["next_cursor"]})
                assert [c["id"] for c in owned["items"] + after["items"]] == want, kind
    finally:
        pool.close()
    # words in q with a custom sort
    number = keys["number"]
    assert [c["id"] for c in through_api({"q": f"Srt{unique}", "sort": f"-cf.{number}"})[
        "items"]] == expected("number", True)


def test_user_fields_name_active_users(api, make_user, unique):
    """A user-type field takes an active user (deals, contacts, tasks): an unknown or
    disabled one is 422 and nothing is saved."""
    key = f"by_{unique}"
    for entity in ("deal", "contact", "task"):
        define(api, entity, key, "user")
    agent = make_user("agent")
    writes = {"deal": ("/deals", {"title": f"U {unique}", "currency": "EUR"}),
              "contact": ("/contacts", {"first_name": "U", "last_name": unique}),
              "task": ("/tasks", {"title": f"U {unique}"})}

    def write(entity, user_id):
        path, body = writes[entity]
        return api.post(path, json={**body, "custom": {key: user_id}})

    for entity in writes:   # the services' copies of the users follow user_upserted
        made, _ = settle(lambda: write(entity, agent.user["id"]).status_code == 201)
        assert made, entity
        assert write(entity, f"ghost-{unique}").status_code == 422, entity
    assert api.patch(f"/users/{agent.user['id']}", json={"active": False}).status_code == 200
    for entity in writes:
        refused, _ = settle(lambda: [r for r in [write(entity, agent.user["id"])]
                                     if r.status_code == 422])
        assert refused and key in refused[0].json()["error"]["details"]["fields"]["custom"], (
            entity, refused)
