"""The console's settings screens in Debian's chromium against the real stack: custom fields
(defined, then filled on a contact's card and seen in the list), an automation rule with a
nested OR group and its dry run, a webhook with its delivery log and redeliver, a web form with its preview and the
embed snippet copied, a mailbox on a bad host with its error and a bot's route picked by name,
a mailbox's working hours and first-response minutes, a
campaign draft sent to a one-contact segment, a source's monthly cost and a target, the audit
log filtered by user, and a dead letter replayed. One browser and one admin page for the module; each test saves a
screenshot under .test-output/screens/. Skips like tests/test_console.py."""
import os
import random
import re
import uuid

import pytest
import requests

from crm_common.errors import Forbidden
from crm_common.timeutil import to_iso, utcnow
from tests.test_console import SCREENS, browser, pytestmark, signed_in  # noqa: F401
from tests.test_notifications import ch, wait  # noqa: F401

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - requirements-dev.txt pins it (pytestmark skips)
    expect = None


@pytest.fixture(scope="module")
def admin_page(stack, browser):
    with signed_in(browser, stack,
                   permissions=["clipboard-read", "clipboard-write"]) as page:
        yield page


@pytest.fixture
def page(admin_page, request):
    yield admin_page
    admin_page.screenshot(path=os.path.join(SCREENS, f"{request.node.name}.png"), full_page=True)


def _pick(page, testid, option):
    """A Mantine Select / MultiSelect: open it and choose the option."""
    page.get_by_test_id(testid).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_an_admin_defines_a_custom_field_and_fills_it_on_a_contact(stack, api, page):
    unique = uuid.uuid4().hex[:6]
    label = f"Shoe size {unique}"
    key = f"shoe_size_{unique}"
    page.goto(stack.stream_url + "/settings/custom-fields")
    page.get_by_test_id("cf-label").fill(label)
    expect(page.get_by_test_id("cf-key")).to_have_value(key)  # the key follows the label
    _pick(page, "cf-type", "Number")
    page.get_by_label("Part of the minimal data set").check()
    page.get_by_test_id("cf-create").click()
    expect(page.get_by_test_id(f"cf-{key}")).to_contain_text(label)
    defined = api.get(f"/custom-fields/contact:{key}").json()
    assert defined["type"] == "number" and defined["required"] is True, defined
    # rename it in place
    page.get_by_test_id(f"cf-{key}").get_by_test_id("cf-edit").click()
    page.get_by_test_id("cf-edit-label").fill(label + " EU")
    page.get_by_test_id("cf-edit-save").click()
    expect(page.get_by_test_id(f"cf-{key}")).to_contain_text(label + " EU")
    # the contact's form has it, typed; the card and the list show the value
    name = f"Cf{unique}"
    contact = api.post("/contacts", json={"first_name": name, "last_name": "Fields",
                                          "phones": ["+39347" + "".join(random.choice("0123456789") for _ in range(7))]})
    assert contact.status_code == 201, contact.text
    contact = contact.json()
    page.goto(stack.stream_url + f"/contacts/{contact['id']}")
    page.get_by_test_id("contact-edit").click()
    page.get_by_test_id(f"custom-input-{key}").fill("42")
    page.get_by_test_id("contact-save").click()
    expect(page.get_by_test_id(f"custom-{key}")).to_contain_text(f"{label} EU: 42")
    assert api.get(f"/contacts/{contact['id']}").json()["custom"][key] == 42
    page.goto(stack.stream_url + f"/contacts?q={name}")
    expect(page.get_by_test_id(f"column-{key}")).to_have_text(label + " EU")
    expect(page.get_by_test_id(f"contact-row-{contact['id']}")).to_contain_text("42")
    # retired: no input any more, the stored value still shown
    page.goto(stack.stream_url + "/settings/custom-fields")
    page.get_by_test_id(f"cf-{key}").get_by_test_id("cf-retire").click()
    expect(page.get_by_test_id(f"cf-{key}")).to_contain_text("retired")
    page.goto(stack.stream_url + f"/contacts/{contact['id']}")
    expect(page.get_by_test_id(f"custom-{key}")).to_contain_text("retired")
    page.get_by_test_id("contact-edit").click()
    expect(page.get_by_test_id(f"custom-input-{key}")).to_have_count(0)


