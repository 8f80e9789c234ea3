"""Pure pieces of the inbound flow: reading a form post and a Telegram update, the match key
of a messenger handle, and a first-touch task's due time in working hours."""
from datetime import datetime, timezone

import pytest

from crm_common.errors import ValidationFailed
from services.contacts.domain import handle_key
from services.contacts.inbound import extract_form_fields, extract_telegram
from services.tasks.domain import due_in_working_hours

ROME_OFFICE = {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5], "timezone": "Europe/Rome"}


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_form_fields_by_mapping_then_by_standard_names():
    found = extract_form_fields(
        {"Your Name": "Anna Maria Rossi", "E-mail": "a@example.com", "tel": ["+39 347 1", "x"],
         "msg": "Hello", "tg": "@anna", "hidden": "x", "company": "ACME"},
        {"msg": "message", "tg": "telegram", "hidden": "ignore"})
    assert found["first_name"] == "Anna" and found["last_name"] == "Maria Rossi"
    assert found["email"] == "a@example.com" and found["phone"] == "+39 347 1"
    assert found["text"] == "Hello" and found["company"] == "ACME"
    assert found["handles"] == [{"channel": "telegram", "handle": "@anna"}]


def test_explicit_names_win_over_a_split_full_name():
    found = extract_form_fields({"first_name": "Ann", "name": "Anna Rossi"}, {})
    assert found["first_name"] == "Ann" and found["last_name"] == "Rossi"


def test_telegram_update_reading():
    update = {"update_id": 7, "message": {
        "message_id": 1, "date": 1795000000, "text": "Hi",
        "from": {"id": 42, "is_bot": False, "first_name": "Ivan", "username": "Ivan_P"},
        "contact": {"phone_number": "+393470000000", "user_id": 42}}}
    when, found = extract_telegram(update)
    assert when == datetime.fromtimestamp(1795000000, timezone.utc)
    assert found["handles"] == [{"channel": "telegram", "handle": "42"},
                                {"channel": "telegram", "handle": "@Ivan_P"}]
    assert found["phone"] == "+393470000000" and found["text"] == "Hi"
    # someone else's shared contact is not the sender's phone
    update["message"]["contact"]["user_id"] = 99
    assert "phone" not in extract_telegram(update)[1]
    assert extract_telegram({"update_id": 8, "callback_query": {"id": "1"}}) is None
    bot = {"update_id": 9, "message": {"from": {"id": 1, "is_bot": True}, "text": "x"}}
    assert extract_telegram(bot) is None


def test_handle_keys_ignore_username_case_only():
    assert handle_key("telegram", " @Ivan_P ") == handle_key("telegram", "@ivan_p")
    assert handle_key("whatsapp", "AbC") != handle_key("whatsapp", "abc")


def test_due_inside_working_hours():
    # Monday 11:00 in Rome (10:00Z): plain 15 minutes
    assert due_in_working_hours(utc(2026, 11, 23, 10, 0), 15, ROME_OFFICE) == utc(2026, 11, 23, 10, 15)


def test_due_carries_over_the_evening_and_the_weekend():
    # Monday 17:55 in Rome: 5 minutes today, 10 tomorrow from 09:00
    assert due_in_working_hours(utc(2026, 11, 23, 16, 55), 15, ROME_OFFICE) == utc(2026, 11, 24, 8, 10)
    # Friday 21:00 in Rome: Monday 09:15
    assert due_in_working_hours(utc(2026, 11, 27, 20, 0), 15, ROME_OFFICE) == utc(2026, 11, 30, 8, 15)
    # Saturday morning: Monday 09:30
    assert due_in_working_hours(utc(2026, 11, 28, 9, 0), 30, ROME_OFFICE) == utc(2026, 11, 30, 8, 30)


def test_due_counts_each_days_own_hours():
    """Saturday 10:00-12:00 (day_hours) besides Monday-Friday 09:00-18:00, in Rome."""
    from contracts.contacts import WorkingHours
    from crm_common.validation import load
    hours = load(WorkingHours(), {**ROME_OFFICE, "days": [1, 2, 3, 4, 5, 6],
                                  "day_hours": [{"day": 6, "start": "10:00", "end": "12:00"}]})
    # Friday 17:55: 5 minutes on Friday, 10 on Saturday from 10:00 (09:00Z)
    assert due_in_working_hours(utc(2026, 11, 27, 16, 55), 15, hours) == utc(2026, 11, 28, 9, 10)
    # Saturday 11:50: 10 minutes on Saturday, 20 on Monday from 09:00
    assert due_in_working_hours(utc(2026, 11, 28, 10, 50), 30, hours) == utc(2026, 11, 30, 8, 20)
    for bad in ([{"day": 7, "start": "10:00", "end": "12:00"}],  # Sunday is closed
                [{"day": 6, "start": "12:00", "end": "10:00"}],
                [{"day": 6, "start": "10:00", "end": "12:00"}] * 2):
        with pytest.raises(ValidationFailed):
            load(WorkingHours(), {**hours, "day_hours": bad})


def test_due_without_working_hours_is_plain_minutes():
    assert due_in_working_hours(utc(2026, 11, 28, 23, 0), 15, None) == utc(2026, 11, 28, 23, 15)
