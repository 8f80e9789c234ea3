"""Imports end to end: gateway (multipart) -> RPC -> contacts service job (background,
batches) -> SecantusDB; counts, per-row errors, duplicate policies, dry run, undo."""
import csv
import io
import json
import os
import time

import pytest

from crm_common.messaging.publish import publish_event
from tests.test_search import settle

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "imports")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        return handle.read()


def upload(api, filename, data, **options):
    form = {k: (json.dumps(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool)
                else v) for k, v in options.items()}
    return api.post("/imports", files={"file": (filename, data)}, data=form, timeout=120)


def wait_job(api, job_id, statuses=("done", "failed", "undone"), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = api.get(f"/imports/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"import {job_id} still {job['status']}: {job}")


def run_import(api, filename, data, **options):
    started = upload(api, filename, data, **options)
    assert started.status_code == 202, started.text
    return wait_job(api, started.json()["id"])


def lookup(api, email):
    items = api.get("/contacts/lookup", params={"email": email}).json()["items"]
    assert len(items) == 1, (email, items)
    return items[0]


def make_csv(rows, header=("First name", "Last name", "Email", "Phone", "Position", "Tags")):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def phone(unique, n):
    return f"+39 333 {int(unique, 16) % 10**5:05d}{n:02d}"


def test_italian_csv_with_bom_counts_every_row_and_error(api, record_events):
    recorder = record_events("contacts")
    started = upload(api, "clienti.csv", fixture("contacts_it_utf8_bom.csv"))
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] == "pending" and job["format"] == "csv"
    assert job["encoding"] == "utf-8-sig" and job["delimiter"] == ";"
    assert [m["target"] for m in job["mapping"]] == [
        "first_name", "last_name", "email", "phone", "phone:mobile", "company", "position",
        "tags", "birthday", "custom.codice_cliente"]
    job = wait_job(api, job["id"])
    assert job["status"] == "done", job
    # rows 2..9 less the blank line 7; row 5 has nothing valid; row 6 repeats row 2's email
    assert job["counts"] == {"rows": 7, "created": 5, "updated": 0, "skipped": 1, "failed": 1}
    assert job["companies_created"] == 2  # "Trattoria Da Mario" (twice, any case), "Verdi Srl"
    errors = [(e["row"], e["column"], e["field"]) for e in job["errors"]]
    assert errors == [(3, "E-mail", "email"), (4, "Telefono", "phone"), (5, "E-mail", "email"),
                      (5, "Telefono", "phone"), (5, None, "_row"), (9, "Compleanno", "birthday")]
    assert job["errors_count"] == 6
    assert job["errors"][0]["value"] == "luca.verdi(at)it-fixture.example"

    giulia = lookup(api, "giulia.bianchi@it-fixture.example")
    assert (giulia["first_name"], giulia["last_name"]) == ("Giulia", "Bianchi")
    assert [p["e164"] for p in giulia["phones"]] == ["+390248217319", "+393339182734"]
    assert giulia["tags"] == ["ristorante", "vip"] and giulia["birthday"] == "1985-03-15"
    assert giulia["custom"] == {"codice_cliente": "C-001"} and giulia["source"] == "import"
    paolo = lookup(api, "paolo.rossi@it-fixture.example")
    assert paolo["company_id"] == giulia["company_id"] and giulia["company_name"] == "Trattoria Da Mario"
    luca = api.get("/contacts/lookup", params={"phone": "+39 06 5173 9246"}).json()["items"][0]
    assert luca["emails"] == [] and luca["position"] == "CEO"  # the bad email only is dropped
    sara = lookup(api, "sara.neri@it-fixture.example")
    assert sara["phones"] == []
    anna = lookup(api, "anna.gallo@it-fixture.example")
    assert anna["birthday"] is None and anna["phones"][0]["e164"] == "+390553617482"

    download = api.get(f"/imports/{job['id']}/errors.csv")
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert lines[0] == ["row", "column", "field", "reason", "value"]
    assert [line[0] for line in lines[1:]] == ["3", "4", "5", "5", "5", "9"]
    assert lines[2][4] == "chiamami"

    finished = recorder.wait_for(lambda e: e["type"] == "import_finished"
                                 and e["data"]["import_id"] == job["id"])
    assert finished and finished[0]["data"]["counts"] == job["counts"]
    assert recorder.wait_for(lambda e: e["type"] == "import_progress"
                             and e["data"]["import_id"] == job["id"])


def test_cp1251_and_latin1_tab_files_are_detected(api):
    ru = run_import(api, "база.csv", fixture("contacts_ru_cp1251.csv"))
    assert ru["encoding"] == "cp1251" and ru["delimiter"] == ","
    assert ru["counts"] == {"rows": 3, "created": 3, "updated": 0, "skipped": 0, "failed": 0}
    assert [(e["row"], e["column"], e["field"]) for e in ru["errors"]] == [(4, "Почта", "email")]
    ivan = lookup(api, "ivan.petrov@ru-fixture.example")
    assert (ivan["first_name"], ivan["last_name"], ivan["position"]) == ("Иван", "Петров", "Директор")
    assert ivan["company_name"] == "ООО Ромашка" and ivan["phones"][0]["e164"] == "+74951234567"
    assert lookup(api, "maria@ru-fixture.example")["company_id"] == ivan["company_id"]
    # words are searched in the search index, which reads each imported batch by its ids
    assert settle(lambda: [c["id"] for c in api.get("/contacts", params={"q": "иван петров"}
                                                    ).json()["items"]][:1] == [ivan["id"]])

    es = run_import(api, "clientes.tsv", fixture("contacts_es_latin1.tsv"))
    assert es["encoding"] in ("cp1252", "latin_1", "iso8859_1") and es["delimiter"] == "\t"
    assert es["counts"]["created"] == 2
    assert [(e["row"], e["field"]) for e in es["errors"]] == [(3, "status")]
    jose = lookup(api, "jose.munoz@es-fixture.example")
    assert jose["last_name"] == "Muñoz Pérez" and jose["company_name"] == "Peña y Compañía"
    assert jose["status"] == "customer" and jose["tags"] == ["fería", "málaga"]
    assert lookup(api, "begona@es-fixture.example")["status"] == "lead"


def test_xlsx_reads_formula_values_several_columns_and_owner_by_email(api, stack, unique):
    owner_id = f"user-{unique}"
    publish_event(stack.amqp_uri, "gateway", "user_upserted", {"user": {
        "id": owner_id, "email": "Owner@xlsx-fixture.example", "name": "Owner", "role": "agent",
        "active": True}})
    deadline = time.time() + 10
    while time.time() < deadline and not stack.db("contacts")["users"].find_one({"_id": owner_id}):
        time.sleep(0.1)
    job = run_import(api, "contacts.xlsx", fixture("contacts_en.xlsx"))
    assert job["format"] == "xlsx", job
    assert job["counts"] == {"rows": 3, "created": 3, "updated": 0, "skipped": 0, "failed": 0}
    assert [(e["row"], e["column"], e["field"]) for e in job["errors"]] == [
        (3, "Owner", "owner"), (4, "Email", "email")]
    alice = lookup(api, "alice@xlsx-fixture.example")
    assert [e["email"] for e in alice["emails"]] == ["alice@xlsx-fixture.example",
                                                      "a.walker@xlsx-fixture.example"]
    assert [(p["e164"], p["type"]) for p in alice["phones"]] == [
        ("+442079460018", "work"), ("+393331234567", "mobile")]
    assert alice["owner_id"] == owner_id and alice["position"] == "Director"
    assert alice["custom"] == {"budget": 1200, "score": 42}  # the formula's saved value
    assert alice["tags"] == ["lead", "uk"] and alice["company_name"] == "Walker & Co"
    eve = api.get("/contacts/lookup", params={"phone": "+1 415 555 0100"}).json()["items"][0]
    assert eve["first_name"] == "Eve"  # =CONCAT(...) read as its value


def test_duplicate_policies_dry_run_and_undo(api, stack, unique):
    contacts = stack.db("contacts")["contacts"]
    existing = api.post("/contacts", json={
        "first_name": "Existing", "last_name": f"Person{unique}",
        "emails": [f"dup.{unique}@example.com"], "phones": [phone(unique, 1)],
        "tags": ["old"]}).json()

    def rows(tag, n):
        return make_csv([
            ["Existing", f"Person{unique}", f"DUP.{unique}@example.com", phone(unique, 2), "CTO", tag],
            # same phone as the existing one, and a new email for it
            ["Other", "Name", f"other.{tag}.{unique}@example.com", phone(unique, 1), "", ""],
            ["New", f"{tag}{unique}", f"new.{tag}.{unique}@example.com", "", "", tag],
            ["New again", "", f"new.{tag}.{unique}@example.com", phone(unique, 10 + n), "", ""],
        ])

    before = contacts.count_documents({})
    dry = run_import(api, "dry.csv", rows("dry", 0), on_duplicate="update", dry_run=True)
    assert dry["dry_run"] is True and dry["status"] == "done"
    assert dry["counts"] == {"rows": 4, "created": 1, "updated": 3, "skipped": 0, "failed": 0}
    assert contacts.count_documents({}) == before
    assert api.get(f"/contacts/{existing['id']}").json() == existing
    assert api.post(f"/imports/{dry['id']}/undo").status_code == 409  # nothing to undo

    skip = run_import(api, "skip.csv", rows("skip", 1), on_duplicate="skip")
    assert skip["counts"] == {"rows": 4, "created": 1, "updated": 0, "skipped": 3, "failed": 0}
    assert api.get(f"/contacts/{existing['id']}").json()["position"] is None

    created = run_import(api, "create.csv", rows("create", 2), on_duplicate="create")
    assert created["counts"] == {"rows": 4, "created": 4, "updated": 0, "skipped": 0, "failed": 0}
    forced = contacts.find_one({"import_id": created["id"], "import_row": 2})
    assert forced["possible_duplicates"] == [existing["id"]]

    updated = run_import(api, "update.csv", rows("upd", 3), on_duplicate="update")
    # row 2 and 3 update the existing contact; row 5 fills the one row 4 created
    assert updated["counts"] == {"rows": 4, "created": 1, "updated": 3, "skipped": 0, "failed": 0}
    after = api.get(f"/contacts/{existing['id']}").json()
    assert after["first_name"] == "Existing"  # never overwritten
    assert after["position"] == "CTO"  # was empty: filled
    assert [p["e164"] for p in after["phones"]] == [p["e164"] for p in existing["phones"]] + [
        phone(unique, 2).replace(" ", "")]
    assert after["tags"] == ["old", "upd"]
    assert [e["email"] for e in after["emails"]] == [f"dup.{unique}@example.com",
                                                     f"other.upd.{unique}@example.com"]
    new = lookup(api, f"new.upd.{unique}@example.com")
    assert [p["e164"] for p in new["phones"]] == [phone(unique, 13).replace(" ", "")]

    undo = api.post(f"/imports/{updated['id']}/undo")
    assert undo.status_code == 202, undo.text
    undone = wait_job(api, updated["id"], statuses=("undone", "failed"))
    assert undone["status"] == "undone" and undone["restored"] == 1 and undone["deleted"] == 1
    restored = api.get(f"/contacts/{existing['id']}").json()
    assert restored["position"] is None and restored["tags"] == ["old"]
    assert [p["e164"] for p in restored["phones"]] == [p["e164"] for p in existing["phones"]]
    assert api.get("/contacts/lookup", params={"email": f"new.upd.{unique}@example.com"}).json()["items"] == []
    assert api.post(f"/imports/{updated['id']}/undo").status_code == 409  # only once


def test_bad_input_is_rejected_and_changes_nothing(api, stack, unique):
    jobs = stack.db("contacts")["imports"]
    count = jobs.count_documents({})
    empty = upload(api, "empty.csv", b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"].lower()
    pdf = upload(api, "report.pdf", fixture("not_a_spreadsheet.pdf"))
    assert pdf.status_code == 400 and "CSV or XLSX" in pdf.json()["error"]["message"]
    broken = upload(api, "broken.xlsx", b"PK\x03\x04garbage")
    assert broken.status_code == 400
    no_file = api.post("/imports", files={"other": ("a.csv", b"a,b")})
    assert no_file.status_code == 422 and "file" in no_file.json()["error"]["details"]["fields"]
    not_multipart = api.post("/imports", json={"file": "x"})
    assert not_multipart.status_code == 415
    policy = upload(api, "a.csv", b"Email\nx@y.com\n", on_duplicate="merge")
    assert policy.status_code == 422 and "on_duplicate" in policy.json()["error"]["details"]["fields"]
    bad_target = upload(api, "a.csv", b"Email\nx@y.com\n", mapping={"Email": "salary"})
    assert bad_target.status_code == 422
    assert "Email" in bad_target.json()["error"]["details"]["fields"]["mapping"]
    bad_column = upload(api, "a.csv", b"Email\nx@y.com\n", mapping={"Mail": "email"})
    assert bad_column.status_code == 422
    nothing = upload(api, "a.csv", b"Colour;Size\nred;L\n")
    assert nothing.status_code == 422 and "columns" in nothing.json()["error"]["details"]
    too_big = upload(api, "big.csv", b"Email\n" + b"a" * (51 * 1024 * 1024))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    assert api.get("/imports/nope").status_code == 404
    assert jobs.count_documents({}) == count


def test_explicit_mapping_overrides_the_guess(api, unique):
    data = make_csv([[f"map.{unique}@example.com", "Rossi", "Kunde A", "x"]],
                    header=("Contatto", "Nachname", "Note", "Junk"))
    job = run_import(api, "m.csv", data, mapping={"Contatto": "email", "Note": "custom.note",
                                                 "Junk": "ignore"})
    assert [m["target"] for m in job["mapping"]] == ["email", "last_name", "custom.note", "ignore"]
    contact = lookup(api, f"map.{unique}@example.com")
    assert contact["last_name"] == "Rossi" and contact["custom"] == {"note": "Kunde A"}


@pytest.mark.timeout(300)
def test_restart_mid_import_resumes_without_duplicates(api, stack, unique):
    rows = [[f"R{i}", f"Resume{unique}", f"r{i}.{unique}@example.com", "", "", ""]
            for i in range(5000)]
    rows += [[f"D{i}", "", f"r{i}.{unique}@example.com", "", "", ""] for i in range(0, 5000, 10)]
    started = upload(api, "resume.csv", make_csv(rows), on_duplicate="skip")
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    deadline = time.time() + 120
    while time.time() < deadline:
        job = api.get(f"/imports/{job_id}").json()
        if job["status"] == "running" and job["rows_done"] >= 1000:
            break
        time.sleep(0.1)
    assert job["status"] == "running" and job["rows_done"] < 5500, job
    stack.stop_service("contacts")
    stopped = stack.db("contacts")["imports"].find_one({"_id": job_id})
    # stopped between batches: what was committed stays, the rest is left for the restart
    assert stopped["status"] == "running" and 1002 <= stopped["next_row"] < 5502, stopped
    assert stopped["lease_until"] is None  # handed back on the graceful stop
    stack.start_service("contacts")
    stack.wait_service("contacts")
    job = wait_job(api, job_id, timeout=240)
    assert job["status"] == "done", job
    assert job["counts"] == {"rows": 5500, "created": 5000, "updated": 0, "skipped": 500,
                             "failed": 0}
    contacts = stack.db("contacts")["contacts"]
    assert contacts.count_documents({"import_id": job_id}) == 5000
    rows_seen = {d["import_row"] for d in contacts.find({"import_id": job_id}, {"import_row": 1})}
    assert rows_seen == set(range(2, 5002))


def test_an_agents_update_import_leaves_other_owners_contacts_alone(api, make_user, unique):
    agent, other = make_user("agent"), make_user("agent")
    mine = agent.post("/contacts", json={"first_name": "Mine", "emails": [f"mine.{unique}@example.com"]}).json()
    theirs = other.post("/contacts", json={"first_name": "Theirs",
                                           "emails": [f"theirs.{unique}@example.com"]}).json()
    data = make_csv([["Mine", "", f"mine.{unique}@example.com", "", "Buyer", ""],
                     ["Theirs", "", f"theirs.{unique}@example.com", "", "Spy", ""]])
    job = run_import(agent, "mine.csv", data, on_duplicate="update")
    assert job["counts"] == {"rows": 2, "created": 0, "updated": 1, "skipped": 1, "failed": 0}
    assert [e["row"] for e in job["errors"]] == [3]
    assert agent.get(f"/contacts/{mine['id']}").json()["position"] == "Buyer"
    assert other.get(f"/contacts/{theirs['id']}").json()["position"] is None


def test_undo_keeps_what_people_changed_since_the_import(api, unique):
    existing = api.post("/contacts", json={"first_name": "Before", "emails": [f"keep.{unique}@example.com"]}).json()
    untouched = api.post("/contacts", json={"first_name": "Plain", "emails": [f"plain.{unique}@example.com"]}).json()
    data = make_csv([["Before", "", f"keep.{unique}@example.com", "", "Imported", ""],
                     ["Plain", "", f"plain.{unique}@example.com", "", "Imported", ""],
                     ["Created", "", f"created.{unique}@example.com", "", "", ""],
                     ["Edited", "", f"edited.{unique}@example.com", "", "", ""]])
    job = run_import(api, "later.csv", data, on_duplicate="update")
    assert job["counts"]["updated"] == 2 and job["counts"]["created"] == 2
    time.sleep(0.05)
    api.patch(f"/contacts/{existing['id']}", json={"last_name": "EditedLater"})
    edited = lookup(api, f"edited.{unique}@example.com")
    api.patch(f"/contacts/{edited['id']}", json={"position": "Customer now"})

    assert api.post(f"/imports/{job['id']}/undo").status_code == 202
    undone = wait_job(api, job["id"], statuses=("undone", "failed"))
    assert (undone["restored"], undone["deleted"], undone["kept"]) == (1, 1, 2)
    kept = api.get(f"/contacts/{existing['id']}").json()
    assert kept["last_name"] == "EditedLater" and kept["position"] == "Imported"
    assert api.get(f"/contacts/{untouched['id']}").json()["position"] is None
    assert lookup(api, f"edited.{unique}@example.com")["position"] == "Customer now"
    assert api.get("/contacts/lookup", params={"email": f"created.{unique}@example.com"}).json()["items"] == []
