"""UTC everywhere; ISO 8601 with an offset on the wire."""
from datetime import date, datetime, timezone


def utcnow():
    # Mongo stores milliseconds: truncate so what we return equals what we read back.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value):
    """A naive datetime from the database is UTC; an aware one is converted."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def to_iso(value):
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def parse_iso(text):
    """Parse an ISO 8601 timestamp; one without an offset is taken as UTC."""
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def period_key(when, period):
    """The report label of the day / ISO week / month that `when` falls in."""
    if period == "day":
        return when.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    return when.strftime("%Y-%m")
