"""Pure task logic: when each notice of a task is due, the next occurrence of a recurring
task, the bounds of a user's day. No I/O here, so it is unit-tested directly."""
import calendar
from datetime import datetime, time, timedelta, timezone

from contracts.tasks import FREQUENCIES, KINDS, PRIORITIES, STATUSES  # noqa: F401
from crm_common.timeutil import to_iso
from crm_common.workhours import due_in_working_hours, zone  # noqa: F401

# kinds whose completion is a real touch with the customer (moves last_contacted_at)
CONTACT_KINDS = ("call", "meeting")


def notices(task, grace_minutes):
    """Every notice the task's current deadline calls for, as (key, kind, at, extra).

    The key names the deadline it belongs to, so moving due_at re-arms every notice and a
    notice is claimed at most once per deadline whatever the number of replicas."""
    due = task.get("due_at")
    if due is None:
        return []
    stamp = to_iso(due)
    out = [(f"{task['_id']}:due_soon:{m}:{stamp}", "task_due_soon", due - timedelta(minutes=m),
            {"offset_minutes": m}) for m in sorted(set(task.get("reminders") or []))]
    out.append((f"{task['_id']}:overdue:{stamp}", "task_overdue", due, {}))
    out.append((f"{task['_id']}:escalated:{stamp}", "task_escalated",
                due + timedelta(minutes=grace_minutes), {}))
    return out


def due_notices(task, now, grace_minutes):
    """The notices to send at `now`: a reminder only while the task is not yet due (one
    found late, after the deadline, is pointless), the overdue and escalation once passed."""
    if task.get("status") != "open":
        return []
    due = task.get("due_at")
    return [n for n in notices(task, grace_minutes)
            if n[2] <= now and (n[1] != "task_due_soon" or now < due)]


def first_alarm(task, grace_minutes):
    """When the timer must first look at the task (None: never)."""
    if task.get("status") != "open":
        return None
    times = [n[2] for n in notices(task, grace_minutes)]
    return min(times) if times else None


def next_alarm(task, now, grace_minutes):
    """When the timer must look at the task again after handling it at `now`."""
    if task.get("status") != "open":
        return None
    times = [n[2] for n in notices(task, grace_minutes) if n[2] > now]
    return min(times) if times else None


def add_months(when, months):
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def next_occurrence(due_at, recurrence):
    """The next due time of a recurring task, or None once past `until`."""
    interval = recurrence.get("interval") or 1
    freq = recurrence["freq"]
    if freq == "daily":
        nxt = due_at + timedelta(days=interval)
    elif freq == "weekly":
        nxt = due_at + timedelta(weeks=interval)
    else:
        nxt = add_months(due_at, interval)
    until = recurrence.get("until")
    if until is not None and nxt > until:
        return None
    return nxt


def day_bounds(now, tz_name=None):
    """[start, end) of the day that contains `now` in the user's time zone, in UTC."""
    tz = zone(tz_name)
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time(0), tzinfo=tz)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)
