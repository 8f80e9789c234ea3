"""Notes end to end: gateway -> notes service -> the records' owners over RPC -> SecantusDB;
mentions through notifications to the inbox, commitments through tasks to a reminder, notes
on the contact's timeline."""
import time
from datetime import datetime, timedelta, timezone

from crm_common.timeutil import to_iso


def wait_until(fetch, check, timeout=20):
    deadline = time.time() + timeout
    while True:
        value = fetch()
        if check(value) or time.time() > deadline:
            return value
        time.sleep(0.2)


def known_to_notes(stack, user_id):
    users = stack.db("notes")["users"]
    assert wait_until(lambda: users.find_one({"_id": user_id}), bool), user_id


def contact_of(api, unique, **fields):
    response = api.post("/contacts", json={"first_name": "Nora", "last_name": f"Note{unique}",
                                           **fields})
    assert response.status_code == 201, response.text
    return response.json()


def test_note_lifecycle_sanitised_pinned_history_and_soft_delete(api, stack, make_user, unique):
    agent = make_user("agent")
    other = make_user("agent")
    contact = contact_of(api, unique, owner_id=agent.user["id"])
    body = ('<p onclick="steal()">Call <b>back</b> <script>alert(1)</script>'
            '<a href="javascript:alert(1)">x</a> <a href="https://ex.com">site</a>'
            '<img src=x onerror=alert(1)></p>')
    first = agent.post("/notes", json={"record_type": "contact", "record_id": contact["id"],
                                       "body": body})
    assert first.status_code == 201, first.text
    note = first.json()
    assert "script" not in note["body"] and "onclick" not in note["body"]
    assert "javascript" not in note["body"] and "<img" not in note["body"]
    assert "<b>back</b>" in note["body"] and 'href="https://ex.com"' in note["body"]
    assert note["author_id"] == agent.user["id"] and note["contact_id"] == contact["id"]
    assert note["text"] == "Call back x site"

    pinned = agent.post("/notes", json={"record_type": "contact", "record_id": contact["id"],
                                        "body": "Prefers email", "pinned": False}).json()
    newest = agent.post("/notes", json={"record_type": "contact", "record_id": contact["id"],
                                        "body": "Newest"}).json()
    assert agent.patch(f"/notes/{pinned['id']}", json={"pinned": True}).status_code == 200
    listed = agent.get("/notes", params={"record_type": "contact", "record_id": contact["id"]})
    assert [n["id"] for n in listed.json()["items"]] == [pinned["id"], newest["id"], note["id"]]

    # edits keep history; only the author edits; others who do not see the record get 404
    edited = agent.patch(f"/notes/{note['id']}", json={"body": "<i>Called</i>"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["body"] == "<i>Called</i>"
    assert [h["body"] for h in edited.json()["history"]] == [note["body"]]
    assert api.patch(f"/notes/{note['id']}", json={"body": "admin edit"}).status_code == 403
    assert other.get(f"/notes/{note['id']}").status_code == 404
    assert other.get("/notes", params={"record_type": "contact",
                                       "record_id": contact["id"]}).status_code == 404
    assert other.post("/notes", json={"record_type": "contact", "record_id": contact["id"],
                                      "body": "hi"}).status_code == 404

    # soft delete by the author: gone from the list, kept in the database
    assert agent.delete(f"/notes/{newest['id']}").status_code == 200
    listed = agent.get("/notes", params={"record_type": "contact", "record_id": contact["id"]})
    assert newest["id"] not in [n["id"] for n in listed.json()["items"]]
    stored = stack.db("notes")["notes"].find_one({"_id": newest["id"]})
    assert stored["deleted_at"] and stored["deleted_by"] == agent.user["id"]
    # an admin deletes anyone's note
    assert api.delete(f"/notes/{note['id']}").status_code == 200
    assert agent.delete(f"/notes/{note['id']}").status_code == 409

    # bad input: nothing stored
    before = stack.db("notes")["notes"].count_documents({})
    for bad in ({"record_type": "contact", "record_id": contact["id"],
                 "body": "<script>alert(1)</script>"},
                {"record_type": "planet", "record_id": contact["id"], "body": "x"},
                {"record_type": "contact", "record_id": contact["id"], "body": ""},
                {"record_type": "contact", "record_id": contact["id"], "body": "x" * 20001}):
        answer = agent.post("/notes", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"]["code"]
    assert agent.post("/notes", json={"record_type": "deal", "record_id": "nope",
                                      "body": "x"}).status_code == 404
    assert stack.db("notes")["notes"].count_documents({}) == before

    # on the contact's timeline
    timeline = wait_until(
        lambda: api.get(f"/contacts/{contact['id']}/timeline").json()["items"],
        lambda items: any(i["kind"] == "note_created" for i in items))
    assert any(i["kind"] == "note_created" and "Prefers email" in (i.get("summary") or "")
               for i in timeline), timeline


def test_mentions_notify_and_unknown_or_blind_users_are_refused(api, stack, make_user, unique):
    manager = make_user("manager", team=f"t{unique}")
    agent = make_user("agent", team=f"t{unique}", manager_id=manager.user["id"])
    outsider = make_user("agent", team=f"x{unique}")
    for user in (manager, agent, outsider):
        known_to_notes(stack, user.user["id"])
    contact = contact_of(api, unique, owner_id=agent.user["id"])
    deal = api.post("/deals", json={"title": f"Deal {unique}", "contact_id": contact["id"],
                                    "owner_id": agent.user["id"], "amount": 1000,
                                    "currency": "EUR"})
    assert deal.status_code == 201, deal.text
    deal = deal.json()

    note = agent.post("/notes", json={
        "record_type": "deal", "record_id": deal["id"], "mentions": [manager.user["id"]],
        "body": "Can we give <b>10%</b>? @boss"})
    assert note.status_code == 201, note.text
    note = note.json()
    assert note["mentions"] == [manager.user["id"]] and note["contact_id"] == contact["id"]
    inbox = wait_until(lambda: manager.get("/notifications").json()["items"],
                       lambda items: any(n["type"] == "note_mentioned" for n in items))
    notice = next(n for n in inbox if n["type"] == "note_mentioned")
    assert notice["ref"] == {"type": "deal", "id": deal["id"]}
    assert "10%" in notice["title"]

    # a threaded comment mentioning the agent back
    comment = manager.post(f"/notes/{note['id']}/comments",
                           json={"body": "Yes, until March", "mentions": [agent.user["id"]]})
    assert comment.status_code == 201, comment.text
    reply = agent.post(f"/notes/{note['id']}/comments",
                       json={"body": "Thanks", "parent_id": comment.json()["id"]})
    assert reply.status_code == 201, reply.text
    thread = agent.get(f"/notes/{note['id']}/comments").json()["items"]
    assert [c["parent_id"] for c in thread] == [None, comment.json()["id"]]
    wait_until(lambda: agent.get("/notifications").json()["items"],
               lambda items: any(n["type"] == "note_mentioned" for n in items))
    assert agent.get(f"/notes/{note['id']}").json()["comments_count"] == 2
    edited = manager.patch(f"/notes/{note['id']}/comments/{comment.json()['id']}",
                           json={"body": "Yes, until 31 March"})
    assert edited.status_code == 200 and edited.json()["history"][0]["body"] == "Yes, until March"
    assert agent.patch(f"/notes/{note['id']}/comments/{comment.json()['id']}",
                       json={"body": "hijack"}).status_code == 403

    # unknown user, a user who cannot see the deal, a bad parent: 422, nothing stored
    notes_before = stack.db("notes")["notes"].count_documents({})
    comments_before = stack.db("notes")["comments"].count_documents({})
    unknown = agent.post("/notes", json={"record_type": "deal", "record_id": deal["id"],
                                         "body": "hi", "mentions": ["no-such-user"]})
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["details"]["unknown"] == ["no-such-user"]
    blind = agent.post("/notes", json={"record_type": "deal", "record_id": deal["id"],
                                       "body": "hi", "mentions": [outsider.user["id"]]})
    assert blind.status_code == 422, blind.text
    assert blind.json()["error"]["details"]["invisible"] == [outsider.user["id"]]
    bad_parent = agent.post(f"/notes/{note['id']}/comments",
                            json={"body": "x", "parent_id": "nope"})
    assert bad_parent.status_code == 422
    assert stack.db("notes")["notes"].count_documents({}) == notes_before
    assert stack.db("notes")["comments"].count_documents({}) == comments_before
    assert outsider.get(f"/notes/{note['id']}/comments").status_code == 404


def test_commitment_creates_a_reminder_and_is_listed(api, stack, make_user, unique):
    agent = make_user("agent")
    contact = contact_of(api, unique, owner_id=agent.user["id"])
    due = (datetime.now(timezone.utc) + timedelta(days=30)).replace(microsecond=0)
    created = agent.post("/notes", json={
        "record_type": "contact", "record_id": contact["id"], "body": "Agreed a discount",
        "commitment": {"text": "10% discount until 31 March", "to_whom": "Nora",
                       "due_at": to_iso(due)}})
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["commitment"]["status"] == "open"
    assert note["commitment"]["owner_id"] == agent.user["id"]
    key = note["commitment"]["reminder_key"]

    tasks = stack.db("tasks")["tasks"]
    task = wait_until(lambda: tasks.find_one({"source_key": key}), bool)
    assert task, key
    assert task["assignee_id"] == agent.user["id"] and task["contact_id"] == contact["id"]
    assert "10% discount" in task["title"]
    assert agent.get(f"/tasks/{task['_id']}").status_code == 200

    mine = agent.get("/commitments").json()["items"]
    assert [n["id"] for n in mine] == [note["id"]]
    by_contact = api.get("/commitments", params={"contact_id": contact["id"]}).json()["items"]
    assert [n["id"] for n in by_contact] == [note["id"]]
    assert agent.get("/commitments", params={"owner_id": "someone-else"}).status_code == 403

    kept = agent.patch(f"/notes/{note['id']}", json={"commitment": {"status": "kept"}})
    assert kept.status_code == 200, kept.text
    assert agent.get("/commitments").json()["items"] == []
    assert [n["id"] for n in agent.get("/commitments", params={"status": "kept"})
            .json()["items"]] == [note["id"]]

    bad = agent.post("/notes", json={"record_type": "contact", "record_id": contact["id"],
                                     "body": "x", "commitment": {"text": "no date"}})
    assert bad.status_code == 422
    assert agent.patch(f"/notes/{note['id']}",
                       json={"commitment": {"status": "maybe"}}).status_code == 422


def test_notes_are_found_by_search_by_who_sees_their_record(api, make_user, unique):
    """The one search box finds notes (through the notes service's events), each only for
    who sees the record it is on; a deleted note, or one on a record given to someone
    else, is no longer found by who lost it."""
    owner, other = make_user("agent"), make_user("agent")
    contact = contact_of(api, unique, owner_id=owner.user["id"])
    note = owner.post("/notes", json={"record_type": "contact", "record_id": contact["id"],
                                      "body": f"<p>Promised zebra{unique} discount</p>"})
    assert note.status_code == 201, note.text
    word = f"zebra{unique}"

    def notes_found(client):
        answer = client.get("/search", params={"q": word, "types": "note"})
        assert answer.status_code == 200, answer.text
        return [h for h in answer.json()["items"] if h["type"] == "note"]

    found = wait_until(lambda: notes_found(owner), bool)
    assert found and found[0]["id"] == note.json()["id"], found
    assert found[0]["record"] == {"type": "contact", "id": contact["id"]}
    assert notes_found(api) and not notes_found(other)
    # the contact given to the other agent: its notes follow
    assert api.patch(f"/contacts/{contact['id']}",
                     json={"owner_id": other.user["id"]}).status_code == 200
    assert wait_until(lambda: notes_found(other), bool)
    assert not notes_found(owner)
    assert api.delete(f"/notes/{note.json()['id']}").status_code == 200
    assert wait_until(lambda: notes_found(api), lambda found: not found) == []
