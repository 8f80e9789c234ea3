"""The list endpoints of contacts, companies, deals, tasks and calls answered from the
search index, through the gateway: the same pages as the owners' MongoDB lists (filters,
sorts, cursors, totals), visibility in results, totals and cursors, and a client's own
write in its next list at once."""
import time
from datetime import timedelta

import pytest

from crm_common.timeutil import to_iso, utcnow
from tests.test_search import (make_contact, make_deal, make_pipeline, phone_digits, settle,
                               wait_ready)


@pytest.fixture(scope="module")
def ready(stack):
    wait_ready(stack)


def walk(client, path, **params):
    """Every item of a list, page by page: (ids in order, total of the first page)."""
    out, cursor, total = [], None, None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        total = page.get("total") if total is None else total
        out += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return out, total
        assert len(out) == len(set(out)), (path, params, out)   # a cursor that goes back


def owner_ids(stack, service, method, **params):
    """The owner's own MongoDB list (as no one in particular: everything), every page."""
    out, cursor = [], None
    while True:
        page = stack.rpc.call(service, method, dict(params, limit=500,
                                                    **({"cursor": cursor} if cursor else {})),
                              timeout=30)
        out += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def same_as_owner(api, stack, path, service, method, **params):
    """Index pages (limit 2: cursors at every step) == the owner's list, once settled."""
    expected = owner_ids(stack, service, method, **params)

    def check():
        got, total = walk(api, path, limit=2, include_total="true", **params)
        return got == expected and total == len(expected)
    assert settle(check, 15, 0.2)[0], (path, params, walk(api, path, limit=2, **params),
                                       expected)
    return expected


def one_cursor_for_both(api, stack, path, service, method, **params):
    """Pages read in turn from the index (the gateway) and from the owner's MongoDB list
    (the gateway's fallback when search is down) follow each other: no gap, none twice."""
    expected = same_as_owner(api, stack, path, service, method, **params)
    got, cursor, turn = [], None, 0
    while True:
        query = dict(params, limit=1, **({"cursor": cursor} if cursor else {}))
        page = (api.get(path, params=query).json() if turn % 2 else
                stack.rpc.call(service, method, query, timeout=30))
        got += [item["id"] for item in page["items"]]
        cursor, turn = page["next_cursor"], turn + 1
        if not cursor:
            break
        assert len(got) == len(set(got)), (path, params, turn, got, expected)
    assert got == expected, (path, params)


def test_contact_lists_from_the_index_are_the_owners(api, stack, ready, unique, make_user):
    tag = f"lst{unique}"
    owner = make_user("agent")
    people = []
    for i, (first, last, status, source) in enumerate([
            ("Ana", "Zeta", "lead", "web"), ("Bruno", "alpha", "customer", "web"),
            ("Çelik", "Beta", "lead", "phone"), ("Dora", "Beta", "lead", "web"),
            ("Émile", "Gamma", "customer", "phone")]):
        people.append(make_contact(api, first_name=first, last_name=last, status=status,
                                   source=source, tags=[tag],
                                   owner_id=owner.user["id"] if i % 2 else None))
    assert api.delete(f"/contacts/{people[4]['id']}").status_code in (200, 204)
    listed = same_as_owner(api, stack, "/contacts", "contacts", "list_contacts", tag=tag)
    assert len(listed) == 4 and people[4]["id"] not in listed
    for params in ({"sort": "name"}, {"sort": "-name"}, {"sort": "updated_at"},
                   {"status": "lead"}, {"source": "web", "sort": "created_at"},
                   {"owner_id": owner.user["id"]}, {"include_deleted": "true"},
                   {"not_contacted_since": to_iso(utcnow())},
                   {"created_after": people[2]["created_at"]},
                   {"created_before": people[2]["created_at"]}):
        same_as_owner(api, stack, "/contacts", "contacts", "list_contacts", tag=tag, **params)
    # q: any word, accent-free, as a prefix while typing, a typo (the owner's MongoDB list
    # answers only a phone or an email q, while the index is rebuilt)
    assert walk(api, "/contacts", tag=tag, q="alpha")[0] == [people[1]["id"]]
    assert walk(api, "/contacts", tag=tag, q="celik", sort="name")[0] == [people[2]["id"]]
    assert walk(api, "/contacts", tag=tag, q="bet", sort="name")[0] == [people[2]["id"], people[3]["id"]]
    assert walk(api, "/contacts", tag=tag, q="emil", include_deleted="true")[0] == [people[4]["id"]]
    assert walk(api, "/contacts", tag=tag, q="Brunp Alpha ")[0] == [people[1]["id"]]
    for sort in ("-created_at", "name", "-updated_at"):
        one_cursor_for_both(api, stack, "/contacts", "contacts", "list_contacts", tag=tag,
                            sort=sort)
    # a cursor of another sort, or tampered with, is refused
    page = api.get("/contacts", params={"tag": tag, "limit": 1}).json()
    assert api.get("/contacts", params={"tag": tag, "sort": "name",
                                        "cursor": page["next_cursor"]}).status_code == 422
    assert api.get("/contacts", params={"tag": tag, "cursor": page["next_cursor"][:-2] + "xx"}
                   ).status_code == 422


