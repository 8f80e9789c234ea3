"""Export end to end: streamed CSV/XLSX through the gateway with the list's filters and
the caller's visibility, CSV injection neutralized, and a round trip back through import."""
import csv
import io

from tests.test_import import run_import


def make(api, unique, i, **fields):
    body = {"first_name": f"Exp{i}", "last_name": f"Orter{unique}",
            "emails": [f"exp{i}.{unique}@example.com"],
            "phones": [f"+39 333 {int(unique, 16) % 10**5:05d}{i:02d}"],
            "tags": [f"exp{unique}", "round"], "custom": {"budget": 100 + i, "tier": "gold"},
            "position": "Buyer", **fields}
    response = api.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def read_csv(response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_csv_export_filters_streams_and_neutralizes_formulas(api, unique):
    made = [make(api, unique, i) for i in range(3)]
    evil = make(api, unique, 9, first_name="=HYPERLINK(\"http://x\")", last_name="@SUM(A1)",
                position="+cmd", tags=[f"exp{unique}", "-1"])
    make(api, unique, 8, tags=["other"])  # outside the filter
    response = api.get("/contacts/export", params={"tag": f"exp{unique}"}, stream=True)
    assert "Content-Length" not in response.headers  # streamed (chunked), not built whole
    rows = read_csv(response)
    assert {r["id"] for r in rows} == {c["id"] for c in made + [evil]}
    bad = next(r for r in rows if r["id"] == evil["id"])
    assert bad["first_name"] == "'=HYPERLINK(\"http://x\")" and bad["last_name"] == "'@SUM(A1)"
    assert bad["position"] == "'+cmd"
    first = next(r for r in rows if r["id"] == made[0]["id"])
    assert first["emails"] == f"exp0.{unique}@example.com"
    assert first["phones"] == "'" + made[0]["phones"][0]["e164"]  # "+..." is guarded too
    assert first["tags"] == f"exp{unique}; round"
    assert first["custom"] == '{"budget": 100, "tier": "gold"}'
    assert api.get("/contacts/export", params={"format": "pdf"}).status_code == 422
    assert api.get("/contacts/export", params={"created_after": "soon"}).status_code == 422


def test_export_then_import_round_trip(api, stack, unique):
    made = {c["id"]: c for c in (make(api, unique, i) for i in range(4))}
    exported = api.get("/contacts/export", params={"tag": f"exp{unique}"}).content
    # the same file imported back: every row is a duplicate of its contact
    again = run_import(api, "export.csv", exported, on_duplicate="skip")
    assert again["counts"] == {"rows": 4, "created": 0, "updated": 0, "skipped": 4, "failed": 0}
    # imported as new contacts: every field comes back the same
    copies = run_import(api, "export.csv", exported, on_duplicate="create")
    assert copies["counts"]["created"] == 4 and copies["errors"] == []
    db = stack.db("contacts")["contacts"]
    for doc in db.find({"import_id": copies["id"]}):
        copy = api.get(f"/contacts/{doc['_id']}").json()
        original = made[doc["possible_duplicates"][0]]
        for key in ("first_name", "last_name", "emails", "tags", "custom", "position", "status",
                    "do_not_contact", "company_name", "birthday"):
            assert copy[key] == original[key], key
        assert [p["e164"] for p in copy["phones"]] == [p["e164"] for p in original["phones"]]


def test_xlsx_export(api, unique):
    from openpyxl import load_workbook
    made = [make(api, unique, i) for i in range(2)]
    evil = make(api, unique, 7, first_name="=1+1")
    response = api.get("/contacts/export", params={"tag": f"exp{unique}", "format": "xlsx"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(response.content), read_only=True).worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    header = rows[0]
    by_id = {r[header.index("id")]: dict(zip(header, r)) for r in rows[1:]}
    assert set(by_id) == {c["id"] for c in made + [evil]}
    assert by_id[evil["id"]]["first_name"] == "'=1+1"  # text, not a formula
    # and the XLSX imports back as duplicates of the same contacts
    again = run_import(api, "export.xlsx", response.content, on_duplicate="skip")
    assert again["counts"]["skipped"] == 3


def test_export_respects_visibility(api, stack, make_user, unique):
    agent = make_user("agent")
    mine = agent.post("/contacts", json={"first_name": "Mine", "last_name": unique,
                                         "tags": [f"vis{unique}"]})
    assert mine.status_code == 201, mine.text
    other = make(api, unique, 5, tags=[f"vis{unique}"], owner_id=stack.add_user("someone-else"))
    ids = {r["id"] for r in read_csv(agent.get("/contacts/export",
                                                params={"tag": f"vis{unique}"}))}
    assert mine.json()["id"] in ids and other["id"] not in ids
    admin_ids = {r["id"] for r in read_csv(api.get("/contacts/export",
                                                    params={"tag": f"vis{unique}"}))}
    assert {mine.json()["id"], other["id"]} <= admin_ids


def test_export_pages_come_from_one_cursor_and_survive_losing_it(api, stack, unique,
                                                               monkeypatch):
    """The contacts service keeps one sorted cursor per export; a page asked where that
    cursor is not (another replica, expired) restarts right after the last contact given."""
    from crm_common import cursors
    # the position is signed with the stack's secret: sign the "lost" one as a replica would
    monkeypatch.setattr(cursors, "_secret", stack.jwt_secret.encode())
    tag = f"exp{unique}"
    for n in range(7):
        assert api.post("/contacts", json={"first_name": f"P{n}", "tags": [tag]}).status_code == 201
    first = stack.rpc.call("contacts", "export_page", {"tag": tag}, None, 3)
    second = stack.rpc.call("contacts", "export_page", {"tag": tag}, first["next_cursor"], 3)
    state = cursors.verify_token(first["next_cursor"])
    lost = cursors.sign_token({**state, "s": "gone"})
    again = stack.rpc.call("contacts", "export_page", {"tag": tag}, lost, 3)
    assert [c["id"] for c in again["items"]] == [c["id"] for c in second["items"]]
    last = stack.rpc.call("contacts", "export_page", {"tag": tag}, second["next_cursor"], 3)
    names = [c["first_name"] for c in first["items"] + second["items"] + last["items"]]
    assert names == [f"P{n}" for n in range(6, -1, -1)] and last["next_cursor"] is None
