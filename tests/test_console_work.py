"""The console's working screens in Debian's chromium against the real stack: Today, tasks
(list, calendar drag-to-reschedule), calls, the contact card's edits, the contacts list's
filters / bulk actions / saved views, companies, role-aware buttons. One browser and one
signed-in page for the module (a fresh sign-in per test costs seconds); each test saves a
screenshot under .test-output/screens/. Skips like tests/test_console.py."""
import datetime as dt
import os
import random
import re
import uuid
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.test_console import SCREENS, _drag, browser, pytestmark, signed_in  # noqa: F401

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - requirements-dev.txt pins it (pytestmark skips)
    expect = None

ZONE = "Europe/Rome"


@pytest.fixture(scope="module")
def worker(stack, api):
    """An agent with a time zone, signed in through the API (the page signs in too)."""
    password = uuid.uuid4().hex
    body = {"email": f"console-{uuid.uuid4().hex[:10]}@crm.test", "password": password,
            "name": "Console Agent", "role": "agent", "timezone": ZONE,
            "extension": str(random.randint(10000, 99999))}
    created = api.post("/users", json=body)
    assert created.status_code == 201, created.text
    client = stack.sign_in(body["email"], password)
    client.password = password
    return client


@pytest.fixture(scope="module")
def browser_page(stack, worker, browser):
    with signed_in(browser, stack, worker, timezone_id=ZONE, accept_downloads=True) as page:
        yield page


@pytest.fixture(scope="module")
def admin_page(stack, browser, browser_page):
    """A second context in the same browser, signed in as the first admin."""
    with signed_in(browser, stack) as page:
        yield page


@pytest.fixture
def page(browser_page, request):
    yield browser_page
    browser_page.screenshot(path=os.path.join(SCREENS, f"{request.node.name}.png"), full_page=True)


def _contact(client, **fields):
    digits = "".join(random.choice("0123456789") for _ in range(7))
    body = {"first_name": f"Ann{uuid.uuid4().hex[:5]}", "last_name": "Work", "phones": [f"+39347{digits}"],
            "owner_id": client.user["id"], **fields}
    created = client.post("/contacts", json=body)
    assert created.status_code == 201, created.text
    return created.json()


def _task(client, **fields):
    created = client.post("/tasks", json={"assignee_id": client.user["id"], **fields})
    assert created.status_code == 201, created.text
    return created.json()


def _local(day, hour, minute=0):
    return dt.datetime.combine(day, dt.time(hour, minute), ZoneInfo(ZONE))


def _missed_call(api, number):
    key = api.post("/api-keys", json={"name": f"pbx-{uuid.uuid4().hex[:6]}",
                                      "scopes": ["telephony:write"]}).json()["key"]
    call_id = uuid.uuid4().hex
    for state in ("ringing", "ended"):
        sent = api.post("/telephony/events", headers={"X-API-Key": key}, json={
            "event_id": uuid.uuid4().hex, "provider": "pbx1", "call_id": call_id,
            "direction": "inbound", "from": number, "to": "+390200000000", "state": state,
            **({"outcome": "no_answer"} if state == "ended" else {})})
        assert sent.status_code == 200, sent.text


def _wait(predicate, page, timeout_s=15):
    for _ in range(int(timeout_s * 5)):
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(200)
    raise AssertionError("condition not met in time")


def test_today_completes_a_call_task_only_with_a_next_step_and_reschedules(stack, api, worker, page):
    contact = _contact(worker)
    now = dt.datetime.now(ZoneInfo(ZONE))
    overdue = _task(worker, title=f"Call back {uuid.uuid4().hex[:5]}", kind="call",
                    contact_id=contact["id"], due_at=(now - dt.timedelta(days=1)).isoformat())
    # due in a few minutes: today whichever day the tasks service's copy of the user says
    today = _task(worker, title=f"Send offer {uuid.uuid4().hex[:5]}", kind="todo",
                  due_at=(now + dt.timedelta(minutes=10)).isoformat())
    deal = worker.post("/deals", json={"title": f"Stalled {uuid.uuid4().hex[:5]}", "amount": 250000,
                                       "currency": "EUR", "owner_id": worker.user["id"]}).json()
    _missed_call(api, contact["phones"][0]["e164"])
    # the page asks once on load: wait until the API answers with all of it, then check
    # what the page shows
    _wait(lambda: (lambda a: {overdue["id"], today["id"]} <= {t["id"] for t in a["overdue"] + a["today"]}
                   and deal["id"] in {d["id"] for d in a["deals_without_next_step"] or []})(
        worker.get("/agenda", params={"limit": 100}).json()), page)
    page.goto(stack.stream_url + "/today")
    expect(page.get_by_test_id("agenda-overdue").get_by_test_id(f"task-{overdue['id']}")).to_be_visible()
    expect(page.get_by_test_id("agenda-today").get_by_test_id(f"task-{today['id']}")).to_be_visible()
    expect(page.get_by_test_id(f"agenda-deal-{deal['id']}")).to_contain_text("€2,500.00")
    expect(page.get_by_test_id("agenda-missed")).to_contain_text(contact["first_name"])
    page.screenshot(path=os.path.join(SCREENS, "today_agenda.png"))

    page.get_by_test_id(f"task-{overdue['id']}").get_by_test_id("task-complete").click()
    submit = page.get_by_test_id("complete-submit")
    expect(submit).to_be_disabled()  # a call task needs its next step
    page.get_by_test_id("complete-result").fill("interested, wants a demo")
    page.get_by_test_id("next-step").fill("Demo call")
    page.screenshot(path=os.path.join(SCREENS, "today_next_step_asked.png"))
    submit.click()
    expect(page.get_by_test_id(f"task-{overdue['id']}")).to_have_count(0)
    done = worker.get(f"/tasks/{overdue['id']}").json()
    assert done["status"] == "done" and done["result"] == "interested, wants a demo"
    follow = _wait(lambda: [t for t in worker.get("/tasks", params={"contact_id": contact["id"], "status": "open"})
                            .json()["items"] if t["title"] == "Demo call"], page)
    assert follow[0]["kind"] == "call" and follow[0]["due_at"]

    row = page.get_by_test_id(f"task-{today['id']}")
    row.get_by_test_id("task-reschedule").click()
    page.get_by_test_id("reschedule-tomorrow").click()
    tomorrow = (now.date() + dt.timedelta(days=1)).isoformat()
    moved = _wait(lambda: (lambda t: t if t["due_at"] and dt.datetime.fromisoformat(t["due_at"].replace("Z", "+00:00"))
                           .astimezone(ZoneInfo(ZONE)).date().isoformat() == tomorrow else None)(
        worker.get(f"/tasks/{today['id']}").json()), page)
    assert moved["status"] == "open"