def test_deal_task_call_and_company_lists_from_the_index(api, stack, ready, unique, make_user):
    agent = make_user("agent")
    pipeline = make_pipeline(api, unique)
    contact = make_contact(api, first_name="Listed", last_name=f"Deals{unique}",
                           phones=[f"+39 347 {phone_digits()}"])
    deals = [make_deal(api, pipeline, title=f"L{i} {unique}", contact_id=contact["id"],
                       owner_id=agent.user["id"] if i % 2 else None) for i in range(3)]
    assert api.post(f"/deals/{deals[0]['id']}/move",
                    json={"stage_id": pipeline["stages"][1]["id"]}).status_code == 200
    # the dashboards' drill-downs: won in a period, expected to close in a month, a currency
    before_won = utcnow()
    won = next(s for s in pipeline["stages"] if s["kind"] == "won")
    assert api.post(f"/deals/{deals[2]['id']}/move", json={"stage_id": won["id"]}).status_code == 200
    for deal, fields in ((deals[0], {"expected_close_date": "2031-03-10"}),
                         (deals[1], {"expected_close_date": "2031-04-01", "currency": "USD"})):
        assert api.patch(f"/deals/{deal['id']}", json=fields).status_code == 200
    for params in ({}, {"status": "open"}, {"stage_id": pipeline["stages"][1]["id"]},
                   {"owner_id": agent.user["id"], "sort": "updated_at"}, {"currency": "USD"},
                   {"status": "won", "closed_after": to_iso(before_won),
                    "closed_before": to_iso(utcnow() + timedelta(minutes=1))},
                   {"closed_before": to_iso(before_won)},
                   {"expected_close_from": "2031-03-01", "expected_close_to": "2031-04-01"},
                   {"expected_close_from": "2031-04-01"}, {"expected_close_to": "2031-12-01"}):
        listed = same_as_owner(api, stack, "/deals", "deals", "list_deals",
                               contact_id=contact["id"], **params)
        if "closed_after" in params or "expected_close_to" in params:
            assert listed, params   # the ranges do match something
    assert api.get("/deals", params={"expected_close_from": "2031-04-01",
                                     "expected_close_to": "2031-03-01"}).status_code == 422
    now = utcnow()
    for i, due in enumerate([now - timedelta(days=1), now + timedelta(days=1), None,
                             now + timedelta(days=2)]):
        body = {"title": f"T{i} {unique}", "contact_id": contact["id"],
                "assignee_id": agent.user["id"]}
        if due:
            body["due_at"] = to_iso(due)
        assert api.post("/tasks", json=body).status_code == 201
    for params in ({}, {"sort": "-due_at"}, {"sort": "created_at"}, {"overdue": "true"},
                   {"overdue": "false"}, {"due_after": to_iso(now)},
                   {"due_before": to_iso(now + timedelta(days=1, hours=1))}):
        same_as_owner(api, stack, "/tasks", "tasks", "list_tasks", contact_id=contact["id"],
                      **params)
    for params in ({}, {"sort": "-due_at"}):   # tasks without a date last, one cursor
        one_cursor_for_both(api, stack, "/tasks", "tasks", "list_tasks",
                            contact_id=contact["id"], **params)
    for i, state in enumerate(["ringing", "ringing"]):
        answer = api.post("/telephony/events", json={
            "event_id": f"ls-{unique}-{i}", "provider": "liststest", "call_id": f"ls-{unique}-{i}",
            "direction": "inbound", "from": contact["phones"][0]["e164"], "to": "+390212345678",
            "state": state, "occurred_at": to_iso(now - timedelta(minutes=i))})
        assert answer.status_code in (200, 201, 202), answer.text
    for params in ({}, {"direction": "inbound"}, {"from": to_iso(now - timedelta(seconds=30))}):
        same_as_owner(api, stack, "/calls", "telephony", "list_calls", contact_id=contact["id"],
                      **params)
    one_cursor_for_both(api, stack, "/calls", "telephony", "list_calls", contact_id=contact["id"])
    company = api.post("/companies", json={"name": f"Listed Co {unique}", "tags": [unique]})
    assert company.status_code == 201
    same_as_owner(api, stack, "/companies", "contacts", "list_companies", tag=unique)


