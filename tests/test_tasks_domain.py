"""Unit tests of the tasks service's pure logic (no I/O)."""
from datetime import datetime, timedelta, timezone

import pytest

from crm_common.errors import Forbidden
from crm_common.timeutil import period_key
from services.tasks.clock import Clock
from services.tasks.domain import (add_months, day_bounds, due_notices, first_alarm,
                                   next_alarm, next_occurrence, notices)

T0 = datetime(2030, 5, 10, 12, 0, tzinfo=timezone.utc)


def task(**fields):
    return {"_id": "t1", "status": "open", "due_at": T0, "reminders": [15, 60], **fields}


def test_notices_are_keyed_by_deadline():
    keys = [n[0] for n in notices(task(), 30)]
    assert keys == ["t1:due_soon:15:2030-05-10T12:00:00Z", "t1:due_soon:60:2030-05-10T12:00:00Z",
                    "t1:overdue:2030-05-10T12:00:00Z", "t1:escalated:2030-05-10T12:00:00Z"]
    moved = [n[0] for n in notices(task(due_at=T0 + timedelta(days=1)), 30)]
    assert not set(keys) & set(moved)  # a new deadline re-arms every notice


def test_due_notices_over_time():
    kinds = lambda now: [(n[1], n[3].get("offset_minutes")) for n in due_notices(task(), now, 30)]
    assert kinds(T0 - timedelta(minutes=61)) == []
    assert kinds(T0 - timedelta(minutes=59)) == [("task_due_soon", 60)]
    assert kinds(T0 - timedelta(minutes=1)) == [("task_due_soon", 15), ("task_due_soon", 60)]
    # once due, reminders are pointless: only what is past the deadline
    assert kinds(T0) == [("task_overdue", None)]
    assert kinds(T0 + timedelta(minutes=30)) == [("task_overdue", None), ("task_escalated", None)]
    assert due_notices(task(status="done"), T0 + timedelta(hours=5), 30) == []
    assert due_notices(task(due_at=None), T0, 30) == []


def test_alarms():
    assert first_alarm(task(), 30) == T0 - timedelta(minutes=60)
    assert next_alarm(task(), T0 - timedelta(minutes=60), 30) == T0 - timedelta(minutes=15)
    assert next_alarm(task(), T0, 30) == T0 + timedelta(minutes=30)
    assert next_alarm(task(), T0 + timedelta(minutes=30), 30) is None
    assert first_alarm(task(status="canceled"), 30) is None
    assert first_alarm(task(due_at=None), 30) is None


def test_recurrence():
    jan31 = datetime(2031, 1, 31, 9, tzinfo=timezone.utc)
    assert next_occurrence(jan31, {"freq": "monthly"}) == datetime(2031, 2, 28, 9, tzinfo=timezone.utc)
    assert next_occurrence(jan31, {"freq": "monthly", "interval": 13}) == datetime(2032, 2, 29, 9, tzinfo=timezone.utc)
    assert next_occurrence(jan31, {"freq": "daily", "interval": 2}) == jan31 + timedelta(days=2)
    assert next_occurrence(jan31, {"freq": "weekly", "until": jan31 + timedelta(days=6)}) is None
    assert add_months(datetime(2030, 12, 15, tzinfo=timezone.utc), 1).year == 2031


def test_day_bounds_in_the_users_zone():
    start, end = day_bounds(datetime(2030, 5, 10, 23, 30, tzinfo=timezone.utc), "Europe/Rome")
    assert start == datetime(2030, 5, 10, 22, 0, tzinfo=timezone.utc)  # already the 11th in Rome
    assert end - start == timedelta(hours=24)
    assert day_bounds(T0, "Not/AZone")[0] == datetime(2030, 5, 10, tzinfo=timezone.utc)
    assert period_key(T0, "week") == "2030-W19" and period_key(T0, "month") == "2030-05"


def test_the_clock_cannot_be_moved_outside_tests():
    clock = Clock(store=None, enabled=False)
    assert abs((clock.now() - datetime.now(timezone.utc)).total_seconds()) < 1
    with pytest.raises(Forbidden):
        clock.advance(60)