def test_tasks_list_filters_and_calendar_drag_moves_a_task_to_another_day(stack, worker, page):
    now = dt.datetime.now(ZoneInfo(ZONE))
    day = now.date()
    task = _task(worker, title=f"Meet {uuid.uuid4().hex[:5]}", kind="meeting", due_at=_local(day, 10, 15).isoformat())
    page.goto(stack.stream_url + "/tasks")
    expect(page.get_by_test_id("task-list")).to_contain_text(task["title"])
    page.goto(stack.stream_url + "/tasks?view=week")
    chip = page.get_by_test_id(f"cal-task-{task['id']}")
    expect(page.get_by_test_id(f"day-{day.isoformat()}").get_by_test_id(f"cal-task-{task['id']}")).to_be_visible()
    target = day + dt.timedelta(days=1 if day.weekday() < 6 else -1)  # stay within the week shown
    _drag(page, chip, page.get_by_test_id(f"day-{target.isoformat()}"))
    expect(page.get_by_test_id(f"day-{target.isoformat()}").get_by_test_id(f"cal-task-{task['id']}")).to_be_visible()
    want = _local(target, 10, 15)
    _wait(lambda: dt.datetime.fromisoformat(worker.get(f"/tasks/{task['id']}").json()["due_at"].replace("Z", "+00:00")) == want, page)
    page.get_by_text("Month", exact=True).click()
    expect(page.get_by_test_id(f"day-{target.isoformat()}").get_by_test_id(f"cal-task-{task['id']}")).to_be_visible()


def test_calls_log_shows_missed_not_called_back_and_calls_with_one_click(stack, api, worker, page):
    contact = _contact(worker)
    number = contact["phones"][0]["e164"]
    _missed_call(api, number)
    page.goto(stack.stream_url + "/calls")
    page.get_by_text("Missed, not called back").click()
    row = page.get_by_test_id("calls-table").locator("tr", has_text=number).first
    expect(row).to_contain_text("Missed")
    with page.expect_request(lambda r: r.url.endswith("/api/v1/calls") and r.method == "POST") as posted:
        row.get_by_test_id("click-to-call").click()
    assert posted.value.post_data_json == {"to": number, "contact_id": contact["id"]}
    # no PBX in the test platform: the API's refusal is shown, not a blank page
    expect(page.locator(".mantine-Notification-root").last).to_be_visible()


def test_contact_card_edits_in_place_creates_task_and_deal_and_respects_do_not_contact(stack, worker, page):
    contact = _contact(worker, emails=[{"email": f"ed{uuid.uuid4().hex[:6]}@example.com"}])
    page.goto(stack.stream_url + f"/contacts/{contact['id']}")
    card = page.get_by_test_id("contact-card")
    expect(card.get_by_test_id("contact-call")).to_be_visible()
    expect(card.locator("a[href^='mailto:']")).to_be_visible()
    card.get_by_test_id("contact-edit").click()
    page.fill("input[name=last_name]", "Edited")
    page.fill("input[name=email-0]", "not-an-email")
    page.get_by_test_id("contact-save").click()
    expect(page.get_by_test_id("contact-editor")).to_contain_text("mail")  # the API's error by its field
    assert worker.get(f"/contacts/{contact['id']}").json()["last_name"] == "Work"  # nothing changed
    page.fill("input[name=email-0]", "edited@example.com")
    page.get_by_test_id("add-phone").click()
    page.fill("input[name=phone-1]", "+390612345678")
    page.get_by_test_id("contact-save").click()
    expect(card).to_contain_text("+390612345678")
    saved = worker.get(f"/contacts/{contact['id']}").json()
    assert saved["last_name"] == "Edited" and len(saved["phones"]) == 2
    assert saved["emails"][0]["email"] == "edited@example.com"

    card.get_by_test_id("contact-new-deal").click()
    page.get_by_test_id("deal-title").fill("From the card")
    page.get_by_test_id("deal-amount").fill("1200")
    page.get_by_test_id("deal-save").click()
    expect(page.get_by_test_id("contact-deals")).to_contain_text("From the card")
    deal = worker.get("/deals", params={"contact_id": contact["id"]}).json()["items"][0]
    assert deal["amount"] == 120000 and deal["currency"] == "EUR"

    card.get_by_test_id("contact-new-task").click()
    page.get_by_test_id("task-title").fill("Card task")
    page.get_by_test_id("task-save").click()
    expect(page.get_by_test_id("contact-tasks")).to_contain_text("Card task")

    assert worker.patch(f"/contacts/{contact['id']}", json={"do_not_contact": True}).status_code == 200
    page.reload()
    expect(page.get_by_test_id("dnc")).to_be_visible()
    expect(card.get_by_test_id("contact-call")).to_have_count(0)
    expect(page.get_by_test_id("contact-tasks").get_by_test_id("task-call")).to_have_count(0)
    expect(card.locator("a[href^='mailto:'], a[href^='tel:']")).to_have_count(0)