def test_visibility_in_results_totals_and_cursors(api, ready, unique, make_user):
    team = f"lteam-{unique}"
    manager = make_user("manager", team=team)
    mine = make_user("agent", team=team, manager_id=manager.user["id"])
    other = make_user("agent", team=f"lother-{unique}")
    tag = f"vis{unique}"
    by_mine = [make_contact(api, first_name=f"M{i}", tags=[tag], owner_id=mine.user["id"])["id"]
               for i in range(3)]
    by_other = [make_contact(api, first_name=f"O{i}", tags=[tag], owner_id=other.user["id"])["id"]
                for i in range(2)]
    shared = [make_contact(api, first_name="S", tags=[tag], owner_id=None)["id"]]
    pipeline = make_pipeline(api, unique)
    deal_mine = make_deal(api, pipeline, title=f"V {unique}", owner_id=mine.user["id"])["id"]
    deal_other = make_deal(api, pipeline, title=f"V {unique}", owner_id=other.user["id"])["id"]
    expected = {"admin": (api, set(by_mine + by_other + shared), {deal_mine, deal_other}),
                "manager": (manager, set(by_mine + shared), {deal_mine}),
                "agent": (mine, set(by_mine + shared), {deal_mine}),
                "another team's agent": (other, set(by_other + shared), {deal_other})}
    for role, (client, contacts, deals) in expected.items():
        got, total = walk(client, "/contacts", tag=tag, limit=1, include_total="true")
        assert set(got) == contacts and len(got) == len(contacts) and total == len(contacts), role
        got, total = walk(client, "/deals", pipeline_id=pipeline["id"], limit=1,
                          include_total="true")
        assert set(got) == deals and total == len(deals), role
    # a cursor made for the admin's page does not open another's records to an agent
    page = api.get("/contacts", params={"tag": tag, "limit": 1, "sort": "created_at"}).json()
    got = other.get("/contacts", params={"tag": tag, "sort": "created_at",
                                         "cursor": page["next_cursor"]})
    assert got.status_code == 200 and not set(i["id"] for i in got.json()["items"]) - set(
        by_other + shared)


