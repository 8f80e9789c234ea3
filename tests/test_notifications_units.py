"""Pure functions of the notifications service: quiet hours, templates, routing, backoff,
digest periods."""
from datetime import date, datetime, timezone

import pytest
from jinja2.exceptions import SecurityError

from crm_common.config import load_settings
from services.notifications.digests import due_period, latest_period
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


# --- digest periods (the period a digest covers, in the user's zone) -----------------------

def _period(now, digest, tz="Europe/Rome"):
    key, start, end = latest_period(at(now), digest, tz)
    return key, start.isoformat(), end.isoformat()


DAILY = {"frequency": "daily", "hour": 8}


@pytest.mark.parametrize("now,expected", [
    # at its hour exactly: the day that just ended
    ("2026-12-07T07:00:00Z", ("daily:2026-12-07", "2026-12-06T08:00:00+01:00",
                              "2026-12-07T08:00:00+01:00")),
    # a minute before it: the period before
    ("2026-12-07T06:59:00Z", ("daily:2026-12-06", "2026-12-05T08:00:00+01:00",
                              "2026-12-06T08:00:00+01:00")),
    # the user's day, not UTC's: 00:30 in Rome on the 8th is still the 7th in UTC
    ("2026-12-07T23:30:00Z", ("daily:2026-12-07", "2026-12-06T08:00:00+01:00",
                              "2026-12-07T08:00:00+01:00")),
    # across the spring change (29 March 2026, 02:00 -> 03:00): 23 hours long
    ("2026-03-29T06:00:00Z", ("daily:2026-03-29", "2026-03-28T08:00:00+01:00",
                              "2026-03-29T08:00:00+02:00")),
    # across the autumn change (25 October 2026, 03:00 -> 02:00): 25 hours long
    ("2026-10-25T07:00:00Z", ("daily:2026-10-25", "2026-10-24T08:00:00+02:00",
                              "2026-10-25T08:00:00+01:00")),
])
def test_the_daily_digest_period(now, expected):
    assert _period(now, DAILY) == expected


@pytest.mark.parametrize("now,expected_end", [
    ("2026-12-07T07:00:00Z", "2026-12-07T08:00:00+01:00"),   # Monday at 08:00 in Rome
    ("2026-12-07T06:59:00Z", "2026-11-30T08:00:00+01:00"),   # Monday before it: last week's
    ("2026-12-13T22:59:00Z", "2026-12-07T08:00:00+01:00"),   # Sunday 23:59 in Rome
    ("2026-12-13T23:30:00Z", "2026-12-07T08:00:00+01:00"),   # Monday 00:30 in Rome
    ("2027-01-04T09:00:00Z", "2027-01-04T08:00:00+01:00"),   # across the new year
    ("2026-03-30T06:00:00Z", "2026-03-30T08:00:00+02:00"),   # the week of the spring change
])
def test_the_weekly_digest_period_ends_on_its_weekday(now, expected_end):
    key, start, end = _period(now, {"frequency": "weekly", "hour": 8, "weekday": 0})
    assert end == expected_end and key == f"weekly:{expected_end[:10]}"
    assert datetime.fromisoformat(start).date() == date.fromordinal(
        datetime.fromisoformat(end).date().toordinal() - 7)
    assert datetime.fromisoformat(start).hour == 8   # wall clock, whatever the DST


def test_a_weekly_digest_on_another_weekday_and_a_zone_unknown_or_unset_is_utc():
    key, start, end = _period("2026-12-09T10:00:00Z", {"frequency": "weekly", "hour": 18,
                                                       "weekday": 2})   # Wednesday 18:00
    assert (key, end) == ("weekly:2026-12-02", "2026-12-02T18:00:00+01:00")
    for tz in (None, "Mars/Olympus"):
        assert _period("2026-12-07T08:30:00Z", DAILY, tz)[2] == "2026-12-07T08:00:00+00:00"


