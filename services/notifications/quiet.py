"""Quiet hours: a daily window in the user's time zone during which non-urgent messages
wait. `deliver_after` is when a message created at `now` may go out."""
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_hhmm(text):
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def zone(name):
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def deliver_after(now, quiet_hours, tz_name):
    """`now` if outside the window (or no window), else the window's end, in UTC.

    The window may cross midnight (22:00-07:00). Local times are resolved in the user's
    zone each day, so daylight-saving changes move the end with the clock."""
    if not quiet_hours or not quiet_hours.get("start") or not quiet_hours.get("end"):
        return now
    start, end = parse_hhmm(quiet_hours["start"]), parse_hhmm(quiet_hours["end"])
    if start == end:
        return now
    tz = zone(tz_name)
    local = now.astimezone(tz)
    today = local.date()
    # the windows that may contain `local`: the one starting yesterday and the one today
    for day in (today - timedelta(days=1), today):
        begin = datetime.combine(day, start, tz)
        finish = datetime.combine(day if end > start else day + timedelta(days=1), end, tz)
        if begin <= local < finish:
            return finish.astimezone(timezone.utc)
    return now