def test_a_clients_own_write_is_in_its_next_list_at_once(api, ready, unique):
    tag = f"ryow{unique}"
    for i in range(8):
        made = make_contact(api, first_name=f"Fresh{i}", tags=[tag])
        listed = api.get("/contacts", params={"tag": tag, "limit": 1}).json()["items"]
        assert listed and listed[0]["id"] == made["id"], i
        changed = api.patch(f"/contacts/{made['id']}", json={"position": f"P{i}"}).json()
        listed = api.get("/contacts", params={"tag": tag, "sort": "-updated_at", "limit": 1}
                         ).json()["items"]
        assert listed[0]["position"] == f"P{i}" and listed[0]["updated_at"] == changed["updated_at"]
        assert api.delete(f"/contacts/{made['id']}").status_code in (200, 204)
        listed = api.get("/contacts", params={"tag": tag}).json()["items"]
        assert made["id"] not in {c["id"] for c in listed}, i
    contact = make_contact(api, first_name="Fresh", tags=[tag])
    task = api.post("/tasks", json={"title": f"Fresh task {unique}", "contact_id": contact["id"]})
    found = api.get("/tasks", params={"contact_id": contact["id"]}).json()["items"]
    assert [t["id"] for t in found] == [task.json()["id"]]


def test_long_and_odd_q_in_lists(api, ready):
    for q in ("*", '"', ":", "(", ".*[a-(z]+\\", "title:x", "x" * 100):
        started = time.monotonic()
        response = api.get("/contacts", params={"q": q, "include_total": "true"})
        assert response.status_code in (200, 400), response.text
        assert time.monotonic() - started < 3.0
    assert api.get("/contacts", params={"q": "x" * 101}).status_code == 422


def test_the_index_takes_the_record_an_event_carries(api, stack, ready, unique):
    """No fetch-back: a contact only an event knows (its owner has none) is listed as the
    event carried it, and goes when a later event says it was deleted."""
    from crm_common.messaging.publish import publish_event
    tag = f"carried{unique}"
    now = utcnow()
    record = {"id": f"carried-{unique}", "first_name": "Carried", "last_name": unique,
              "tags": [tag], "owner_id": None, "emails": [], "phones": [],
              "created_at": to_iso(now), "updated_at": to_iso(now), "deleted_at": None}
    publish_event(stack.amqp_uri, "contacts", "contact_updated",
                  {"contact": record, "changed": ["tags"]})
    assert settle(lambda: walk(api, "/contacts", tag=tag)[0] == [record["id"]])[0]
    later = to_iso(now + timedelta(seconds=1))
    publish_event(stack.amqp_uri, "contacts", "contact_deleted", {
        "contact_id": record["id"], "contact": dict(record, deleted_at=later, updated_at=later)})
    assert settle(lambda: walk(api, "/contacts", tag=tag)[0] == [])[0]


def test_a_touch_moves_last_contacted_at_in_the_index(api, stack, ready, unique):
    tag = f"touch{unique}"
    touched = make_contact(api, first_name="Touched", tags=[tag], phones=[f"+39 348 {phone_digits()}"])
    untouched = make_contact(api, first_name="Untouched", tags=[tag])
    before = to_iso(utcnow() - timedelta(seconds=5))
    call = {"provider": "touchtest", "call_id": f"t-{unique}", "direction": "inbound",
            "from": touched["phones"][0]["e164"], "to": "+390212345678"}
    for state in ("ringing", "answered"):
        answer = api.post("/telephony/events", json=dict(
            call, event_id=f"t-{unique}-{state}", state=state, occurred_at=to_iso(utcnow())))
        assert answer.status_code in (200, 201, 202), answer.text
    # the contacts service moves it without an event of the contact; the index follows
    assert settle(lambda: api.get(f"/contacts/{touched['id']}").json()["last_contacted_at"])[0]
    assert same_as_owner(api, stack, "/contacts", "contacts", "list_contacts", tag=tag,
                         not_contacted_since=before) == [untouched["id"]]


# ---- the index alone (no stack) ------------------------------------------------------

