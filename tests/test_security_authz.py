"""The authorization findings of the security review (issue 19: items 3, 4, 5, 6, 8), each
reproduced against the real stack and closed: extensions, signed cursors, the assignment
rule on every write that names a person, the permission matrix (every cell), and
Idempotency-Key."""
import base64
import csv
import hashlib
import hmac
import io
import json
import random
import re
import threading
import time
import uuid

import pytest
import requests

from crm_common.messaging.publish import publish_event
from gateway import permissions
from gateway.permissions import MATRIX, PUBLIC, ROLES
from tests.stack import Api


def wait(predicate, timeout=20, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def error(response):
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    return response.json()["error"]


def mobile():
    return "+39347" + "".join(random.choice("0123456789") for _ in range(7))


def new_user(stack, api, role, **fields):
    password = uuid.uuid4().hex
    body = {"email": f"{role}-{uuid.uuid4().hex[:10]}@crm.test", "password": password,
            "name": f"Authz {role}", "role": role, **fields}
    created = api.post("/users", json=body)
    assert created.status_code == 201, created.text
    client = stack.sign_in(body["email"], password)
    client.password = password
    return client


def key_client(stack, api, scopes):
    created = api.post("/api-keys", json={"name": f"authz-{uuid.uuid4().hex[:6]}",
                                          "scopes": list(scopes)})
    assert created.status_code == 201, created.text
    client = Api(stack.base_url)
    client.headers["X-API-Key"] = created.json()["key"]
    client.key = created.json()
    return client


def copied(stack, service, user_id, **expected):
    """Wait until a service's copy of the gateway's users has this user (user_upserted)."""
    users = stack.db(service)["users"]
    return wait(lambda: (lambda u: u if u and all(u.get(k) == v for k, v in expected.items())
                         else None)(users.find_one({"_id": user_id})))


@pytest.fixture(scope="module")
def people(stack, api):
    """A manager, an agent of their team, an agent reporting to them, an outsider agent."""
    team = f"authz-{uuid.uuid4().hex[:6]}"
    manager = new_user(stack, api, "manager", team=team)
    return {"team": team, "manager": manager,
            "agent": new_user(stack, api, "agent", team=team),
            "report": new_user(stack, api, "agent", manager_id=manager.user["id"]),
            "outsider": new_user(stack, api, "agent", team=f"other-{team}")}


# --- 6. the permission matrix -----------------------------------------------------------

def all_routes():
    return permissions._routes()


def test_every_route_names_a_permission_of_the_matrix():
    routes = all_routes()
    for route in routes:
        assert route.permission == PUBLIC or route.permission in MATRIX, (route.method, route.path)
        assert (route.permission == PUBLIC) == route.public, (route.method, route.path)
    used = {r.permission for r in routes}
    assert set(MATRIX) <= used, f"permissions no route uses: {set(MATRIX) - used}"
    # a route declared without a permission stops the gateway from starting
    from gateway.api import Api as RouteTable
    table = RouteTable()
    table.route("/nowhere", "GET", "no permission", "x")(lambda body, params: {})
    with pytest.raises(ValueError, match="names no permission"):
        table.register(None)


def test_docs_auth_md_shows_the_matrix_the_gateway_enforces():
    text = open(permissions.DOC_PATH, encoding="utf-8").read()
    assert permissions.documented_section(text) == permissions.doc_section(all_routes()), (
        "docs/auth.md is out of date: run `python -m gateway.permissions --write`")


ROUTE_CASES = [(r.method, r.path) for r in permissions._routes()]


@pytest.fixture(scope="module")
def callers(stack, api, people):
    """One signed-in caller per role, plus API keys with and without each route's scope."""
    scopes = sorted({p.api_key for p in MATRIX.values() if p.api_key})
    return {"admin": api, "manager": people["manager"], "agent": people["agent"],
            "key": key_client(stack, api, scopes), "key-without": key_client(stack, api, ["x:read"])}


def _call(client, route):
    """The route with made-up ids and an empty JSON body: enough to pass or fail the
    permission check, which comes before any validation."""
    path = re.sub(r"{(\w+)}", lambda m: f"no-{m.group(1)}", route.path.removeprefix("/api/v1"))
    kwargs = {"json": {}} if route.method in ("POST", "PATCH", "PUT") and route.body else {}
    return client.request(route.method, path, timeout=30, **kwargs)


@pytest.mark.parametrize("method,path", ROUTE_CASES, ids=[f"{m} {p}" for m, p in ROUTE_CASES])
@pytest.mark.parametrize("who", ["admin", "manager", "agent", "key", "key-without"])
def test_every_cell_of_the_matrix(stack, api, callers, who, method, path):
    """Each role and key against each route: 403 exactly where the matrix says no (the
    answer names the permission); anything but 401/403 where it says yes."""
    route = next(r for r in all_routes() if (r.method, r.path) == (method, path))
    if route.permission == PUBLIC:
        anonymous = Api(stack.base_url)
        assert _call(anonymous, route).status_code != 401
        return
    permission = MATRIX[route.permission]
    client = callers[who]
    if path.endswith("/auth/logout") and who in ROLES:  # do not sign the shared users out
        client = new_user(stack, api, who)
    if who in ROLES:
        allowed = permission.scope(who) is not None
    else:
        allowed = who == "key" and permission.api_key is not None
    response = _call(client, route)
    if allowed:
        assert response.status_code not in (401, 403), (who, response.status_code, response.text)
    else:
        assert response.status_code == 403, (who, response.status_code, response.text)
        assert error(response)["details"]["permission"] == permission.name


def test_agents_no_longer_run_company_wide_setup(stack, api, people, unique):
    """Finding: any agent created/changed/deleted task rules and renamed/deleted/restored
    any company (a rename rewrites company_name on contacts they cannot see); agents read
    lead-source costs."""
    agent, manager = people["agent"], people["manager"]
    pipeline = api.post("/pipelines", json={"name": f"Authz {unique}", "stages": [
        {"name": "New"}, {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]}).json()
    rule = {"pipeline_id": pipeline["id"], "stage_id": pipeline["stages"][0]["id"],
            "title": "Call them", "due_in_minutes": 60}
    assert agent.post("/task-rules", json=rule).status_code == 403
    made = api.post("/task-rules", json=rule).json()
    assert agent.patch(f"/task-rules/{made['id']}", json={"title": "x"}).status_code == 403
    assert agent.delete(f"/task-rules/{made['id']}").status_code == 403
    assert agent.get(f"/task-rules/{made['id']}").status_code == 200  # reading stays open
    # a manager's rule assigns within their team only
    outsider_rule = manager.post("/task-rules", json={**rule, "assignee_id": people["outsider"].user["id"]})
    assert outsider_rule.status_code == 403, outsider_rule.text

    company = api.post("/companies", json={"name": f"Acme {unique}"}).json()
    hidden = api.post("/contacts", json={"first_name": "Hidden", "company_id": company["id"],
                                         "owner_id": people["outsider"].user["id"],
                                         "emails": [f"hidden-{unique}@example.com"]}).json()
    assert agent.patch(f"/companies/{company['id']}", json={"name": "Pwned"}).status_code == 403
    assert agent.delete(f"/companies/{company['id']}").status_code == 403
    assert agent.post(f"/companies/{company['id']}/restore").status_code == 403
    assert api.get(f"/contacts/{hidden['id']}").json()["company_name"] == f"Acme {unique}"
    assert agent.post("/companies", json={"name": f"Agent Co {unique}"}).status_code == 201

    source = api.post("/lead-sources", json={"name": f"ads-{unique}", "costs": [
        {"period": "2026-01", "amount": 50000, "currency": "EUR"}]})
    assert source.status_code == 201, source.text
    assert agent.get("/lead-sources").status_code == 403
    assert agent.get(f"/lead-sources/{source.json()['id']}").status_code == 403
    assert agent.get("/reports/sources").status_code == 403
    assert manager.get("/lead-sources").status_code == 200
    assert source.json()["name"] in agent.get("/deal-settings").json()["lead_sources"]


def test_managers_targets_forms_and_inbound_requests_stay_in_their_team(stack, api, people, unique):
    """Finding: managers created targets for users outside their team, edited any team's
    forms and read every inbound request's raw payload."""
    manager, agent, outsider = people["manager"], people["agent"], people["outsider"]
    target = {"period": "2026-03", "deals_count": 3}
    assert manager.post("/targets", json={**target, "user_id": outsider.user["id"]}).status_code == 403
    assert manager.post("/targets", json={**target, "team": "other", "member_ids": [
        agent.user["id"], outsider.user["id"]]}).status_code == 403
    mine = manager.post("/targets", json={**target, "user_id": agent.user["id"]})
    assert mine.status_code == 201, mine.text
    assert manager.patch(f"/targets/{mine.json()['id']}",
                         json={"user_id": outsider.user["id"]}).status_code == 403
    theirs = api.post("/targets", json={**target, "user_id": outsider.user["id"]}).json()
    assert manager.get(f"/targets/{theirs['id']}").status_code == 404
    assert manager.delete(f"/targets/{theirs['id']}").status_code == 404

    for person in (agent, outsider):
        assert copied(stack, "contacts", person.user["id"])

    def form(client, user):
        return wait(lambda: (lambda r: r if r.status_code != 422 else None)(client.post(
            "/forms", json={"name": f"F {unique}", "owner_rule": {"kind": "fixed",
                                                                 "user_id": user.user["id"]}})))

    other_form = form(api, outsider)
    assert other_form.status_code == 201, other_form.text
    other_form = other_form.json()
    assert manager.patch(f"/forms/{other_form['id']}", json={"allowed_origins": [
        "https://evil.example"]}).status_code == 403
    assert manager.patch(f"/forms/{other_form['id']}", json={"owner_rule": {
        "kind": "fixed", "user_id": agent.user["id"]}}).status_code == 403
    assert manager.delete(f"/forms/{other_form['id']}").status_code == 403
    assert form(manager, outsider).status_code == 403
    assert manager.post("/forms", json={"name": "x", "owner_rule": {
        "kind": "round_robin", "team": outsider.user["team"]}}).status_code == 403
    team_form = form(manager, agent)
    assert team_form.status_code == 201, team_form.text
    team_form = team_form.json()
    assert manager.patch(f"/forms/{team_form['id']}", json={"name": "Ours"}).status_code == 200

    def submitted(key, n):
        answer = requests.post(f"{stack.base_url}/api/v1/forms/{key}/submissions", timeout=15,
                               json={"name": f"Lead {n} {unique}", "email": f"l{n}-{unique}@example.com"},
                               headers={"X-Forwarded-For": f"10.9.{n}.{random.randint(1, 250)}"})
        assert answer.status_code == 202, answer.text
        rid = answer.json()["id"]
        return wait(lambda: (lambda r: r if r.get("owner_id") else None)(
            api.get(f"/inbound/requests/{rid}").json()))

    elsewhere = submitted(other_form["key"], 1)
    ours = submitted(team_form["key"], 2)
    assert elsewhere["owner_id"] == outsider.user["id"] and ours["owner_id"] == agent.user["id"]
    assert manager.get(f"/inbound/requests/{elsewhere['id']}").status_code == 404
    assert manager.get(f"/inbound/requests/{ours['id']}").json()["payload"]
    listed = {r["id"] for r in manager.get("/inbound/requests", params={"limit": 500}).json()["items"]}
    assert ours["id"] in listed and elsewhere["id"] not in listed
    assert elsewhere["id"] in {r["id"] for r in api.get(
        "/inbound/requests", params={"limit": 500}).json()["items"]}


# --- 5. ownership on every write that sets an owner, assignee or agent -----------------

def csv_file(rows, header):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def run_import(client, data, **form):
    started = client.post("/imports", files={"file": ("people.csv", data)}, data=form, timeout=60)
    if started.status_code != 202:
        return started, None
    job_id = started.json()["id"]
    job = wait(lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(
        client.get(f"/imports/{job_id}").json()), timeout=60)
    return started, job


def test_imports_give_contacts_only_to_whom_the_importer_may(stack, api, people, unique):
    agent, manager, outsider = people["agent"], people["manager"], people["outsider"]
    for person in (agent, outsider):
        assert copied(stack, "contacts", person.user["id"])
    data = csv_file([["Ann", f"ann-{unique}@example.com"]], ("First name", "Email"))
    started, _ = run_import(agent, data, default_owner_id=outsider.user["id"])
    assert started.status_code == 403, started.text
    started, _ = run_import(api, data, default_owner_id=f"ghost-{unique}")
    assert started.status_code == 422 and "default_owner_id" in error(started)["details"]["fields"]
    started, _ = run_import(manager, data, default_owner_id=outsider.user["id"])
    assert started.status_code == 403

    rows = [["Eve", f"eve-{unique}@example.com", outsider.user["email"], ""],
            ["Ida", f"ida-{unique}@example.com", "", outsider.user["id"]],
            ["Gus", f"gus-{unique}@example.com", "", f"ghost-{unique}"],
            ["Own", f"own-{unique}@example.com", agent.user["email"], ""]]
    data = csv_file(rows, ("First name", "Email", "Owner email", "Owner id"))
    _, job = run_import(agent, data)
    assert job and job["status"] == "done", job
    owners = {r[0]: api.get("/contacts/lookup", params={"email": r[1]}).json()["items"][0]["owner_id"]
              for r in rows}
    assert owners == dict.fromkeys(("Eve", "Ida", "Gus", "Own"), agent.user["id"])
    reasons = {e["row"]: e["reason"] for e in agent.get(f"/imports/{job['id']}/errors").json()["items"]}
    assert set(reasons) == {2, 3, 4}, reasons
    first = agent.get(f"/imports/{job['id']}/errors", params={"limit": 2})
    assert first.status_code == 200, first.text
    first = first.json()
    rest = agent.get(f"/imports/{job['id']}/errors",
                     params={"limit": 2, "cursor": first["next_cursor"]})
    assert rest.status_code == 200, rest.text
    rest = rest.json()
    assert [e["row"] for e in first["items"] + rest["items"]] == [2, 3, 4]
    assert agent.get(f"/imports/{job['id']}/errors", params={
        "cursor": first["next_cursor"][:-2] + "AA"}).status_code == 422
    # an admin may name anyone who exists and is active, never an unknown or inactive id:
    # such a row is a row error (the default owner has it), not a failed import
    gone = api.post("/users", json={"email": f"gone-{unique}@crm.test", "password": "p" * 12,
                                    "name": "Gone", "role": "agent"}).json()
    assert api.patch(f"/users/{gone['id']}", json={"active": False}).status_code == 200
    assert copied(stack, "contacts", gone["id"], active=False)
    _, job = run_import(api, csv_file([["Zed", f"zed-{unique}@example.com", f"ghost2-{unique}"],
                                       ["Ola", f"ola-{unique}@example.com", outsider.user["id"]],
                                       ["Ina", f"ina-{unique}@example.com", gone["id"]]],
                                      ("First name", "Email", "Owner id")))
    assert job and job["status"] == "done" and job["counts"]["created"] == 3, job
    found = {n: api.get("/contacts/lookup", params={"email": f"{n.lower()}-{unique}@example.com"})
             .json()["items"][0]["owner_id"] for n in ("Zed", "Ola", "Ina")}
    assert found["Ola"] == outsider.user["id"] and found["Zed"] != f"ghost2-{unique}"
    assert found["Ina"] != gone["id"]
    assert {e["row"] for e in api.get(f"/imports/{job['id']}/errors").json()["items"]} == {2, 4}


def test_deals_tasks_and_contacts_owned_only_within_the_rule(stack, api, people, unique):
    agent, manager, outsider = people["agent"], people["manager"], people["outsider"]
    pipeline = api.post("/pipelines", json={"name": f"Own {unique}", "stages": [
        {"name": "New"}, {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]}).json()
    deal = {"title": "D", "currency": "EUR", "pipeline_id": pipeline["id"]}
    assert agent.post("/deals", json={**deal, "owner_id": outsider.user["id"]}).status_code == 403
    assert agent.post("/deals", json={**deal, "owner_id": f"ghost-{unique}"}).status_code == 422
    assert manager.post("/deals", json={**deal, "owner_id": outsider.user["id"]}).status_code == 403
    given = manager.post("/deals", json={**deal, "owner_id": agent.user["id"]})
    assert given.status_code == 201 and given.json()["owner_id"] == agent.user["id"]
    own = agent.post("/deals", json=deal).json()
    assert agent.patch(f"/deals/{own['id']}", json={"owner_id": outsider.user["id"]}).status_code == 403
    hidden = api.post("/contacts", json={"first_name": "H", "owner_id": outsider.user["id"],
                                         "emails": [f"h-{unique}@example.com"]}).json()
    refused = agent.post("/deals", json={**deal, "contact_id": hidden["id"]})
    assert refused.status_code == 422 and "contact_id" in error(refused)["details"]["fields"]

    assert copied(stack, "tasks", outsider.user["id"])
    assert agent.post("/tasks", json={"title": "t", "assignee_id": outsider.user["id"]}).status_code == 403
    refused = agent.post("/tasks", json={"title": "t", "contact_id": hidden["id"]})
    assert refused.status_code == 422
    theirs = api.post("/deals", json={**deal, "owner_id": outsider.user["id"]}).json()
    refused = agent.post("/tasks", json={"title": "t", "deal_id": theirs["id"]})
    assert refused.status_code == 422 and "deal_id" in error(refused)["details"]["fields"]
    assert manager.post("/tasks", json={"title": "t", "assignee_id": agent.user["id"]}).status_code == 201

    assert agent.post("/contacts", json={"first_name": "C", "owner_id": outsider.user["id"],
                                         "emails": [f"c-{unique}@example.com"]}).status_code == 403


def test_writes_name_only_active_users(stack, api, people, unique):
    """Finding: an admin (or API key) gave records to ids no user has. Every field that names
    a person is checked once, at the gateway: 422 naming the field, nothing changed."""
    agent = people["agent"]
    gone = stack.add_user(f"gone-{unique}", active=False)
    pipeline = api.post("/pipelines", json={"name": f"Ref {unique}", "stages": [
        {"name": "New"}, {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]}).json()
    key = f"helper_{unique}"
    assert api.post("/custom-fields", json={"entity": "deal", "key": key, "label": "Helper",
                                            "type": "user"}).status_code == 201
    mine = {"owner_id": agent.user["id"]}
    contact = api.post("/contacts", json={"first_name": "R", **mine}).json()
    company = api.post("/companies", json={"name": f"Ref {unique}", **mine}).json()
    deal = api.post("/deals", json={"title": "R", "currency": "EUR",
                                    "pipeline_id": pipeline["id"], **mine}).json()
    task = api.post("/tasks", json={"title": "R", "assignee_id": agent.user["id"]}).json()
    for nobody in (f"ghost-{unique}", gone):
        for method, path, body, field in (
                ("POST", "/contacts", {"first_name": "G", "owner_id": nobody}, "owner_id"),
                ("PATCH", f"/contacts/{contact['id']}", {"owner_id": nobody}, "owner_id"),
                ("POST", "/companies", {"name": "G", "owner_id": nobody}, "owner_id"),
                ("PATCH", f"/companies/{company['id']}", {"owner_id": nobody}, "owner_id"),
                ("POST", "/deals", {"title": "G", "currency": "EUR", "pipeline_id": pipeline["id"],
                                    "owner_id": nobody}, "owner_id"),
                ("PATCH", f"/deals/{deal['id']}", {"owner_id": nobody}, "owner_id"),
                ("PATCH", f"/deals/{deal['id']}", {"custom": {key: nobody}}, "custom"),
                ("POST", "/tasks", {"title": "G", "assignee_id": nobody}, "assignee_id"),
                ("PATCH", f"/tasks/{task['id']}", {"assignee_id": nobody}, "assignee_id"),
                ("POST", "/task-rules", {"pipeline_id": pipeline["id"], "title": "G",
                                         "stage_id": pipeline["stages"][0]["id"],
                                         "due_in_minutes": 60, "assignee_id": nobody},
                 "assignee_id"),
                ("POST", "/targets", {"user_id": nobody, "period": "2026-01",
                                      "deals_count": 1}, "user_id"),
                ("POST", "/targets", {"team": people["team"], "period": "2026-01", "deals_count": 1,
                                      "member_ids": [agent.user["id"], nobody]}, "member_ids"),
                ("POST", "/forms", {"name": "G", "owner_rule": {
                    "kind": "round_robin", "user_ids": [nobody]}}, "owner_rule"),
                ("POST", "/calls", {"to": mobile(), "agent_id": nobody}, "agent_id")):
            refused = api.request(method, path, json=body)
            assert refused.status_code == 422, (path, body, refused.text)
            details = error(refused)["details"]
            assert field in details["fields"] and details["unknown_users"] == [nobody], details
        started, _ = run_import(api, csv_file([["Ann"]], ("First name",)),
                                default_owner_id=nobody)
        assert started.status_code == 422 and "default_owner_id" in error(started)["details"]["fields"]
    # nothing changed
    assert api.get(f"/contacts/{contact['id']}").json()["owner_id"] == agent.user["id"]
    assert api.get(f"/companies/{company['id']}").json()["owner_id"] == agent.user["id"]
    kept = api.get(f"/deals/{deal['id']}").json()
    assert kept["owner_id"] == agent.user["id"] and not kept.get("custom", {}).get(key)
    assert api.get(f"/tasks/{task['id']}").json()["assignee_id"] == agent.user["id"]
    given = api.patch(f"/deals/{deal['id']}", json={"custom": {key: agent.user["id"]}})
    assert given.status_code == 200 and given.json()["custom"][key] == agent.user["id"]


def test_click_to_call_as_oneself_to_a_visible_contact(stack, api, people, unique):
    agent, manager, outsider = people["agent"], people["manager"], people["outsider"]
    for person in (agent, outsider):
        ext = str(random.randint(10**6, 10**7))
        assert api.patch(f"/users/{person.user['id']}", json={"extension": ext}).status_code == 200
        assert copied(stack, "telephony", person.user["id"], extension=ext)
    refused = agent.post("/calls", json={"to": mobile(), "agent_id": outsider.user["id"]})
    assert refused.status_code == 403, refused.text
    assert manager.post("/calls", json={"to": mobile(), "agent_id": outsider.user["id"]}).status_code == 403
    hidden = api.post("/contacts", json={"first_name": "H", "owner_id": outsider.user["id"],
                                         "phones": [mobile()]}).json()
    refused = agent.post("/calls", json={"to": mobile(), "contact_id": hidden["id"]})
    assert refused.status_code == 422 and "contact_id" in error(refused)["details"]["fields"]
    refused = agent.post("/calls", json={"to": mobile(), "contact_id": f"ghost-{unique}"})
    assert refused.status_code == 422
    # allowed: placed (201), or past authorization to a PBX that is not there (503, nothing
    # recorded: the stack of this file may run without one)
    placed = agent.post("/calls", json={"to": mobile()})
    assert placed.status_code in (201, 503), placed.text
    if placed.status_code == 201:
        assert placed.json()["agent_id"] == agent.user["id"]
    placed = manager.post("/calls", json={"to": mobile(), "agent_id": agent.user["id"]})
    assert placed.status_code in (201, 503), placed.text


# --- 3. extensions ----------------------------------------------------------------------

def test_extensions_are_unique_admin_set_and_never_widen_call_visibility(
        stack, api, people, unique):
    """Finding: agent A copied agent B's extension in their own profile and then saw B's
    customers' calls."""
    a, b = people["report"], people["outsider"]
    ext = str(random.randint(10**6, 10**7))
    assert api.patch(f"/users/{b.user['id']}", json={"extension": ext}).status_code == 200
    copy = a.patch("/users/me", json={"extension": ext})
    assert copy.status_code == 422 and "extension" in error(copy)["details"]["fields"]
    taken = api.patch(f"/users/{a.user['id']}", json={"extension": ext})
    assert taken.status_code == 409 and error(taken)["details"] == {"extension": ext}
    created = api.post("/users", json={"email": f"x-{unique}@crm.test", "password": "p" * 10,
                                       "name": "X", "role": "agent", "extension": ext})
    assert created.status_code == 409
    assert api.patch(f"/users/{a.user['id']}", json={"extension": ""}).json()["extension"] is None
    assert copied(stack, "telephony", b.user["id"], extension=ext)

    key = key_client(stack, api, ["telephony:write"])
    customer = api.post("/contacts", json={"first_name": "Bee's customer", "owner_id": b.user["id"],
                                           "phones": [mobile()]}).json()
    call_id = f"ext-{unique}"
    ring = key.post("/telephony/events", json={
        "event_id": f"{call_id}-1", "provider": "authz", "call_id": call_id,
        "direction": "inbound", "from": customer["phones"][0]["e164"], "to": "+390200000000",
        "extension": ext, "state": "ringing"})
    assert ring.status_code == 200, ring.text
    call = ring.json()["call"]
    assert call["agent_id"] == b.user["id"]
    assert a.get(f"/calls/{call['id']}").status_code == 404
    assert call["id"] not in {c["id"] for c in a.get("/calls", params={"limit": 500}).json()["items"]}

    # a copy that holds the extension twice (data from before the rule) names no one
    twin = {"id": f"twin-{unique}", "email": None, "name": "Twin", "role": "agent",
            "active": True, "extension": ext}
    publish_event(stack.amqp_uri, "gateway", "user_upserted", {"user": twin})
    assert copied(stack, "telephony", twin["id"], extension=ext)
    time.sleep(1.2)  # the telephony service's in-memory copy of users expires
    ring = key.post("/telephony/events", json={
        "event_id": f"{call_id}-2", "provider": "authz", "call_id": f"{call_id}-b",
        "direction": "inbound", "from": mobile(), "to": "+390200000000",
        "extension": ext, "state": "ringing"})
    assert ring.status_code == 200 and ring.json()["call"]["agent_id"] is None, ring.text


# --- 4. cursors -------------------------------------------------------------------------

def _b64(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parts(cursor):
    body, mac = cursor.split(".")
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))), mac


def _forge(payload, secret):
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(raw)}.{_b64(hmac.new(secret.encode(), raw, hashlib.sha256).digest()[:18])}"


def test_cursors_are_signed_and_carry_typed_values_only(stack, api, unique):
    for n in range(3):
        api.post("/contacts", json={"first_name": f"Cur{n}", "tags": [f"cur{unique}"],
                                    "emails": [f"cur{n}-{unique}@example.com"]})
    first = api.get("/contacts", params={"tag": f"cur{unique}", "limit": 1}).json()
    cursor = first["next_cursor"]
    second = api.get("/contacts", params={"tag": f"cur{unique}", "limit": 1, "cursor": cursor})
    assert second.status_code == 200 and second.json()["items"][0]["id"] != first["items"][0]["id"]

    payload, mac = _parts(cursor)
    assert payload["v"][0] == "t" and payload["i"][0] == "s"  # typed: datetime, text
    attacks = {
        "regex": {**payload, "v": {"$regex": "(a+)+$"}},
        "ne": {**payload, "i": {"$ne": None}},
        "unknown operator": {**payload, "v": {"$where": "sleep(1000)"}},
        "typed operator": {**payload, "v": ["s", {"$gt": ""}]},
    }
    for name, forged in attacks.items():
        raw = json.dumps(forged, separators=(",", ":"), sort_keys=True).encode()
        for token in (f"{_b64(raw)}.{mac}", _b64(raw), _forge(forged, stack.jwt_secret + "x")):
            answer = api.get("/contacts", params={"tag": f"cur{unique}", "cursor": token})
            assert answer.status_code == 422, (name, answer.status_code, answer.text)
            assert error(answer)["details"]["fields"]["cursor"]
    # an operator signed with the deployment's own secret still never reaches the database
    signed = _forge(attacks["typed operator"], stack.jwt_secret)
    answer = api.get("/contacts", params={"tag": f"cur{unique}", "cursor": signed})
    assert answer.status_code == 422, answer.text
    # a cursor of another list or another sort is refused
    of_users = api.get("/users", params={"limit": 1}).json()["next_cursor"]
    assert api.get("/contacts", params={"cursor": of_users}).status_code == 422
    assert api.get("/contacts", params={"tag": f"cur{unique}", "cursor": cursor,
                                        "sort": "updated_at"}).status_code == 422
    # the services' lists and the gateway's share one format
    for path in ("/tasks", "/deals", "/calls", "/audit", "/users", "/imports"):
        answer = api.get(path, params={"cursor": cursor[:-2] + "AA"})
        assert answer.status_code == 422, (path, answer.text)


def test_cursor_values_are_typed_even_when_signed():
    """Unit level: whatever a signed payload holds, only typed scalars come out."""
    from crm_common import cursors, errors
    from services.contacts.operations import decode_export_token
    good = cursors.encode_cursor("created_at", -1, {"_id": "abc", "created_at": None}, "c")
    assert cursors.decode_cursor(good, "created_at", -1, "c") == (None, "abc")
    with pytest.raises(errors.ValidationFailed):
        cursors.decode_cursor(good, "created_at", -1, "other-list")
    for value in ({"$ne": None}, ["s", {"$gt": ""}], ["i", True], ["x", 1], ["t", "not a time"],
                  ["s"], "plain"):
        forged = cursors.sign_token({"l": "c", "f": "created_at", "d": -1, "v": value,
                                     "i": ["s", "abc"]})
        with pytest.raises(errors.ValidationFailed):
            cursors.decode_cursor(forged, "created_at", -1, "c")
    with pytest.raises(errors.ValidationFailed):
        decode_export_token(cursors.sign_token({"s": {"$gt": ""}, "c": None}))
    with pytest.raises(errors.ValidationFailed):
        decode_export_token(_b64(json.dumps({"s": "x", "c": None}).encode()))


# --- 8. Idempotency-Key -----------------------------------------------------------------

def test_a_retried_post_with_the_same_key_writes_once(api, make_user, unique):
    body = {"first_name": "Idem", "tags": [f"idem{unique}"], "emails": [f"idem-{unique}@example.com"]}
    headers = {"Idempotency-Key": f"k-{unique}"}
    first = api.post("/contacts", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = api.post("/contacts", json=body, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert len(api.get("/contacts", params={"tag": f"idem{unique}"}).json()["items"]) == 1

    other = api.post("/contacts", json={**body, "first_name": "Else"}, headers=headers)
    assert other.status_code == 422 and error(other)["code"] == "idempotency_key_reused"
    elsewhere = api.patch(f"/contacts/{first.json()['id']}", json=body, headers=headers)
    assert elsewhere.status_code == 422  # the same key on another route is another request

    # per caller: another user's identical key is theirs
    agent = make_user("agent")
    mine = agent.post("/contacts", json={**body, "emails": [f"idem2-{unique}@example.com"]},
                      headers=headers)
    assert mine.status_code == 201 and mine.json()["id"] != first.json()["id"]

    # an error answer is kept too; a bad key is refused
    bad = {"title": ""}
    refused = api.post("/tasks", json=bad, headers={"Idempotency-Key": f"t-{unique}"})
    assert api.post("/tasks", json=bad, headers={"Idempotency-Key": f"t-{unique}"}).json() == refused.json()
    invalid = api.post("/contacts", json=body, headers={"Idempotency-Key": "x" * 201})
    assert invalid.status_code == 422


def test_concurrent_requests_with_one_key_write_once(api, unique):
    body = {"first_name": "Race", "tags": [f"race{unique}"], "emails": [f"race-{unique}@example.com"]}
    headers = {"Idempotency-Key": f"race-{unique}"}
    answers = []

    def post():
        answers.append(requests.post(api.url("/contacts"), json=body, timeout=30,
                                     headers={**api.headers, **headers}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    assert len(api.get("/contacts", params={"tag": f"race{unique}"}).json()["items"]) == 1


def test_the_openapi_document_declares_the_header_on_writes(stack):
    spec = requests.get(f"{stack.base_url}/api/v1/openapi.json", timeout=10).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            names = {p.get("name") for p in operation.get("parameters", [])}
            signed_in = operation.get("security") != []
            if method in ("post", "patch", "put", "delete") and signed_in:
                assert "Idempotency-Key" in names, (method, path)
                assert {"409", "422"} <= set(operation["responses"]), (method, path)
