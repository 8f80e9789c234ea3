"""The console (web/) in Debian's chromium, driven by Playwright, against the real stack:
served by the gateway at / and reached through the stream process's front (one origin for
the console, the API and the live stream). Each test saves a screenshot under
.test-output/screens/. Skipped, with the reason, where the console was not built (`./crm
test` builds it) or chromium / Playwright are missing (`./crm test` installs them)."""
import os
import random
import shutil
import uuid
from contextlib import contextmanager

import pytest

from tests.stack import ROOT

DIST = os.path.join(ROOT, "web", "dist", "index.html")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENS = os.path.join(ROOT, ".test-output", "screens")

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - requirements-dev.txt pins it
    sync_playwright = None
else:
    # assertions wait as long as the pages' actions (set_default_timeout below), not
    # Playwright's 5 s: a loaded CI machine took longer to show a card or an agenda
    expect.set_options(timeout=15000)

pytestmark = [
    pytest.mark.skipif(not os.path.isfile(DIST), reason="web/dist was not built (./crm test builds "
                       "it: npm ci && npm run build in web/)"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium (./crm test installs "
                       "the Debian package)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed "
                       "(requirements-dev.txt)"),
]


@pytest.fixture(scope="module")
def browser():
    os.makedirs(SCREENS, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1600, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    page.screenshot(path=os.path.join(SCREENS, f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def agent(make_user):
    return make_user("agent", extension=str(random.randint(10000, 99999)))


def sign_in(page, stack, user):
    page.goto(stack.stream_url + "/login")
    page.fill("input[name=email]", user.user["email"])
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/today")
    expect(page.get_by_test_id("live")).to_have_text("Live")


@contextmanager
def signed_in(browser, stack, user=None, **options):
    """A page in a new context of `browser` (1400x900, en-US, or `options`), signed in as
    `user` (a client with .user and .password; default: the stack's first admin); the
    context is closed after. The console modules keep one per module (a sign-in costs
    seconds)."""
    if user is None:
        user = type("Admin", (), {"user": {"email": stack.admin_email},
                                  "password": stack.admin_password})
    context = browser.new_context(**{"viewport": {"width": 1400, "height": 900},
                                     "locale": "en-US", **options})
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        sign_in(page, stack, user)
        yield page
    finally:
        context.close()


def test_sign_in_find_a_contact_by_phone_and_open_its_card(stack, agent, page):
    digits = "".join(random.choice("0123456789") for _ in range(7))
    name = f"Zed{uuid.uuid4().hex[:6]}"
    created = agent.post("/contacts", json={"first_name": name, "last_name": "Console",
                                            "phones": [f"+39347{digits}"],
                                            "emails": [f"{name.lower()}@example.com"],
                                            "owner_id": agent.user["id"]})
    assert created.status_code == 201, created.text
    sign_in(page, stack, agent)
    page.goto(stack.stream_url + "/contacts")
    page.get_by_test_id("contact-search").fill(digits[-5:])
    link = page.get_by_role("link", name=f"{name} Console")
    expect(link).to_be_visible()
    link.click()
    page.wait_for_url(f"**/contacts/{created.json()['id']}")
    expect(page.get_by_test_id("contact-card")).to_contain_text(f"+39347{digits}")
    expect(page.get_by_test_id("timeline")).to_be_visible()


def _drag(page, source, target):
    box, goal = source.bounding_box(), target.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 10, box["y"] + box["height"] / 2, steps=3)
    page.mouse.move(goal["x"] + goal["width"] / 2, goal["y"] + 60, steps=12)
    page.mouse.up()


def test_drag_a_deal_across_a_stage_then_to_lost_with_a_reason(stack, agent, page):
    pipeline = next(p for p in agent.get("/pipelines").json()["items"] if p["is_default"])
    stages = pipeline["stages"]
    deal = agent.post("/deals", json={"title": f"Board {uuid.uuid4().hex[:6]}", "amount": 150000,
                                      "currency": "EUR", "owner_id": agent.user["id"]})
    assert deal.status_code == 201, deal.text
    deal = deal.json()
    sign_in(page, stack, agent)
    page.goto(stack.stream_url + "/deals")
    card = page.get_by_test_id(f"deal-{deal['id']}")
    expect(card).to_be_visible()
    _drag(page, card, page.get_by_test_id(f"stage-{stages[1]['id']}"))
    expect(page.get_by_test_id(f"stage-{stages[1]['id']}").get_by_test_id(f"deal-{deal['id']}")).to_be_visible()
    page.wait_for_timeout(300)
    assert agent.get(f"/deals/{deal['id']}").json()["stage_id"] == stages[1]["id"]
    lost = next(s for s in stages if s["kind"] == "lost")
    _drag(page, page.get_by_test_id(f"deal-{deal['id']}"), page.get_by_test_id(f"stage-{lost['id']}"))
    # the dialog is mounted once per ask with its own uncontrolled field (a board re-render or
    # a second drop cannot reset it), and it refuses an empty reason out loud
    reason = page.get_by_test_id("lost-reason")
    expect(reason).to_be_focused()  # the dialog finished opening
    page.get_by_role("button", name="Mark lost").click()
    expect(page.get_by_text("Say why the deal was lost")).to_be_visible()
    reason.fill("price")
    expect(reason).to_have_value("price")
    page.screenshot(path=os.path.join(SCREENS, "lost_reason_asked.png"))
    page.get_by_role("button", name="Mark lost").click()
    expect(reason).to_have_count(0)
    expect(page.get_by_test_id(f"stage-{lost['id']}").get_by_test_id(f"deal-{deal['id']}")).to_be_visible()
    page.wait_for_timeout(300)
    moved = agent.get(f"/deals/{deal['id']}").json()
    assert moved["status"] == "lost" and moved["lost_reason"] == "price"
    # the list view, then the deal with its stage history
    page.get_by_test_id("deal-view").get_by_text("List").click()
    page.get_by_test_id(f"deal-row-{deal['id']}").click()
    history = page.get_by_test_id("deal-history")
    expect(history).to_contain_text(f"{stages[1]['name']} → {lost['name']}")
    expect(history).to_contain_text("price")


def test_a_notification_and_an_incoming_call_arrive_live(stack, api, agent, page):
    caller = "+39347" + "".join(random.choice("0123456789") for _ in range(7))
    contact = agent.post("/contacts", json={"first_name": "Calling", "last_name": "Now",
                                            "phones": [caller], "owner_id": agent.user["id"]})
    assert contact.status_code == 201, contact.text
    sign_in(page, stack, agent)
    expect(page.get_by_test_id("bell-count")).to_be_visible()
    task = api.post("/tasks", json={"title": "Call Calling Now back", "assignee_id": agent.user["id"]})
    assert task.status_code == 201, task.text
    # the unread count comes live from the stream (no reload)
    expect(page.locator(".mantine-Indicator-indicator")).to_have_text("1")
    key = api.post("/api-keys", json={"name": f"pbx-{uuid.uuid4().hex[:6]}",
                                      "scopes": ["telephony:write"]}).json()["key"]
    ringing = api.post("/telephony/events", headers={"X-API-Key": key}, json={
        "event_id": uuid.uuid4().hex, "provider": "pbx1", "call_id": uuid.uuid4().hex,
        "direction": "inbound", "from": caller, "to": "+390200000000", "state": "ringing"})
    assert ringing.status_code == 200, ringing.text
    pop = page.get_by_test_id("call-pop")
    expect(pop).to_contain_text(caller)
    pop.get_by_role("button", name="Open contact").click()
    page.wait_for_url(f"**/contacts/{contact.json()['id']}")


def test_hebrew_lays_the_console_out_right_to_left(stack, agent, page):
    sign_in(page, stack, agent)
    page.get_by_test_id("language").click()
    page.get_by_role("option", name="עברית").click()
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.get_by_role("heading", name="היום", exact=True)).to_be_visible()
    # the navbar sits on the right and the content beside it, not under it, also when the
    # console starts in Hebrew
    for _ in range(2):
        heading = page.get_by_role("heading", name="היום", exact=True)
        expect(heading).to_be_visible()
        # read until the layout settles (fonts and the navbar's width land after first paint)
        for _ in range(50):
            navbar, box = page.get_by_test_id("navbar").bounding_box(), heading.bounding_box()
            if navbar["x"] > 800 and box["x"] + box["width"] <= navbar["x"] + 1:
                break
            page.wait_for_timeout(100)
        assert navbar["x"] > 800 and box["x"] + box["width"] <= navbar["x"] + 1, (navbar, box)
        page.reload()
