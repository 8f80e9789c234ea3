"""Pure functions of the notifications service: quiet hours, templates, routing, backoff."""
from datetime import date, datetime, timezone

import pytest
from jinja2.exceptions import SecurityError

from crm_common.config import load_settings
from services.notifications.fanout import month_days, preferences_with_defaults
from services.notifications.quiet import deliver_after
from services.notifications.rules import recipients
from services.notifications.templates_engine import render, render_string
from services.notifications.worker import backoff


def at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("now,expected", [
    ("2027-01-10T21:59:00Z", "2027-01-10T21:59:00Z"),   # before the window
    ("2027-01-10T22:00:00Z", "2027-01-11T07:00:00Z"),   # it starts
    ("2027-01-11T03:00:00Z", "2027-01-11T07:00:00Z"),   # after midnight
    ("2027-01-11T07:00:00Z", "2027-01-11T07:00:00Z"),   # it ended
])
def test_quiet_hours_across_midnight(now, expected):
    assert deliver_after(at(now), {"start": "22:00", "end": "07:00"}, "UTC") == at(expected)


def test_quiet_hours_in_the_users_zone_and_daylight_saving():
    window = {"start": "22:00", "end": "07:00"}
    # Rome is UTC+1 in January, UTC+2 in July: the window ends at 06:00Z / 05:00Z
    assert deliver_after(at("2027-01-10T22:30:00Z"), window, "Europe/Rome") == at("2027-01-11T06:00:00Z")
    assert deliver_after(at("2027-07-10T21:30:00Z"), window, "Europe/Rome") == at("2027-07-11T05:00:00Z")
    assert deliver_after(at("2027-01-10T12:00:00Z"), {"start": "13:00", "end": "14:00"}, "Europe/Rome") \
        == at("2027-01-10T13:00:00Z")
    assert deliver_after(at("2027-01-10T12:00:00Z"), None, "UTC") == at("2027-01-10T12:00:00Z")


def test_templates_escape_html_speak_italian_and_fall_back_to_english():
    ctx = {"data": {"task": {"title": "<script>x</script>"}}, "user": {"name": "Ann"}}
    it = render("task_assigned", "it-IT", ctx)
    assert it["language"] == "it" and it["subject"] == "Nuova attività: <script>x</script>"
    assert "<script>" not in it["html"] and "&lt;script&gt;" in it["html"]
    assert render("task_assigned", "ja", ctx)["language"] == "en"
    won = render("deal_won", "en", {"data": {"deal": {"title": "D"}, "amount": 1234567,
                                             "currency": "EUR"}, "user": {}, "owner": {}})
    assert won["short"] == "Won: D (12,345.67 EUR)"


def test_configured_templates_are_sandboxed():
    with pytest.raises(SecurityError):
        render_string("{{ text.__class__.__mro__[1].__subclasses__() }}", text="x")


def test_routing_rules():
    users = {"a": {"manager_id": "m"}, "m": {}}.get
    assert recipients("task_escalated", {"assignee_id": "a"}, users) == ["m"]
    assert recipients("task_escalated", {"assignee_id": "a", "manager_id": "z"}, users) == ["z"]
    assert recipients("deal_won", {"owner_id": "a"}, users) == ["a", "m"]
    assert recipients("deal_lost", {"owner_id": "m"}, users) == ["m"]
    assert recipients("call_missed", {"owner_id": None, "agent_id": "g"}, users) == ["g"]
    assert recipients("import_finished", {"started_by": "s"}, users) == ["s"]
    assert recipients("contact_created", {"owner_id": "a"}, users) == []


def test_preferences_defaults_and_backoff_and_leap_birthdays():
    prefs = preferences_with_defaults("u", {"channels": {"task_assigned": []}})
    assert prefs["channels"]["task_assigned"] == [] and prefs["channels"]["deal_won"] == ["inapp", "email"]
    settings = load_settings().notifications
    assert [backoff(settings, n) for n in (1, 2, 3)] == [settings.backoff_s * k for k in (1, 2, 4)]
    assert backoff(settings, 50) == settings.backoff_max_s
    assert month_days(date(2027, 2, 28)) == ["02-28", "02-29"]
    assert month_days(date(2028, 2, 28)) == ["02-28"]