def test_contacts_filters_bulk_tag_export_and_saved_view(stack, worker, page):
    source = f"fair{uuid.uuid4().hex[:6]}"
    made = [_contact(worker, source=source, status="prospect") for _ in range(2)]
    _contact(worker, source=source, status="lead")
    page.goto(stack.stream_url + f"/contacts?source={source}&status=prospect")
    expect(page.get_by_test_id("contact-filters")).to_be_visible()
    table = page.get_by_test_id("contacts-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    page.get_by_role("checkbox", name="Select all").check()
    expect(page.get_by_test_id("bulk-bar")).to_contain_text("2 selected")
    expect(page.get_by_test_id("bulk-owner")).to_have_count(0)  # an agent may not reassign
    with page.expect_download() as download:
        page.get_by_test_id("bulk-export").click()
    assert "first_name" in open(download.value.path()).read()
    page.get_by_test_id("bulk-tag").click()
    tag = f"vip{uuid.uuid4().hex[:4]}"
    page.get_by_test_id("bulk-tag-value").fill(tag)
    page.get_by_test_id("bulk-apply").click()
    _wait(lambda: all(tag in worker.get(f"/contacts/{c['id']}").json()["tags"] for c in made), page)

    page.get_by_test_id("save-view").click()
    page.get_by_test_id("view-name").fill("Fair prospects")
    page.get_by_test_id("view-save").click()
    page.goto(stack.stream_url + "/contacts")
    page.get_by_test_id("saved-views").click()
    page.get_by_role("option", name="Fair prospects").click()
    expect(page).to_have_url(f"{stack.stream_url}/contacts?source={source}&status=prospect")
    expect(table.locator("tbody tr")).to_have_count(2)
    # the view becomes a dashboard tile whose number drills down to the same list
    page.goto(stack.stream_url + "/dashboard")
    page.get_by_test_id("add-tile").click()
    page.get_by_role("option", name="Fair prospects").click()
    tile = page.get_by_test_id("tile-Fair prospects")
    expect(tile.get_by_test_id("tile-count")).to_have_text("2")
    tile.get_by_test_id("tile-count").click()
    expect(page).to_have_url(f"{stack.stream_url}/contacts?source={source}&status=prospect")


def test_companies_list_and_card_with_its_people(stack, worker, page):
    name = f"Acme {uuid.uuid4().hex[:6]}"
    company = worker.post("/companies", json={"name": name, "domain": "acme.example"})
    assert company.status_code == 201, company.text
    person = _contact(worker, company_id=company.json()["id"])
    page.goto(stack.stream_url + "/companies")
    page.get_by_test_id("company-search").fill(name)
    page.get_by_role("link", name=name).click()
    expect(page.get_by_test_id("company-card")).to_contain_text(person["first_name"])


def test_buttons_follow_the_role_and_the_api_still_refuses(stack, api, worker, admin_page, request):
    permissions = worker.get("/users/me").json()["permissions"]
    assert permissions["contacts:write"] == "own" and "users:read" not in permissions
    assert "pipelines:write" not in permissions
    assert api.get("/users/me").json()["permissions"]["users:write"] == "all"
    assert worker.get("/users").status_code == 403
    # an admin is offered reassignment in the same list
    _contact(worker)
    admin_page.goto(stack.stream_url + "/contacts")
    admin_page.get_by_test_id("contacts-table").locator("tbody tr").first.get_by_role("checkbox").check()
    expect(admin_page.get_by_test_id("bulk-owner")).to_be_visible()
    admin_page.screenshot(path=os.path.join(SCREENS, f"{request.node.name}.png"))


def test_pipeline_settings_create_a_pipeline_with_reordered_stages(stack, api, admin_page, page):
    name = f"Partners {uuid.uuid4().hex[:5]}"
    admin_page.goto(stack.stream_url + "/settings/pipelines")
    admin_page.get_by_test_id("pipeline-choice").click()
    admin_page.get_by_role("option", name="+ New pipeline").click()
    admin_page.get_by_test_id("pipeline-name").fill(name)
    for i, stage in enumerate(("Qualified", "Won", "Lost")):
        admin_page.get_by_test_id(f"stage-name-{i}").fill(stage)
    admin_page.get_by_test_id("add-stage").click()  # a new open stage goes before the won one
    admin_page.get_by_test_id("stage-name-1").fill("Demo")
    admin_page.get_by_test_id("stage-row-1").get_by_role("button", name="Move up").click()
    admin_page.get_by_test_id("stage-row-0").get_by_label("Probability").fill("20")
    admin_page.get_by_test_id("pipeline-save").click()
    created = _wait(lambda: [p for p in api.get("/pipelines").json()["items"] if p["name"] == name], admin_page)[0]
    assert [s["name"] for s in created["stages"]] == ["Demo", "Qualified", "Won", "Lost"]
    assert created["stages"][0]["probability"] == 20
    admin_page.screenshot(path=os.path.join(SCREENS, "pipeline_settings.png"))
    # an agent reads the stages but gets no save button
    page.goto(stack.stream_url + "/settings/pipelines")
    expect(page.get_by_test_id("pipeline-name")).to_be_visible()
    expect(page.get_by_test_id("pipeline-save")).to_have_count(0)


def test_import_wizard_maps_dry_runs_runs_with_progress_downloads_errors_and_undoes(stack, worker, page):
    tag = uuid.uuid4().hex[:6]
    rows = [("Who", "Email", "Phone"), (f"Ada Imp{tag}", f"ada{tag}@example.com", "+39 02 1234 5678"),
            (f"Bob Imp{tag}", f"bob{tag}@example.com", "+39 06 8765 4321"), ("", "not-an-email", "")]
    csv = "\r\n".join(",".join(row) for row in rows).encode()
    page.goto(stack.stream_url + "/import")
    page.locator("input[type=file]").set_input_files(files=[{"name": f"people-{tag}.csv", "mimeType": "text/csv",
                                                              "buffer": csv}])
    expect(page.get_by_test_id("import-preview")).to_contain_text(f"Bob Imp{tag}")
    page.get_by_test_id("import-dry-run").click()
    report = page.get_by_test_id("import-dry-report")
    expect(report.get_by_test_id("counts-dry")).to_be_visible()
    page.get_by_test_id("map-Who").click()
    page.get_by_role("option", name="Full name", exact=True).click()
    report.get_by_role("button", name="Dry run again").click()
    expect(report.get_by_test_id("counts-dry")).to_contain_text("Created: 2")
    assert worker.get("/contacts", params={"q": f"Imp{tag}"}).json()["items"] == []  # a dry run writes nothing
    page.get_by_test_id("import-run").click()
    run = page.get_by_test_id("import-run-report")
    expect(run.get_by_test_id("import-status")).to_have_text("Done", timeout=30000)
    expect(run.get_by_test_id("counts-run")).to_contain_text("Created: 2")
    names = sorted(c["first_name"] for c in worker.get("/contacts", params={"q": f"Imp{tag}"}).json()["items"])
    assert names == ["Ada", "Bob"]
    with page.expect_download() as download:
        run.get_by_test_id("import-errors").click()
    assert "email" in open(download.value.path()).read().lower()
    page.screenshot(path=os.path.join(SCREENS, "import_done.png"), full_page=True)
    run.get_by_test_id("import-undo").click()
    expect(run.get_by_test_id("import-status")).to_have_text("Undone", timeout=30000)
    assert worker.get("/contacts", params={"q": f"Imp{tag}"}).json()["items"] == []


def test_dashboard_charts_the_reports_and_drills_into_the_board(stack, worker, admin_page):
    pipeline = next(p for p in worker.get("/pipelines").json()["items"] if p["is_default"])
    stages = pipeline["stages"]
    won = next(s for s in stages if s["kind"] == "won")
    for target in (stages[1], won):
        deal = worker.post("/deals", json={"title": f"Dash {uuid.uuid4().hex[:5]}", "amount": 99000,
                                           "currency": "EUR", "owner_id": worker.user["id"]}).json()
        moved = worker.post(f"/deals/{deal['id']}/move", json={"stage_id": target["id"]})
        assert moved.status_code == 200, moved.text
    admin_page.goto(stack.stream_url + "/dashboard")
    # the charts draw once every report answered (a dozen requests on a busy machine)
    expect(admin_page.get_by_test_id("chart-funnel").locator(".recharts-bar-rectangle").first).to_be_visible(
        timeout=20000)
    expect(admin_page.get_by_test_id("kpi-won")).not_to_contain_text("Won deals0")
    expect(admin_page.get_by_test_id("kpi-revenue")).to_contain_text("€")
    admin_page.screenshot(path=os.path.join(SCREENS, "dashboard.png"), full_page=True)
    admin_page.get_by_test_id(f"funnel-{stages[1]['id']}").click()
    admin_page.wait_for_url(f"**/deals?pipeline_id={pipeline['id']}&stage_id={stages[1]['id']}")
    expect(admin_page.get_by_test_id(f"stage-{stages[1]['id']}")).to_have_attribute("data-focused", "true")
    admin_page.go_back()
    admin_page.get_by_test_id("kpi-missed").click()
    admin_page.wait_for_url("**/calls?missed=1")
    expect(admin_page.get_by_role("switch", name="Missed, not called back")).to_be_checked()


def test_the_dashboard_shows_the_plan_by_person_and_drills_into_overdue_tasks(stack, api, worker,
                                                                              admin_page):
    month = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
    target = api.post("/targets", json={"user_id": worker.user["id"], "period": month,
                                        "deals_count": 50})
    assert target.status_code == 201, target.text
    late = _task(worker, title=f"Late {uuid.uuid4().hex[:5]}",
                 due_at=(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).isoformat())
    admin_page.goto(stack.stream_url + "/dashboard")
    plan = admin_page.get_by_test_id(f"plan-{worker.user['id']}")
    expect(plan).to_contain_text("Console Agent")
    expect(plan).to_contain_text("of 50")
    row = admin_page.get_by_test_id(f"overdue-{worker.user['id']}")
    expect(row).to_contain_text("Console Agent")
    admin_page.screenshot(path=os.path.join(SCREENS, "dashboard_plan_and_overdue.png"), full_page=True)
    row.click()
    admin_page.wait_for_url(f"**/tasks?overdue=1&assignee_id={worker.user['id']}")
    expect(admin_page.get_by_test_id("task-list")).to_contain_text(late["title"])
    expect(admin_page.get_by_role("switch", name="Overdue")).to_be_checked()
    admin_page.go_back()
    admin_page.get_by_test_id(f"plan-{worker.user['id']}").click()
    admin_page.wait_for_url(f"**/deals?owner_id={worker.user['id']}")


def _deal(client, stage=None, **fields):
    created = client.post("/deals", json={"title": f"Drill {uuid.uuid4().hex[:6]}", "currency": "EUR",
                                          "owner_id": client.user["id"], **fields})
    assert created.status_code == 201, created.text
    deal = created.json()
    if stage:
        body = {"stage_id": stage["id"], **({"lost_reason": "price"} if stage["kind"] == "lost" else {})}
        moved = client.post(f"/deals/{deal['id']}/move", json=body)
        assert moved.status_code == 200, moved.text
    return deal


def _listed_deals(page, ids):
    """The deals list shows exactly these deals."""
    rows = page.get_by_test_id("deal-list").locator("tbody tr")
    expect(rows).to_have_count(len(ids), timeout=20000)
    for deal_id in ids:
        expect(page.get_by_test_id(f"deal-row-{deal_id}")).to_be_visible()


def test_a_manager_compares_with_the_previous_period_and_drills_to_the_deals_behind(stack, api, browser):
    """A manager of a new team of one: the figures against the period before, revenue bars by
    person and by month and the forecast rows opening exactly their deals, "my day" as a tile."""
    password = uuid.uuid4().hex
    body = {"email": f"boss-{uuid.uuid4().hex[:10]}@crm.test", "password": password, "name": "Drill Boss",
            "role": "manager", "team": f"team-{uuid.uuid4().hex[:8]}"}
    created = api.post("/users", json=body)
    assert created.status_code == 201, created.text
    boss = stack.sign_in(body["email"], password)
    boss.password = password
    stages = next(p for p in boss.get("/pipelines").json()["items"] if p["is_default"])["stages"]
    won = next(s for s in stages if s["kind"] == "won")
    lost = next(s for s in stages if s["kind"] == "lost")
    won_eur = [_deal(boss, won, amount=120000), _deal(boss, won, amount=30000)]
    _deal(boss, won, amount=5000, currency="USD")   # won, but another currency
    _deal(boss, lost, amount=70000)                  # closed, not won
    next_month = (dt.date.today().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    later = (next_month + dt.timedelta(days=32)).replace(day=1)
    expected = [_deal(boss, amount=40000, expected_close_date=next_month.isoformat()),
                _deal(boss, amount=10000, expected_close_date=(next_month + dt.timedelta(days=20)).isoformat())]
    _deal(boss, amount=8000, expected_close_date=later.isoformat())                   # another month
    _deal(boss, amount=9000, currency="USD", expected_close_date=next_month.isoformat())  # another currency
    meeting = _task(boss, title=f"Meet {uuid.uuid4().hex[:5]}", kind="meeting",
                    due_at=(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)).isoformat())
    with signed_in(browser, stack, boss) as page:
        page.goto(stack.stream_url + "/dashboard")
        # every number against the previous period (nothing was won then: +3)
        kpi = page.get_by_test_id("kpi-won")
        expect(kpi.get_by_test_id("kpi-value")).to_have_text("3", timeout=20000)
        expect(kpi.get_by_test_id("previous")).to_have_text("Before: 0")
        expect(kpi.get_by_test_id("delta")).to_have_text("+3")
        expect(kpi.get_by_test_id("delta")).to_have_attribute("data-better", "yes")
        expect(page.get_by_test_id("kpi-revenue").get_by_test_id("previous")).to_contain_text("€0.00")
        expect(page.get_by_test_id("chart-funnel")).to_contain_text("Previous period")
        expect(page.get_by_test_id("chart-revenue-owner")).to_contain_text("Previous period")
        expect(page.get_by_test_id("chart-revenue")).to_contain_text("Same month last year")
        page.screenshot(path=os.path.join(SCREENS, "dashboard_previous_period.png"), full_page=True)

        # a revenue bar of a person: the EUR deals won in the period
        page.get_by_test_id(f"revenue-owner-{boss.user['id']}").click()
        page.wait_for_url(re.compile(r".*/deals\?status=won&closed_after=.*&currency=EUR&owner_id=.*"))
        expect(page.get_by_test_id("deal-drill")).to_contain_text("EUR")
        _listed_deals(page, [d["id"] for d in won_eur])
        page.screenshot(path=os.path.join(SCREENS, "dashboard_drill_revenue.png"), full_page=True)
        page.go_back()
        # a month's bar: the same deals (won this month, in EUR)
        month = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
        page.get_by_test_id(f"revenue-month-{month}").click()
        page.wait_for_url(re.compile(rf".*/deals\?status=won&closed_after={month}-01T00%3A00%3A00.000Z.*&currency=EUR"))
        _listed_deals(page, [d["id"] for d in won_eur])
        page.go_back()
        # a forecast row: the open EUR deals expected to close in that month
        row = page.get_by_test_id(f"forecast-{next_month:%Y-%m}-EUR")
        expect(row).to_contain_text("€500.00")
        row.click()
        page.wait_for_url(re.compile(rf".*/deals\?status=open&expected_close_from={next_month:%Y-%m}-01&expected_close_to={later:%Y-%m}-01&currency=EUR"))
        _listed_deals(page, [d["id"] for d in expected])
        page.screenshot(path=os.path.join(SCREENS, "dashboard_drill_forecast.png"), full_page=True)
        page.get_by_test_id("deal-drill-clear").click()
        expect(page.get_by_test_id("deal-drill")).to_have_count(0)

        # "my day" placed as a tile, kept, then removed
        page.goto(stack.stream_url + "/dashboard")
        page.get_by_test_id("add-tile").click()
        page.get_by_role("option", name="My day (today's tasks and calls)").click()
        tile = page.get_by_test_id("tile-myday")
        expect(tile.get_by_test_id("myday-meetingsToday")).to_contain_text("1")
        expect(tile.get_by_test_id("myday-dueToday")).to_contain_text("1")
        page.screenshot(path=os.path.join(SCREENS, "dashboard_my_day_tile.png"), full_page=True)
        page.reload()
        expect(tile.get_by_test_id("myday-meetingsToday")).to_contain_text("1")
        tile.get_by_test_id("myday-dueToday").click()
        page.wait_for_url("**/today")
        expect(page.get_by_test_id(f"task-{meeting['id']}")).to_be_visible()
        page.go_back()
        tile.get_by_role("button", name="Remove").click()
        expect(tile).to_have_count(0)

        # on a phone, in Hebrew (right to left)
        page.set_viewport_size({"width": 360, "height": 740})
        page.get_by_test_id("language").click()
        page.get_by_role("option", name="עברית").click()
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
        page.goto(stack.stream_url + "/dashboard")
        expect(page.get_by_test_id("kpi-won").get_by_test_id("previous")).to_have_text("קודם: 0", timeout=20000)
        expect(page.get_by_test_id("chart-revenue-owner")).to_contain_text("התקופה הקודמת")
        page.get_by_test_id("dashboard-period-select").click()   # the period picker fits the phone
        page.get_by_role("option", name="החודש").click()
        expect(page.get_by_test_id("kpi-won").get_by_test_id("kpi-value")).to_have_text("3")
        assert page.evaluate("document.documentElement.scrollWidth") <= 361
        page.screenshot(path=os.path.join(SCREENS, "dashboard_phone_he.png"), full_page=True)


def test_screens_fit_a_360_px_phone(stack, browser, worker):
    with signed_in(browser, stack, worker, viewport={"width": 360, "height": 740},
                   is_mobile=True, has_touch=True) as page:
        for path in ("/today", "/contacts", "/tasks?view=week", "/dashboard"):
            page.goto(stack.stream_url + path)
            expect(page.get_by_role("heading", level=2).first).to_be_visible()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 361, (path, width)  # nothing wider than the phone (wide tables scroll inside)
        page.get_by_role("button", name="Menu").click()
        expect(page.get_by_test_id("navbar").get_by_text("Contacts")).to_be_visible()
        page.wait_for_timeout(400)  # the navbar slides in
        page.screenshot(path=os.path.join(SCREENS, "phone_menu.png"))


def test_users_and_api_keys_an_admin_creates_changes_and_revokes(stack, api, admin_page):
    email = f"new-{uuid.uuid4().hex[:8]}@crm.test"
    admin_page.goto(stack.stream_url + "/settings/access")
    admin_page.get_by_test_id("new-user").click()
    admin_page.get_by_test_id("user-name").fill("New Agent")
    admin_page.get_by_test_id("user-email").fill(email)
    admin_page.get_by_test_id("user-password").fill("short")
    admin_page.get_by_test_id("user-save").click()
    expect(admin_page.locator(".mantine-PasswordInput-error")).to_be_visible()  # the API's reason, by its field
    admin_page.get_by_test_id("user-password").fill(uuid.uuid4().hex)
    admin_page.get_by_test_id("user-save").click()
    user = _wait(lambda: next((u for u in api.get("/users", params={"limit": 500}).json()["items"]
                               if u["email"] == email), None), admin_page)
    row = admin_page.get_by_test_id(f"user-{user['id']}")
    row.get_by_role("textbox", name="Role").click()
    admin_page.get_by_role("option", name="Manager").click()
    _wait(lambda: api.get(f"/users/{user['id']}").json()["role"] == "manager", admin_page)

    admin_page.get_by_test_id("tab-keys").click()
    name = f"site-{uuid.uuid4().hex[:6]}"
    admin_page.get_by_test_id("key-name").fill(name)
    admin_page.get_by_test_id("key-scopes").fill("contacts:read")
    admin_page.keyboard.press("Enter")
    admin_page.get_by_test_id("key-create").click()
    secret = admin_page.get_by_test_id("key-secret").inner_text()
    assert _get_with_key(stack, secret).status_code == 200  # the key shown once works
    key = next(k for k in api.get("/api-keys").json()["items"] if k["name"] == name)
    assert key["scopes"] == ["contacts:read"]
    admin_page.get_by_test_id(f"key-{key['id']}").get_by_test_id("key-revoke").click()
    _wait(lambda: api.get(f"/api-keys/{key['id']}").json()["revoked_at"], admin_page)
    admin_page.screenshot(path=os.path.join(SCREENS, "api_keys.png"))


def _get_with_key(stack, key):
    return requests.get(stack.base_url + "/api/v1/contacts", params={"limit": 1}, headers={"X-API-Key": key},
                        timeout=10)


def test_contact_card_merges_a_duplicate_side_by_side_keeping_the_picked_values(stack, worker, page):
    email = f"twin{uuid.uuid4().hex[:6]}@example.com"
    keep = _contact(worker, emails=[{"email": email}], position="Buyer")
    twin = worker.post("/contacts", params={"force": "true"}, json={
        "first_name": "Twin", "last_name": "Work", "position": "CTO", "emails": [{"email": email}],
        "phones": ["+390298765432"], "owner_id": worker.user["id"]})
    assert twin.status_code == 201, twin.text
    twin = twin.json()
    page.goto(stack.stream_url + f"/contacts/{keep['id']}")
    page.get_by_test_id(f"merge-{twin['id']}").click()
    dialog = page.get_by_test_id("merge-dialog")
    expect(dialog.get_by_test_id("merge-field-last_name")).to_have_count(0)  # the same in both
    expect(dialog.get_by_test_id("keep-position-this")).to_be_checked()  # the rule's choice first
    dialog.get_by_test_id("keep-first_name-other").check()
    page.screenshot(path=os.path.join(SCREENS, "merge_side_by_side.png"))
    dialog.get_by_test_id("merge-confirm").click()
    _wait(lambda: worker.get(f"/contacts/{twin['id']}").status_code == 404, page)
    merged = worker.get(f"/contacts/{keep['id']}").json()
    assert (merged["first_name"], merged["position"]) == ("Twin", "Buyer")
    assert {p["e164"] for p in merged["phones"]} >= {"+390298765432"}
    expect(page.get_by_test_id("contact-duplicates")).to_have_count(0)


def test_reminder_settings_give_a_new_task_its_reminders(stack, worker, page):
    page.goto(stack.stream_url + "/settings/notifications")
    expect(page.get_by_test_id("reminder-leads")).to_be_visible()
    page.get_by_test_id("reminder-settings").locator(".mantine-MultiSelect-input").click()
    page.get_by_role("option", name="1 hour", exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_test_id("channel-task_due_soon-email").check()
    page.get_by_test_id("prefs-save").click()
    _wait(lambda: worker.get("/notification-preferences").json()["task_reminders"] == [15, 60], page)
    assert "email" in worker.get("/notification-preferences").json()["channels"]["task_due_soon"]
    contact = _contact(worker)
    page.goto(stack.stream_url + f"/contacts/{contact['id']}")
    page.get_by_test_id("contact-card").get_by_test_id("contact-new-task").click()
    page.get_by_test_id("task-title").fill("Reminded")
    expect(page.get_by_test_id("task-reminders")).to_be_visible()
    page.get_by_test_id("task-save").click()
    expect(page.get_by_test_id("contact-tasks")).to_contain_text("Reminded")
    task = worker.get("/tasks", params={"contact_id": contact["id"]}).json()["items"][0]
    assert task["reminders"] == [15, 60]


def test_a_weekly_report_digest_is_set_and_sent_at_once(stack, worker, page):
    page.goto(stack.stream_url + "/settings/notifications")
    digest = page.get_by_test_id("digest-settings")
    expect(digest).to_be_visible()
    digest.get_by_test_id("digest-frequency").click()
    page.get_by_role("option", name="Weekly", exact=True).click()
    digest.get_by_test_id("digest-weekday").click()
    page.get_by_role("option", name="Wednesday", exact=True).click()
    digest.get_by_test_id("digest-hour").click()
    page.get_by_role("option", name="07:00", exact=True).click()
    digest.locator(".mantine-MultiSelect-input").click()
    page.get_by_role("option", name="Forecast", exact=True).click()  # off: its pill goes
    page.keyboard.press("Escape")
    page.get_by_test_id("prefs-save").click()
    _wait(lambda: worker.get("/notification-preferences").json()["digest"] == {
        "frequency": "weekly", "hour": 7, "weekday": 2, "reports": ["sales", "tasks", "calls", "funnel"]},
        page)
    digest.get_by_test_id("digest-send").click()
    expect(page.get_by_text("Digest sent")).to_be_visible()
    page.screenshot(path=os.path.join(SCREENS, "report_digest_settings.png"))


def _telegram_thread(stack, api, page, tag, first_name, text):
    """A Telegram bot that delivers nowhere, and a client's first message to it: (the
    conversation, the bot's id). The test deletes the bot, so it answers no other test's client."""
    secret, tg_id = f"tg{tag}", random.randint(10 ** 8, 10 ** 9)
    route = api.post("/forms", json={"name": f"tg {tag}", "kind": "channel", "channel": "telegram",
                                     "source": "telegram", "telegram_secret_token": secret})
    assert route.status_code == 201, route.text
    bot = api.post("/channels", json={"kind": "telegram", "name": f"bot {tag}", "token": f"TG{tag}",
                                      "api_base": "http://127.0.0.1:9/tg"})  # nothing is delivered
    assert bot.status_code == 201, bot.text
    update = {"update_id": tg_id % 100000, "message": {
        "message_id": 1, "from": {"id": tg_id, "is_bot": False, "first_name": first_name},
        "chat": {"id": tg_id, "type": "private"}, "date": int(dt.datetime.now().timestamp()),
        "text": text}}
    got = requests.post(f"{stack.base_url}/api/v1/inbound/telegram/{route.json()['key']}", json=update,
                        headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=10)
    assert got.status_code == 200, got.text
    conversation = _wait(lambda: next((c for c in api.get("/conversations", params={"limit": 100}).json()["items"]
                                       if tag in (c.get("last_preview") or "")), None), page, 30)
    return conversation, bot.json()["id"]


def test_a_thread_is_read_and_answered_from_the_inbox(stack, api, admin_page):
    tag = uuid.uuid4().hex[:8]
    conversation, bot_id = _telegram_thread(stack, api, admin_page, tag, f"Client{tag}",
                                            f"Do you ship to Malta? {tag}")
    admin_page.goto(stack.stream_url + "/inbox")
    admin_page.get_by_test_id(f"conversation-{conversation['id']}").click()
    admin_page.wait_for_url(f"**/inbox/{conversation['id']}")
    thread = admin_page.get_by_test_id("thread")
    expect(thread.get_by_test_id("message-inbound")).to_contain_text(f"Do you ship to Malta? {tag}")
    admin_page.get_by_test_id("reply-text").fill("Yes, in three days")
    admin_page.get_by_test_id("reply-send").click()
    expect(thread.get_by_test_id("message-outbound")).to_contain_text("Yes, in three days")
    admin_page.screenshot(path=os.path.join(SCREENS, "inbox_thread.png"))
    sent = [m for m in api.get(f"/conversations/{conversation['id']}/messages").json()["items"]
            if m["direction"] == "outbound"]
    assert sent[0]["text"] == "Yes, in three days" and sent[0]["channel"] == "telegram"
    # a bot that delivers nowhere must not answer other tests' clients
    assert api.delete(f"/channels/{bot_id}").status_code in (200, 204)


def test_an_admin_writes_a_template_and_an_agent_answers_a_thread_with_it(stack, api, worker, admin_page,
                                                                          page):
    tag = uuid.uuid4().hex[:8]
    conversation, bot_id = _telegram_thread(stack, api, admin_page, tag, f"Tpl{tag}", f"Any news? {tag}")
    assert api.post(f"/conversations/{conversation['id']}/assign",
                    json={"assignee_id": worker.user["id"]}).status_code == 200
    # the admin writes the template, previewed for the client found by name, usable at 360 px
    name = f"Follow-up {tag}"
    admin_page.goto(stack.stream_url + "/settings/templates")
    admin_page.get_by_test_id("template-new").click()
    admin_page.get_by_test_id("template-name").fill(name)
    admin_page.get_by_test_id("template-body").fill("Hello {{ contact.nope }}")
    expect(admin_page.get_by_test_id("template-editor")).to_contain_text("Unknown placeholder")
    admin_page.get_by_test_id("template-body").fill("Hello {{ contact.first_name }}, {{ user.name }} here")
    admin_page.get_by_test_id("template-contact").fill(f"Tpl{tag}")
    admin_page.get_by_role("option", name=re.compile(f"Tpl{tag}")).click()
    expect(admin_page.get_by_test_id("template-preview")).to_contain_text(f"Hello Tpl{tag}, ")
    admin_page.set_viewport_size({"width": 360, "height": 740})
    admin_page.wait_for_timeout(300)
    assert admin_page.evaluate("document.documentElement.scrollWidth") <= 361
    admin_page.screenshot(path=os.path.join(SCREENS, "template_editor_phone.png"), full_page=True)
    admin_page.set_viewport_size({"width": 1400, "height": 900})
    admin_page.get_by_test_id("template-save").click()
    expect(admin_page.get_by_test_id("template-list")).to_contain_text(name)
    # the agent picks it in the thread's composer: filled for this client and sent
    page.goto(stack.stream_url + f"/inbox/{conversation['id']}")
    page.get_by_test_id("reply-template").click()
    page.get_by_role("option", name=name).click()
    expected = f"Hello Tpl{tag}, Console Agent here"
    expect(page.get_by_test_id("reply-text")).to_have_value(expected)
    page.get_by_test_id("reply-send").click()
    expect(page.get_by_test_id("thread").get_by_test_id("message-outbound")).to_contain_text(expected)
    sent = [m for m in api.get(f"/conversations/{conversation['id']}/messages").json()["items"]
            if m["direction"] == "outbound"]
    assert sent[0]["text"] == expected and sent[0]["template_id"]
    assert api.delete(f"/channels/{bot_id}").status_code in (200, 204)


def test_an_agent_builds_a_quote_and_downloads_its_pdf(stack, api, worker, page):
    product = api.post("/products", json={"name": f"Widget {uuid.uuid4().hex[:5]}", "sku": uuid.uuid4().hex[:8],
                                          "unit": "pcs", "tax_rate": "22"})
    assert product.status_code == 201, product.text
    product = product.json()
    lists = [p for p in api.get("/price-lists", params={"limit": 100}).json()["items"]
             if p["currency"] == "EUR" and p.get("is_default")]
    price_list = lists[0] if lists else api.post("/price-lists", json={
        "name": "Euro", "currency": "EUR", "is_default": True}).json()
    priced = api.put(f"/price-lists/{price_list['id']}/prices", json={"prices": [
        {"product_id": product["id"], "unit_price": 12500}]})
    assert priced.status_code in (200, 201), priced.text
    deal = worker.post("/deals", json={"title": f"Quote {uuid.uuid4().hex[:5]}", "amount": 0, "currency": "EUR",
                                       "owner_id": worker.user["id"]}).json()
    page.goto(stack.stream_url + "/deals")
    page.get_by_test_id(f"deal-{deal['id']}").dblclick()
    sales = page.get_by_test_id("deal-sales")
    sales.get_by_test_id("item-product").click()
    page.get_by_role("option", name=f"{product['name']} ({product['sku']})").click()
    sales.get_by_test_id("item-quantity").fill("2")
    sales.get_by_test_id("item-add").click()
    expect(sales.get_by_test_id("line-items")).to_contain_text(product["name"])
    expect(sales.get_by_test_id("line-total")).to_contain_text("€")
    # the deal's amount follows its lines, on the drawer and on the board's card behind it
    amount = page.get_by_test_id("deal-amount")
    expect(amount).not_to_have_text(re.compile(r"^\D*0[.,]00\D*$"))
    expect(page.get_by_test_id(f"deal-{deal['id']}")).to_contain_text(amount.inner_text())
    sales.get_by_test_id("quote-create").click()
    quote = sales.locator("[data-testid^=quote-]").filter(has=page.get_by_test_id("quote-pdf"))
    expect(quote).to_have_count(1)
    page.screenshot(path=os.path.join(SCREENS, "deal_quote.png"))
    with page.expect_download() as download:
        quote.get_by_test_id("quote-pdf").click()
    assert open(download.value.path(), "rb").read(5) == b"%PDF-"
    assert worker.get(f"/deals/{deal['id']}/items").json()["totals"]["total"] > 0


def test_telephony_settings_are_saved_and_tested(stack, api, admin_page):
    admin_page.goto(stack.stream_url + "/settings/telephony")
    admin_page.get_by_test_id("telephony-provider").click()
    admin_page.get_by_role("option", name="HTTP endpoint").click()
    admin_page.get_by_test_id("tel-originate_url").fill("http://127.0.0.1:9/originate")  # nothing listens
    admin_page.get_by_test_id("telephony-save").click()
    try:
        _wait(lambda: api.get("/settings/telephony").json().get("originate_url") == "http://127.0.0.1:9/originate",
              admin_page)
        admin_page.get_by_test_id("telephony-test").click()
        expect(admin_page.get_by_test_id("telephony-test-result")).to_contain_text("Not connected")
        admin_page.screenshot(path=os.path.join(SCREENS, "telephony_test.png"))
    finally:
        api.patch("/settings/telephony", json={"originate_url": None})


def test_reports_show_a_table_and_export_it(stack, admin_page):
    admin_page.goto(stack.stream_url + "/reports")
    admin_page.get_by_test_id("report-choice").click()
    admin_page.get_by_role("option", name="Funnel", exact=True).click()
    expect(admin_page.get_by_test_id("report-table")).to_contain_text("entered")
    # each number against the days just before (as many of them), unless switched off
    expect(admin_page.get_by_test_id("report-table").get_by_test_id("delta").first).to_be_visible()
    admin_page.screenshot(path=os.path.join(SCREENS, "report_previous_period.png"))
    admin_page.get_by_text("Compare with the previous period").click()
    expect(admin_page.get_by_test_id("report-table").get_by_test_id("delta")).to_have_count(0)
    with admin_page.expect_download() as download:
        admin_page.get_by_test_id("report-export").click()
    assert "entered" in open(download.value.path()).read().splitlines()[0].split(",")