def test_an_admin_sets_up_a_rule_and_sees_its_dry_run(stack, api, page):
    # the window is the last days of the automation clock: real time where a test moved it
    try:
        stack.rpc.call("automation", "set_clock", to_iso(utcnow()))
    except Forbidden:  # no test clock in this stack: it is the real time
        pass
    # all digits on purpose: "title contains 52552163" must stay text, not become a number
    unique = f"{uuid.uuid4().int % 10**8:08d}"
    big = api.post("/deals", json={"title": f"Big {unique}", "amount": 90000, "currency": "EUR"}).json()
    small = api.post("/deals", json={"title": f"Small {unique}", "amount": 5, "currency": "EUR"}).json()
    assert "id" in big and "id" in small, (big, small)
    page.goto(stack.stream_url + "/settings/automation")
    page.get_by_test_id("rule-new").click()
    page.get_by_test_id("rule-name").fill(f"Big deals {unique}")
    page.get_by_test_id("rule-event").click()
    page.get_by_test_id("rule-event").fill("deals.deal_created")
    page.get_by_role("option", name=re.compile(r"^deals\.deal_created")).click()
    def condition(place, field, op, value):
        row = page.get_by_test_id(f"rule-condition-{place}")
        row.get_by_test_id("rule-condition-field").click()
        page.get_by_role("option", name=field, exact=True).click()
        row.get_by_label("Comparison").click()
        page.get_by_role("option", name=op, exact=True).click()
        row.get_by_test_id("rule-condition-value").fill(value)

    # the title holds it AND (the amount is over 1000 OR the source is this test's): a nested OR group
    page.get_by_test_id("rule-add-condition").click()
    condition("0", "deal.title", "contains", unique)
    page.get_by_test_id("rule-add-group").click()
    group = page.get_by_test_id("rule-group-1")
    expect(group).to_have_attribute("data-match", "any")  # a group inside "all" starts as "any"
    condition("1-0", "deal.amount", "more than", "1000")
    group.get_by_test_id("rule-group-1-add-condition").click()
    condition("1-1", "deal.source", "is", f"vip-{unique}")
    expect(page.get_by_test_id("rule-condition-1-1")).to_contain_text("#2.2")  # its place, as the log names it
    page.get_by_test_id("rule-editor").screenshot(path=os.path.join(SCREENS, "rule_nested_group.png"))
    page.get_by_test_id("rule-action-message").fill("Big deal {{ deal.title }}")
    page.get_by_test_id("rule-save").click()
    rule = None
    for _ in range(50):
        rule = next((r for r in api.get("/automation/rules", params={"limit": 200}).json()["items"]
                     if r["name"] == f"Big deals {unique}"), None)
        if rule:
            break
        page.wait_for_timeout(200)
    assert rule and rule["enabled"] is False, rule
    assert rule["trigger"] == {"type": "event", "event": "deals.deal_created"} | {
        k: v for k, v in rule["trigger"].items() if k not in ("type", "event")}
    assert rule["conditions"] == {"all": [{"field": "deal.title", "op": "contains", "value": unique},
                                          {"any": [{"field": "deal.amount", "op": "gt", "value": 1000},
                                                   {"field": "deal.source", "op": "eq",
                                                    "value": f"vip-{unique}"}]}]}
    assert rule["actions"] == [{"type": "notify_user", "message": "Big deal {{ deal.title }}"}]
    page.get_by_test_id("tab-dry-run").click()
    # the events reach the dry run's store a moment after the deals are made: ask again
    table = page.get_by_test_id("dry-run-table")
    for _ in range(30):
        page.get_by_test_id("rule-dry-run-go").click()
        page.wait_for_timeout(500)
        if table.count() and "deal.amount gt 1000" in table.inner_text():
            break
    expect(page.get_by_test_id("dry-run-summary")).to_contain_text("would fire")
    expect(table).to_contain_text("deal.amount gt 1000")
    # the small deal failed both sides of the OR group, each named by its place
    expect(table).to_contain_text("#2: none of: #2.1: deal.amount gt 1000 failed (is 5); #2.2: deal.source eq")
    expect(table.get_by_text("Yes", exact=True).first).to_be_visible()
    page.screenshot(path=os.path.join(SCREENS, "rule_dry_run.png"))
    page.get_by_test_id("tab-runs").click()
    expect(page.get_by_test_id("rule-runs")).to_contain_text("The rule has not run yet")  # a dry run does nothing
    api.delete(f"/automation/rules/{rule['id']}")