def test_a_digest_is_due_up_to_six_hours_after_its_period_ends():
    assert due_period(at("2026-12-07T07:00:00Z"), DAILY, "Europe/Rome")[0] == "daily:2026-12-07"
    assert due_period(at("2026-12-07T12:59:00Z"), DAILY, "Europe/Rome")[0] == "daily:2026-12-07"
    assert due_period(at("2026-12-07T13:00:00Z"), DAILY, "Europe/Rome") is None
    # 6 real hours after the end, on the day the clocks go back (wall clock says 5)
    assert due_period(at("2026-10-25T12:59:00Z"), DAILY, "Europe/Rome") is not None
    assert due_period(at("2026-10-25T13:00:00Z"), DAILY, "Europe/Rome") is None
    assert due_period(at("2026-12-07T07:00:00Z"), {"frequency": "off", "hour": 8}, "UTC") is None
    assert due_period(at("2026-12-07T07:00:00Z"), None, "UTC") is None


# --- the digest's funnel and its HTML part ---------------------------------------------------

def _digest_data():
    from services.notifications import digests
    asked = []

    def call(service, method, params):
        asked.append((service, method, params.get("pipeline_id")))
        if method == "list_pipelines":
            return {"items": [{"id": "p1", "name": "Sales <b>EU</b>"}, {"id": "p2", "name": "Rentals"}]}
        if method == "funnel_report":
            if params["pipeline_id"] == "p2":
                return {"pipeline_id": "p2", "deals": 0, "stages": []}
            return {"pipeline_id": "p1", "deals": 4, "stages": [
                {"name": "New & hot", "kind": "open", "entered": 4, "won": 1,
                 "conversion_to_next": 0.5, "conversion_to_won": 0.25},
                {"name": "Won", "kind": "won", "entered": 1, "won": 1,
                 "conversion_to_next": None, "conversion_to_won": 1.0}]}
        return {"items": [{"assignee_id": "u1", "done": 2, "open": 1, "overdue": 0}]}

    start, end = at("2027-01-10T00:00:00Z"), at("2027-01-11T00:00:00Z")
    data = digests.gather(call, ["tasks", "funnel"], start, end)
    assert ("deals", "funnel_report", "p1") in asked and ("deals", "funnel_report", "p2") in asked
    return {"frequency": "daily", "from_day": "2027-01-10", "to_day": "2027-01-10",
            "rows": digests.readable(data, {"u1": "Anna <script>"})}


def test_the_digest_carries_each_pipelines_funnel_with_conversion():
    rows = _digest_data()["rows"]
    assert rows["funnel"][0] == {"pipeline": "Sales <b>EU</b>", "deals": 4, "stages": [
        {"name": "New & hot", "kind": "open", "entered": 4, "won": 1, "to_next": "50%", "to_won": "25%"},
        {"name": "Won", "kind": "won", "entered": 1, "won": 1, "to_next": "-", "to_won": "100%"}]}
    assert rows["funnel"][1]["stages"] == []


@pytest.mark.parametrize("language", ["en", "it"])
def test_the_digest_email_has_an_html_part_of_escaped_tables(language):
    rendered = render("report_digest", language, {"data": _digest_data(), "user": {"name": "Bob & Co"}})
    text, html = rendered["text"], rendered["html"]
    assert "Sales <b>EU</b>" in text and "New & hot: 4" in text and "50%" in text
    assert html.count("<table") == 3  # tasks, and each pipeline's funnel
    assert "<td>Sales" not in html and "<h5>Sales &lt;b&gt;EU&lt;/b&gt; (4 " in html
    assert "<td>New &amp; hot</td><td align=\"right\">4</td><td align=\"right\">50%</td>" in html
    assert "Anna &lt;script&gt;" in html and "<script>" not in html
    assert "Bob &amp; Co" in html and "<p>" in html


def test_an_email_with_html_goes_out_as_multipart_alternative(monkeypatch):
    import smtplib
    from types import SimpleNamespace
    from services.notifications.channels import email_smtp
    sent = []

    class FakeSmtp:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def send_message(self, msg):
            sent.append(msg)

    monkeypatch.setattr(smtplib, "SMTP", FakeSmtp)
    rendered = render("report_digest", "en", {"data": _digest_data(), "user": {"name": "Bob"}})
    settings = SimpleNamespace(smtp_from="crm@example.com", smtp_tls="none", smtp_host="h",
                               smtp_port=25, send_timeout_s=5, smtp_user=None, smtp_password=None)
    email_smtp.send({"_id": "d1", "target": "bob@example.com", **rendered}, settings, None)
    [msg] = sent
    assert msg.get_content_type() == "multipart/alternative"
    assert "New & hot: 4 entered" in msg.get_body(("plain",)).get_content()
    assert "<table" in msg.get_body(("html",)).get_content()
