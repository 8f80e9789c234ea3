"""Who sees and changes what, through the real stack: the gateway puts the signed-in user
(and a manager's team) in the RPC context and the services filter in their queries."""
import pytest
from tests.test_search import settle


@pytest.fixture
def team(make_user, unique):
    """A manager, an agent in the manager's team, an agent reporting to the manager, and
    an agent of another team."""
    manager = make_user("manager", team=f"team{unique}")
    return {"manager": manager,
            "a": make_user("agent", team=f"team{unique}"),
            "b": make_user("agent", manager_id=manager.user["id"]),
            "outsider": make_user("agent", team=f"other{unique}")}


def _phone(unique, i):
    return f"+39 333 {int(unique, 16) % 10**6:06d}{i}"


def _contact(client, unique, name, i, **fields):
    response = client.post("/contacts", json={
        "first_name": name, "last_name": f"Vis{unique}", "tags": [f"vis{unique}"],
        "emails": [f"{name.lower()}.{unique}@example.com"], "phones": [_phone(unique, i)],
        **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _ids(client, unique, **params):
    response = client.get("/contacts", params={"tag": f"vis{unique}", "limit": 500, **params})
    assert response.status_code == 200, response.text
    return {c["id"] for c in response.json()["items"]}


def test_contact_lists_searches_and_lookups_by_role(api, team, make_api_key, unique):
    a, b, manager, outsider = team["a"], team["b"], team["manager"], team["outsider"]
    ca = _contact(a, unique, "Anna", 1)
    cb = _contact(b, unique, "Bruno", 2)
    co = _contact(outsider, unique, "Olga", 3)
    shared = _contact(api, unique, "Shared", 4, owner_id=None)  # no owner: readable by everyone
    assert ca["owner_id"] == a.user["id"] and shared["owner_id"] is None
    # lists read the search index: everyone's writes reach it within a second
    everyone = {ca["id"], cb["id"], co["id"], shared["id"]}
    assert settle(lambda: _ids(api, unique) == everyone)[0]

    assert _ids(a, unique) == {ca["id"], shared["id"]}
    assert _ids(b, unique) == {cb["id"], shared["id"]}
    assert _ids(outsider, unique) == {co["id"], shared["id"]}
    assert _ids(manager, unique) == {ca["id"], cb["id"], shared["id"]}
    assert _ids(api, unique) == {ca["id"], cb["id"], co["id"], shared["id"]}
    assert _ids(make_api_key(["contacts:read"]), unique) == _ids(api, unique)
    # filters, search, sort and totals stay inside what the caller may see
    assert _ids(b, unique, owner_id=a.user["id"]) == set()
    assert _ids(manager, unique, owner_id=a.user["id"]) == {ca["id"]}
    assert _ids(a, unique, q=f"vis{unique}", sort="name") == {ca["id"], shared["id"]}
    total = a.get("/contacts", params={"tag": f"vis{unique}", "include_total": "true"}).json()
    assert total["total"] == 2
    paged = b.get("/contacts", params={"tag": f"vis{unique}", "limit": 1}).json()
    rest = b.get("/contacts", params={"tag": f"vis{unique}", "limit": 1,
                                      "cursor": paged["next_cursor"]}).json()
    assert {c["id"] for c in paged["items"] + rest["items"]} == {cb["id"], shared["id"]}

    for params in ({"email": f"anna.{unique}@example.com"}, {"phone": _phone(unique, 1)}):
        assert [c["id"] for c in a.get("/contacts/lookup", params=params).json()["items"]] == [ca["id"]]
        assert manager.get("/contacts/lookup", params=params).json()["items"][0]["id"] == ca["id"]
        assert b.get("/contacts/lookup", params=params).json()["items"] == []
        assert outsider.get("/contacts/lookup", params=params).json()["items"] == []


def test_contact_by_id_404_when_hidden_403_when_visible_but_not_yours(api, team, unique):
    a, b, manager, outsider = team["a"], team["b"], team["manager"], team["outsider"]
    ca = _contact(a, unique, "Anna", 5)
    cb = _contact(b, unique, "Bruno", 6)
    shared = _contact(api, unique, "Shared", 7, owner_id=None)
    # another agent's contact does not exist for them: 404 for read, change, delete, timeline
    assert outsider.get(f"/contacts/{ca['id']}").status_code == 404
    assert outsider.patch(f"/contacts/{ca['id']}", json={"status": "customer"}).status_code == 404
    assert outsider.delete(f"/contacts/{ca['id']}").status_code == 404
    assert outsider.get(f"/contacts/{ca['id']}/timeline").status_code == 404
    assert b.get(f"/contacts/{ca['id']}").status_code == 404
    assert api.get(f"/contacts/{ca['id']}").json()["status"] == "lead"  # nothing changed
    # the owner and their manager read and change it
    assert a.patch(f"/contacts/{ca['id']}", json={"status": "prospect"}).status_code == 200
    assert manager.get(f"/contacts/{ca['id']}/timeline").status_code == 200
    assert manager.patch(f"/contacts/{ca['id']}", json={"status": "customer"}).status_code == 200
    # a shared contact is read by everyone; an agent may not change it (403: it is visible)
    assert outsider.get(f"/contacts/{shared['id']}").status_code == 200
    refused = outsider.patch(f"/contacts/{shared['id']}", json={"status": "customer"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert outsider.delete(f"/contacts/{shared['id']}").status_code == 403
    # owners: an agent cannot give a contact away; a manager assigns within the team only
    assert a.patch(f"/contacts/{ca['id']}", json={"owner_id": b.user["id"]}).status_code == 403
    assert a.post("/contacts", json={"first_name": "X", "last_name": unique,
                                     "owner_id": b.user["id"]}).status_code == 403
    assert manager.patch(f"/contacts/{cb['id']}", json={"owner_id": a.user["id"]}).status_code == 200
    assert a.get(f"/contacts/{cb['id']}").status_code == 200
    assert b.get(f"/contacts/{cb['id']}").status_code == 404
    assert manager.patch(f"/contacts/{ca['id']}",
                         json={"owner_id": outsider.user["id"]}).status_code == 403
    assert manager.patch(f"/contacts/{shared['id']}", json={"owner_id": b.user["id"]}).status_code == 200
    assert b.get(f"/contacts/{shared['id']}").status_code == 200
    assert outsider.get(f"/contacts/{shared['id']}").status_code == 404


def test_company_people_show_only_visible_contacts(api, team, unique):
    a, outsider = team["a"], team["outsider"]
    company = api.post("/companies", json={"name": f"Vis{unique} Spa"}).json()
    ca = _contact(a, unique, "Anna", 8, company_id=company["id"])
    co = _contact(outsider, unique, "Olga", 9, company_id=company["id"])
    people = {p["id"] for p in outsider.get(f"/companies/{company['id']}").json()["people"]}
    assert people == {co["id"]}
    people = {p["id"] for p in api.get(f"/companies/{company['id']}").json()["people"]}
    assert people == {ca["id"], co["id"]}


def _pipeline(api, unique):
    response = api.post("/pipelines", json={"name": f"Vis {unique}", "stages": [
        {"name": "New", "probability": 10}, {"name": "Won", "kind": "won"},
        {"name": "Lost", "kind": "lost"}]})
    assert response.status_code == 201, response.text
    return response.json()


def test_agent_cannot_read_or_change_another_agents_deal(api, team, unique):
    a, b, manager, outsider = team["a"], team["b"], team["manager"], team["outsider"]
    pipeline = _pipeline(api, unique)
    stages = {s["name"]: s["id"] for s in pipeline["stages"]}
    made = a.post("/deals", json={"title": f"Deal {unique}", "amount": 5000, "currency": "EUR",
                                  "pipeline_id": pipeline["id"]})
    assert made.status_code == 201, made.text
    deal = made.json()
    assert deal["owner_id"] == a.user["id"]
    for client in (b, outsider):
        assert client.get(f"/deals/{deal['id']}").status_code == 404
        assert client.patch(f"/deals/{deal['id']}", json={"title": "mine"}).status_code == 404
        assert client.post(f"/deals/{deal['id']}/move",
                           json={"stage_id": stages["Won"]}).status_code == 404
        assert client.get(f"/deals/{deal['id']}/history").status_code == 404
        assert client.delete(f"/deals/{deal['id']}").status_code == 404
        listed = client.get("/deals", params={"pipeline_id": pipeline["id"]}).json()["items"]
        assert listed == []
    assert api.get(f"/deals/{deal['id']}").json()["title"] == f"Deal {unique}"
    assert manager.get(f"/deals/{deal['id']}").status_code == 200
    listed = a.get("/deals", params={"pipeline_id": pipeline["id"]}).json()["items"]
    assert [d["id"] for d in listed] == [deal["id"]]
    # reports count only what the caller may see
    assert a.post(f"/deals/{deal['id']}/move", json={"stage_id": stages["Won"]}).status_code == 200
    params = {"group_by": "owner", "pipeline_id": pipeline["id"]}
    keys = lambda client: {r["key"] for r in client.get("/reports/sales", params=params).json()["rows"]}  # noqa: E731
    assert keys(api) == {a.user["id"]}
    assert keys(manager) == {a.user["id"]}
    assert keys(outsider) == set()


def test_api_key_scopes_on_other_resources(make_api_key):
    deals_reader = make_api_key(["deals:read"])
    assert deals_reader.get("/deals").status_code == 200
    assert deals_reader.get("/contacts").status_code == 403
    assert deals_reader.post("/deals", json={}).status_code == 403