def test_an_admin_creates_a_webhook_and_reads_its_delivery_log(stack, api, page, ch):  # noqa: F811
    path = f"/hook-{uuid.uuid4().hex[:12]}"
    page.goto(stack.stream_url + "/settings/webhooks")
    page.get_by_test_id("webhook-url").fill(ch.http.base_url + path)
    page.get_by_test_id("webhook-events").click()
    page.get_by_role("option", name="task_created", exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_test_id("webhook-create").click()
    secret = page.get_by_test_id("webhook-secret")
    expect(secret).to_be_visible()
    assert len(secret.locator("code").inner_text()) >= 32  # generated, shown once
    hook = next(h for h in api.get("/webhooks", params={"limit": 200}).json()["items"]
                if h["url"] == ch.http.base_url + path)
    task = api.post("/tasks", json={"title": f"Hook {uuid.uuid4().hex[:6]}", "assignee_id": api.get("/users/me").json()["id"]})
    assert task.status_code == 201, task.text
    [first] = ch.http.wait_for(path)
    assert first["headers"]["X-CRM-Event"] == "task_created"
    log = page.get_by_test_id("webhook-deliveries")  # refetched every 5 s: one round may pass
    expect(log.get_by_test_id("deliveries-table")).to_contain_text("task_created", timeout=15000)
    expect(log.get_by_test_id("deliveries-table")).to_contain_text("delivered", timeout=15000)
    log.get_by_test_id("delivery-redeliver").first.click()
    expect(page.get_by_text("Sending again")).to_be_visible()
    assert len(ch.http.wait_for(path, count=2)) >= 2
    page.screenshot(path=os.path.join(SCREENS, "webhook_deliveries.png"))
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 200


def test_an_admin_creates_a_web_form_and_copies_its_snippet(stack, api, page):
    name = f"Contact us {uuid.uuid4().hex[:6]}"
    page.goto(stack.stream_url + "/settings/forms")
    page.get_by_test_id("form-name").fill(name)
    page.get_by_test_id("form-label-3").fill("How can we help?")
    preview = page.frame_locator("[data-testid=form-preview]")
    expect(preview.get_by_text("How can we help?")).to_be_visible()  # live, before saving
    page.get_by_test_id("form-save").click()
    form = None
    for _ in range(50):
        form = next((f for f in api.get("/forms", params={"kind": "web", "limit": 200}).json()["items"]
                     if f["name"] == name), None)
        if form:
            break
        page.wait_for_timeout(200)
    assert form and form["fields"] == {"name": "full_name", "email": "email", "phone": "phone",
                                       "message": "message"}, form
    snippet = page.get_by_test_id("form-snippet")
    expect(snippet).to_contain_text(f"/api/v1/forms/{form['key']}/submissions")
    page.get_by_test_id("form-copy").click()
    expect(page.get_by_test_id("form-copy")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f"/api/v1/forms/{form['key']}/submissions" in copied and "How can we help?" in copied
    assert 'name="company_website"' in copied  # the honeypot, hidden from people
    # what the snippet posts is taken (form-encoded, no sign-in)
    posted = requests.post(f"{stack.base_url}/api/v1/forms/{form['key']}/submissions",
                           data={"name": "Web Visitor", "email": "visitor@example.com",
                                 "message": "Call me", "company_website": ""}, allow_redirects=False, timeout=10)
    assert posted.status_code in (202, 303), posted.text
    page.screenshot(path=os.path.join(SCREENS, "web_form.png"))
    # a phone-width look at the same screen
    page.set_viewport_size({"width": 360, "height": 800})
    expect(page.get_by_test_id("form-snippet")).to_be_visible()
    page.screenshot(path=os.path.join(SCREENS, "web_form_phone.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})


def test_the_settings_screens_fit_a_360_px_phone(stack, browser):
    with signed_in(browser, stack, viewport={"width": 360, "height": 740}, is_mobile=True,
                   has_touch=True) as page:
        for path, heading in (("/settings/custom-fields", "Custom fields"), ("/settings/automation", "Automation"),
                              ("/settings/webhooks", "Webhooks"), ("/settings/forms", "Web forms"),
                              ("/settings/mailboxes", "Mailboxes and messengers"), ("/settings/campaigns", "Campaigns"),
                              ("/settings/sales", "Lead sources and targets"), ("/settings/audit", "Audit log"),
                              ("/settings/dead-letters", "Dead letters")):
            page.goto(stack.stream_url + path)
            expect(page.get_by_role("heading", name=heading, level=2)).to_be_visible()
            page.wait_for_timeout(300)  # the lists land
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 361, (path, width)  # nothing wider than the phone (wide tables scroll inside)
            page.screenshot(path=os.path.join(SCREENS, f"phone_settings_{path.rsplit('/', 1)[1]}.png"), full_page=True)


def test_an_admin_connects_a_mailbox_on_a_bad_host_and_sees_its_error(stack, api, page):
    unique = uuid.uuid4().hex[:6]
    page.goto(stack.stream_url + "/settings/mailboxes")
    page.get_by_test_id("mb-name").fill(f"Sales {unique}")
    page.get_by_test_id("mb-address").fill(f"sales-{unique}@example.com")
    page.get_by_test_id("mb-imap-host").fill("127.0.0.1")
    _pick(page, "mb-imap-security", "None (local only)")
    page.get_by_test_id("mb-imap-port").fill("1")  # nothing listens there: refused at once
    page.get_by_test_id("mb-imap-username").fill("sales")
    page.get_by_test_id("mb-imap-password").fill("imap-secret")
    page.get_by_test_id("mb-smtp-host").fill("127.0.0.1")
    page.get_by_test_id("mb-create").click()
    mailbox = wait(lambda: next((m for m in api.get("/mailboxes", params={"limit": 200}).json()["items"]
                                  if m["name"] == f"Sales {unique}"), None), timeout=10)
    assert mailbox, "not created"
    assert mailbox["imap"]["password_set"] and "password" not in mailbox["imap"]  # write-only
    assert mailbox["smtp"]["username"] == "sales" and mailbox["smtp"]["password_set"]  # SMTP took the IMAP login
    card = page.get_by_test_id(f"mailbox-{mailbox['id']}")
    expect(card.get_by_test_id("mailbox-error")).to_be_visible(timeout=40000)  # the sync state, refreshed
    expect(card.get_by_test_id("mailbox-status")).to_have_text("error")
    assert "imap-secret" not in page.content()
    card.get_by_test_id("mailbox-sync").click()
    expect(page.get_by_text("Checking the mailbox now")).to_be_visible()
    page.screenshot(path=os.path.join(SCREENS, "mailbox_error.png"))
    # another port: the server side goes whole, so its password is asked again, at its field
    card.get_by_test_id("mailbox-edit").click()
    form = page.get_by_test_id("mailbox-edit-form")
    form.get_by_test_id("mb-imap-port").fill("2")
    form.get_by_test_id("mailbox-edit-save").click()
    expect(form.get_by_text("Missing data for required field.")).to_be_visible()
    form.get_by_test_id("mb-imap-password").fill("imap-secret-2")
    form.get_by_test_id("mailbox-edit-save").click()
    expect(form).to_have_count(0)
    changed = api.get(f"/mailboxes/{mailbox['id']}").json()
    assert changed["imap"]["port"] == 2 and changed["smtp"]["port"] == mailbox["smtp"]["port"], changed
    card.get_by_test_id("mailbox-delete").click()
    expect(card).to_have_count(0)
    # a Telegram bot: its inbound route picked by name among the telegram routes (a web form's
    # is not offered); the token never comes back
    route = api.post("/forms", json={"name": f"Telegram route {unique}", "kind": "channel",
                                     "channel": "telegram", "telegram_secret_token": f"tg{unique}"})
    assert route.status_code == 201, route.text
    route = route.json()
    web = api.post("/forms", json={"name": f"Web form {unique}"})
    assert web.status_code == 201, web.text
    page.get_by_test_id("tab-channels").click()
    page.get_by_test_id("ch-name").fill(f"Bot {unique}")
    page.get_by_test_id("ch-token").fill("123456:bot-token-secret")
    page.get_by_test_id("ch-route_id").click()
    expect(page.get_by_role("option", name=f"Web form {unique}")).to_have_count(0)
    page.get_by_role("option", name=f"Telegram route {unique}", exact=True).click()
    # or a route made here: it is picked, and the URL and secret token it shows once take an update
    page.get_by_test_id("ch-route-new").click()
    page.get_by_test_id("ch-route-name").fill(f"Made route {unique}")
    page.get_by_test_id("ch-route-create").click()
    url = page.get_by_test_id("ch-route-url").inner_text()
    secret = page.get_by_test_id("ch-route-secret").inner_text()
    made = next(f for f in api.get("/forms", params={"kind": "channel", "limit": 200}).json()["items"]
                if f["name"] == f"Made route {unique}")
    assert made["channel"] == "telegram" and made["has_telegram_secret"], made
    assert url == f"{stack.stream_url}/api/v1/inbound/telegram/{made['key']}" and len(secret) >= 32, url
    expect(page.get_by_test_id("ch-route_id")).to_have_value(f"Made route {unique}")
    update = {"update_id": random.randint(1, 10 ** 6), "message": {
        "message_id": 1, "from": {"id": 4242, "is_bot": False, "first_name": f"Made{unique}"},
        "chat": {"id": 4242, "type": "private"}, "date": 1767225600, "text": "hello"}}
    assert requests.post(url, json=update, timeout=10).status_code == 403  # no secret, no entry
    got = requests.post(url, json=update, timeout=10, headers={"X-Telegram-Bot-Api-Secret-Token": secret})
    assert got.status_code == 200, got.text
    page.get_by_test_id("ch-create").click()
    channel = wait(lambda: next((c for c in api.get("/channels", params={"limit": 200}).json()["items"]
                                  if c["name"] == f"Bot {unique}"), None), timeout=10)
    assert channel and channel["secrets"]["token"] is True and "bot-token-secret" not in str(channel), channel
    assert channel["route_id"] == made["id"], channel
    expect(page.get_by_test_id(f"channel-{channel['id']}")).to_contain_text("Token ✓")
    expect(page.get_by_test_id(f"channel-{channel['id']}").get_by_test_id("channel-route")).to_have_text(
        f"Inbound route: Made route {unique}")
    page.screenshot(path=os.path.join(SCREENS, "telegram_route_picked.png"))
    assert "bot-token-secret" not in page.content()
    # renamed; the token left blank is kept
    page.get_by_test_id(f"channel-{channel['id']}").get_by_test_id("channel-edit").click()
    edit = page.get_by_test_id("channel-edit-form")
    expect(edit.get_by_test_id("ch-token")).to_have_value("")
    edit.get_by_label("Name").fill(f"Bot {unique} renamed")
    edit.get_by_test_id("channel-edit-save").click()
    expect(page.get_by_test_id(f"channel-{channel['id']}")).to_contain_text(f"Bot {unique} renamed")
    kept = api.get(f"/channels/{channel['id']}").json()
    assert kept["secrets"]["token"] is True and kept["route_id"] == made["id"], kept
    page.get_by_test_id(f"channel-{channel['id']}").get_by_test_id("channel-delete").click()
    expect(page.get_by_test_id(f"channel-{channel['id']}")).to_have_count(0)
    for form in (route, made, web.json()):
        api.delete(f"/forms/{form['id']}")


def test_an_admin_sets_a_mailboxs_working_hours_and_first_response_minutes(stack, api, page):
    """A week with a short Saturday and Sunday closed, in Rome, and 30 minutes: saved as
    start/end + day_hours, shown on the card; a Saturday ending before it starts is refused
    at that day."""
    unique = uuid.uuid4().hex[:6]
    server = {"host": "127.0.0.1", "port": 1, "security": "none", "username": "u", "password": "p"}
    mailbox = api.post("/mailboxes", json={"name": f"Support {unique}", "address": f"support-{unique}@example.com",
                                           "imap": server, "smtp": {**server, "port": 2}, "active": False})
    assert mailbox.status_code == 201, mailbox.text
    mailbox = mailbox.json()
    page.goto(stack.stream_url + "/settings/mailboxes")
    card = page.get_by_test_id(f"mailbox-{mailbox['id']}")
    card.get_by_test_id("mailbox-edit").click()
    form = page.get_by_test_id("mailbox-edit-form")
    form.get_by_test_id("fr-minutes").fill("30")
    form.get_by_text("Count only working hours").click()  # a Mantine Switch: its input is hidden
    form.get_by_test_id("fr-timezone").click()
    form.get_by_test_id("fr-timezone").fill("Europe/Rome")
    page.get_by_role("option", name="Europe/Rome", exact=True).click()
    saturday = form.get_by_test_id("fr-day-6")
    saturday.get_by_test_id("fr-day-open").check()
    saturday.get_by_test_id("fr-day-start").fill("12:00")
    saturday.get_by_test_id("fr-day-end").fill("10:00")
    form.get_by_test_id("mailbox-edit-save").click()
    expect(saturday).to_contain_text("start must be before end.")  # the API's error, at its day
    saturday.get_by_test_id("fr-day-start").fill("10:00")
    saturday.get_by_test_id("fr-day-end").fill("12:00")
    form.get_by_test_id("mailbox-edit-save").click()
    expect(form).to_have_count(0)
    saved = api.get(f"/mailboxes/{mailbox['id']}").json()
    assert saved["first_response_minutes"] == 30, saved
    assert saved["working_hours"] == {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5, 6],
                                      "timezone": "Europe/Rome",
                                      "day_hours": [{"day": 6, "start": "10:00", "end": "12:00"}]}, saved
    expect(card.get_by_test_id("response-summary")).to_contain_text("First response in 30 min")
    expect(card.get_by_test_id("response-summary")).to_contain_text("Sat 10:00–12:00 (Europe/Rome)")
    # opened again, on a phone: the week as saved, nothing wider than the screen
    size = page.viewport_size
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        card.get_by_test_id("mailbox-edit").click()
        expect(form.get_by_test_id("fr-minutes")).to_have_value("30")
        expect(form.get_by_test_id("fr-day-6").get_by_test_id("fr-day-start")).to_have_value("10:00")
        expect(form.get_by_test_id("fr-day-7")).to_contain_text("closed")
        form.get_by_test_id("fr-day-6").scroll_into_view_if_needed()
        width = page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=mailbox-edit-form] *')]"
                              ".map((e) => e.getBoundingClientRect().right))")
        assert width <= 361, width
        page.screenshot(path=os.path.join(SCREENS, "phone_mailbox_working_hours.png"))
        page.keyboard.press("Escape")
    finally:
        page.set_viewport_size(size)
    api.delete(f"/mailboxes/{mailbox['id']}")


def test_an_admin_sends_a_campaign_draft_to_a_small_segment(stack, api, page):
    try:  # the campaign's clock is the automation clock: real time where a test moved it
        stack.rpc.call("automation", "set_clock", to_iso(utcnow()))
    except Forbidden:
        pass
    unique = uuid.uuid4().hex[:8]
    contact = api.post("/contacts", json={"first_name": "Camp", "last_name": unique, "tags": [f"cmp{unique}"],
                                          "emails": [f"camp-{unique}@example.com"]})
    assert contact.status_code == 201, contact.text
    segment = api.post("/segments", json={"name": f"Seg {unique}", "filters": {"tag": f"cmp{unique}"}})
    assert segment.status_code == 201, segment.text
    page.goto(stack.stream_url + "/settings/campaigns")
    page.get_by_test_id("cmp-name").fill(f"Promo {unique}")
    _pick(page, "cmp-segment", f"Seg {unique}")
    expect(page.get_by_test_id("cmp-segment-size")).to_have_text("Contacts in the segment now: 1")
    page.get_by_test_id("cmp-subject").fill("Hello {{ contact.first_name }}")
    page.get_by_test_id("cmp-body").fill("Our offer")  # no unsubscribe link: refused, said at the field
    page.get_by_test_id("cmp-create").click()
    expect(page.get_by_text("A marketing e-mail carries {{ unsubscribe_url }}.")).to_be_visible()
    page.get_by_test_id("cmp-body").fill("Our offer\n{{ unsubscribe_url }}")
    page.get_by_test_id("cmp-create").click()
    detail = page.get_by_test_id("campaign-detail")
    expect(detail.get_by_test_id("cmp-status")).to_have_text("draft")
    campaign = next(c for c in api.get("/campaigns", params={"limit": 200}).json()["items"] if c["name"] == f"Promo {unique}")
    assert campaign["status"] == "draft" and campaign["segment_id"] == segment.json()["id"]
    detail.get_by_test_id("cmp-send").click()
    expect(page.get_by_text("The campaign is on its way")).to_be_visible()
    expect(detail.get_by_test_id("cmp-status")).not_to_have_text("draft")
    expect(detail.get_by_test_id("cmp-send")).to_have_count(0)  # only a draft is sent
    assert api.get(f"/campaigns/{campaign['id']}").json()["status"] in ("scheduled", "queuing", "sending", "sent")
    # it goes out (no mailbox in this stack: failed), the counts follow on the screen
    expect(detail.get_by_test_id("cmp-status")).to_have_text("sent", timeout=30000)
    expect(detail.get_by_test_id("cmp-count-queued")).to_have_text("1")
    counts = api.get(f"/campaigns/{campaign['id']}").json()["counts"]
    expect(detail.get_by_test_id("cmp-count-failed")).to_have_text(str(counts["failed"]))
    page.screenshot(path=os.path.join(SCREENS, "campaign_sent.png"))


def test_an_admin_enters_a_source_cost_and_a_target(stack, api, page):
    name = f"Fair {uuid.uuid4().hex[:6]}"
    page.goto(stack.stream_url + "/settings/sales")
    page.get_by_test_id("ls-name").fill(name)
    page.get_by_test_id("ls-create").click()
    costs = page.get_by_test_id("ls-costs")
    expect(costs).to_contain_text(name)  # the new source is opened
    page.get_by_test_id("ls-cost-month").fill("2026-13")
    page.get_by_test_id("ls-cost-amount").fill("1200.50")
    page.get_by_test_id("ls-cost-add").click()
    expect(costs.get_by_text("Use YYYY-MM (1900-2999).")).to_be_visible()  # the API's word, at the month
    page.get_by_test_id("ls-cost-month").fill("2026-11")
    page.get_by_test_id("ls-cost-add").click()
    expect(page.get_by_test_id("ls-costs-table")).to_contain_text("€1,200.50")
    source = next(s for s in api.get("/lead-sources", params={"limit": 200}).json()["items"] if s["name"] == name)
    assert source["costs"] == [{"period": "2026-11", "currency": "EUR", "amount": 120050}], source
    me = api.get("/users/me").json()
    page.get_by_test_id("tab-targets").click()
    page.get_by_test_id("tg-period").fill("2026-Q4")
    _pick(page, "tg-who", f"{me['name']} ({me['email']})")
    page.get_by_test_id("tg-deals").fill("7")
    page.get_by_test_id("tg-create").click()
    target = wait(lambda: next((g for g in api.get("/targets", params={"period": "2026-Q4", "user_id": me["id"]}).json()["items"]
                                 if g["deals_count"] == 7), None), timeout=10)
    assert target, "no target"
    row = page.get_by_test_id(f"target-{target['id']}")
    expect(row).to_contain_text(me["name"])
    page.screenshot(path=os.path.join(SCREENS, "sales_settings.png"))
    row.get_by_test_id("tg-delete").click()
    expect(row).to_have_count(0)
    api.delete(f"/lead-sources/{source['id']}")


def test_an_admin_reads_the_audit_log_filtered_by_a_user(stack, api, page):
    me = api.get("/users/me").json()
    unique = uuid.uuid4().hex[:6]
    made = api.post("/contacts", json={"first_name": "Audit", "last_name": unique})
    assert made.status_code == 201, made.text
    page.goto(stack.stream_url + "/settings/audit")
    _pick(page, "audit-user", f"{me['name']} ({me['email']})")
    page.get_by_test_id("audit-resource").fill("contacts")
    table = page.get_by_test_id("audit-table")
    expect(table).to_contain_text("/api/v1/contacts")
    rows = table.get_by_test_id("audit-row")
    assert rows.count() >= 1
    for text in rows.all_inner_texts()[:20]:
        assert me["email"] in text and "/contacts" in text, text
    entries = api.get("/audit", params={"actor_id": me["id"], "resource": "contacts", "limit": 5}).json()["items"]
    assert entries and all(e["actor_id"] == me["id"] for e in entries)
    page.screenshot(path=os.path.join(SCREENS, "audit_log.png"))


def test_an_admin_replays_a_dead_letter(stack, api, page):
    from kombu import Connection

    from crm_common.messaging.events import dead_letter_queue_name
    from crm_common.messaging.publish import publish_event
    queue = "evt-telephony-call_missed--tasks.on_call_missed"
    unique = uuid.uuid4().hex[:8]
    # a poison event (as in tests/test_reliability.py): the tasks handler fails on every attempt
    publish_event(stack.amqp_uri, "telephony", "call_missed",
                  {"call": {"id": f"poison-{unique}", "started_at": "9999-12-31T23:30:00Z"},
                   "contact_id": None, "agent_id": f"agent-{unique}", "owner_id": None})

    def parked():
        for q in api.get("/admin/dead-letters").json()["items"]:
            if q["queue"] == queue and any(f"poison-{unique}" in m["body"] for m in q["messages"]):
                return q
        return None
    assert wait(parked, timeout=30), "not dead-lettered"
    page.goto(stack.stream_url + "/settings/dead-letters")
    card = page.get_by_test_id(f"dl-{queue}")
    expect(card.get_by_test_id("dl-error").first).to_contain_text("OverflowError")
    card.get_by_test_id("dl-replay").click()
    expect(page.get_by_text(re.compile(r"Sent back to the queue: [1-9]"))).to_be_visible()
    # it fails its attempts again and is parked again: never lost
    assert wait(parked, timeout=30), "lost after the replay"
    page.get_by_role("button", name="Refresh").click()
    expect(card.get_by_test_id("dl-error").first).to_contain_text("OverflowError")
    page.screenshot(path=os.path.join(SCREENS, "dead_letters.png"))
    # the session's stack as found: tests/test_reliability.py counts this queue's dead letters
    with Connection(stack.amqp_uri) as conn:
        conn.channel().queue_purge(dead_letter_queue_name(queue))


def test_an_agent_sees_only_the_settings_its_role_may_use(stack, make_user, browser):
    agent = make_user("agent")
    with signed_in(browser, stack, agent) as page:
        nav = page.get_by_test_id("navbar")
        expect(nav.get_by_text("Mailboxes and messengers")).to_be_visible()  # their own mailbox
        expect(nav.get_by_text("Lead sources and targets")).to_be_visible()  # their own targets
        for hidden in ("Audit log", "Dead letters", "Campaigns"):
            expect(nav.get_by_text(hidden, exact=True)).to_have_count(0)
        page.goto(stack.stream_url + "/settings/mailboxes")
        expect(page.get_by_test_id("mb-create")).to_be_visible()
        expect(page.get_by_test_id("tab-channels")).to_have_count(0)  # messengers: admins only
        expect(page.get_by_text("Shared mailbox")).to_have_count(0)
        page.goto(stack.stream_url + "/settings/sales")
        expect(page.get_by_test_id("tab-targets")).to_be_visible()
        expect(page.get_by_text("Lead sources", exact=True)).to_have_count(0)
        expect(page.get_by_test_id("target-new")).to_have_count(0)  # reads, does not set
        page.screenshot(path=os.path.join(SCREENS, "agent_settings.png"), full_page=True)
        # in Hebrew, right to left
        page.get_by_test_id("language").click()
        page.get_by_role("option", name="עברית").click()
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
        page.goto(stack.stream_url + "/settings/mailboxes")
        expect(page.get_by_role("heading", name="תיבות דואר ומסרים", level=2)).to_be_visible()
        expect(page.get_by_test_id("mb-create")).to_have_text("חיבור תיבת דואר")
        page.screenshot(path=os.path.join(SCREENS, "agent_mailboxes_he.png"), full_page=True)
