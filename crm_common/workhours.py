"""Time zones and working hours (tasks' first-touch deadlines, automation's delays)."""
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name):
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def due_in_working_hours(start, minutes, hours=None):
    """`minutes` of working time after `start`: with `hours` ({start, end "HH:MM", days ISO
    weekdays, day_hours [{day, start, end}] for days with other hours, timezone}) the clock only runs inside them, so a lead at 17:55 with 15 minutes
    is due at 09:10 the next working day; without, plain minutes."""
    if not hours:
        return start + timedelta(minutes=minutes)
    tz = zone(hours.get("timezone"))
    open_at = time.fromisoformat(hours.get("start", "09:00"))
    close_at = time.fromisoformat(hours.get("end", "18:00"))
    days = set(hours.get("days") or [1, 2, 3, 4, 5])
    # {ISO weekday: (open, close)} of the days with their own hours
    own = {d["day"]: (time.fromisoformat(d["start"]), time.fromisoformat(d["end"]))
           for d in hours.get("day_hours") or []}
    local = start.astimezone(tz)
    left = timedelta(minutes=minutes)
    for _ in range(400):  # at most a year of days
        opens, closes = own.get(local.isoweekday(), (open_at, close_at))
        day_open = datetime.combine(local.date(), opens, tzinfo=tz)
        day_close = datetime.combine(local.date(), closes, tzinfo=tz)
        if local.isoweekday() in days and local < day_close:
            begin = max(local, day_open)
            if begin + left <= day_close:
                return (begin + left).astimezone(timezone.utc)
            left -= day_close - begin
        local = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
    return start + timedelta(minutes=minutes)  # no working day at all: plain minutes