def _indexed_contacts(tmp_path, count):
    """An index of `count` contacts sharing few created_at, updated_at and names (ties
    far longer than a page), and their records."""
    from bson import ObjectId

    from services.search import feed
    from services.search.index import TantivyIndex
    index = TantivyIndex(str(tmp_path))
    base = utcnow()
    names = [("Mario", "Rossi"), ("Maria", "Rossi"), ("Ana", "Rossini"), ("", ""),
             ("Zoë", "Abcdefghijklmnop"), ("Zoe", "Abcdefghijklmnopq"), ("Ольга", "Иванова")]
    records = []
    for i in range(count):
        first, last = names[i % len(names)]
        records.append({"id": str(ObjectId()), "first_name": first, "last_name": last,
                        "emails": [], "phones": [], "owner_id": None, "version": 1,
                        "created_at": to_iso(base - timedelta(seconds=i % 3)),
                        "updated_at": to_iso(base - timedelta(seconds=i % 2))})
        feed.write(index, "contact", records[-1])
    index.commit()
    index.committed()
    return index, records


def test_a_sort_with_many_equal_keys_pages_to_the_end(tmp_path):
    """Hundreds of records share each sort value: pages of 9 walk them all, in the owners'
    order (value, then id; for the name sort the folded name, then id), none twice, none
    missed."""
    from services.search import lists
    from services.search.documents import micros, name_sort_key
    index, records = _indexed_contacts(tmp_path, 300)
    keys = {"created_at": lambda r: micros(r["created_at"]),
            "updated_at": lambda r: micros(r["updated_at"]),
            "name": lambda r: name_sort_key(r).encode()}
    for sort in ("-created_at", "created_at", "updated_at", "-updated_at", "name", "-name"):
        key = keys[sort.lstrip("-")]
        expected = [r["id"] for r in sorted(records, key=lambda r: (key(r), r["id"]),
                                            reverse=sort.startswith("-"))]
        got, cursor = [], None
        while True:
            page = lists.page(index, "contact", dict(sort=sort, limit=9, include_total=True,
                                                     **({"cursor": cursor} if cursor else {})),
                              None, "IT")
            assert page["total"] == len(records)
            got += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert got == expected, sort
    index.close()


def test_a_cursor_of_the_index_and_of_the_owners_list_are_one(tmp_path):
    """The index gives the owner's keyset cursor (collection, sort field, direction, last
    value and id, signed) and takes the owner's: a client paging while the gateway moves
    between the index and the owner's list goes on where it was."""
    from pymongo import ASCENDING, DESCENDING

    from crm_common.cursors import encode_cursor
    from crm_common.timeutil import parse_iso
    from services.contacts.domain import search_fields
    from services.contacts.operations import CONTACT_SORTS
    from services.search import lists
    from services.tasks.store import SORTS as TASK_SORTS
    index, records = _indexed_contacts(tmp_path, 40)
    # the owners' sort fields, as their lists name them in their cursors
    assert lists.LISTS["contact"].owner_sorts == CONTACT_SORTS
    assert lists.LISTS["task"].owner_sorts == TASK_SORTS
    for sort, field in (("-created_at", "created_at"), ("name", "sort_name")):
        first = lists.page(index, "contact", {"sort": sort, "limit": 5}, None, "IT")
        last = next(r for r in records if r["id"] == first["items"][-1]["id"])
        doc = {"_id": last["id"], "created_at": parse_iso(last["created_at"]),
               "sort_name": search_fields(last)["sort_name"]}
        owners = encode_cursor(field, DESCENDING if sort.startswith("-") else ASCENDING, doc,
                               "contacts")
        assert first["next_cursor"] == owners, sort
        # and the owner's cursor opens the index's next page
        assert lists.page(index, "contact", {"sort": sort, "limit": 5, "cursor": owners},
                          None, "IT")["items"][0]["id"] != last["id"]
    index.close()
