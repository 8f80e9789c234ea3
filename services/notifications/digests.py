"""Scheduled report digests (preferences `digest`): when one is due, which period it covers,
and the reports it carries, read from their owners with the subscriber's own visibility (an
agent's digest holds what the agent may see, a manager's their team)."""
from datetime import timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_common.context import BUILT_IN_ROLES
from crm_common.timeutil import to_iso

# a digest not sent at its hour (the platform down) still goes out this long after it
DUE_WINDOW = timedelta(hours=6)
# reports with amounts: a custom role's field grants may hide them, so its digest leaves
# them out (the gateway, not this service, knows those grants)
WITH_AMOUNTS = ("sales", "forecast")
# the funnel of each pipeline, the first ones (by the deals service's order) when there are more
MAX_FUNNELS = 10


def zone(name):
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def latest_period(now, digest, tz_name):
    """(key, start, end) of the latest period that ended at or before `now`, in the user's
    zone (wall-clock days, so a period across a DST change is 23 or 25 hours): daily, the
    day before the last time it was its hour; weekly, the 7 days before the last time it
    was its weekday's hour. The key names the day the period ends."""
    days = 7 if digest.get("frequency") == "weekly" else 1
    local = now.astimezone(zone(tz_name))
    end = local.replace(hour=digest.get("hour", 8), minute=0, second=0, microsecond=0)
    if days == 7:
        end -= timedelta(days=(local.weekday() - digest.get("weekday", 0)) % 7)
    if end > local:
        end -= timedelta(days=days)
    return f"{digest.get('frequency', 'daily')}:{end.date().isoformat()}", \
        end - timedelta(days=days), end


def due_period(now, digest, tz_name):
    """The latest period (above) of a digest that is on, when `now` is at most DUE_WINDOW
    after its end (it is due: sent once per period); else None."""
    if (digest or {}).get("frequency") not in ("daily", "weekly"):
        return None
    period = latest_period(now, digest, tz_name)
    return period if now - period[2] < DUE_WINDOW else None


def reports_of(user, wanted):
    return [r for r in wanted if user.get("role") in BUILT_IN_ROLES or r not in WITH_AMOUNTS]


def gather(call, reports, start, end):
    """{report: its answer} for the period, each asked of its owner by `call(service,
    method, params)` (raises when an owner does not answer: the digest is tried again)."""
    period = {"from": to_iso(start), "to": to_iso(end)}
    out = {}
    if "sales" in reports:
        out["sales"] = call("deals", "sales_report", {"group_by": "owner", **period})
    if "forecast" in reports:
        out["forecast"] = call("deals", "forecast_report", {})
    if "tasks" in reports:
        out["tasks"] = call("tasks", "report", {"group_by": "assignee", **period})
    if "calls" in reports:
        out["calls"] = call("telephony", "calls_report", {"group_by": "agent", **period})
    if "funnel" in reports:
        pipelines = call("deals", "list_pipelines", {"limit": MAX_FUNNELS}).get("items") or []
        out["funnel"] = [{"pipeline": p.get("name") or p.get("id"),
                          **call("deals", "funnel_report", {"pipeline_id": p["id"], **period})}
                         for p in pipelines]
    return out


def percent(share):
    return "-" if share is None else f"{share * 100:.0f}%"


def money(minor, currency):
    return f"{(minor or 0) / 100:,.2f} {currency}"


def readable(data, names):
    """The reports as rows a template prints: people by name, money in units."""
    name = lambda user_id: names.get(user_id) or user_id or "-"  # noqa: E731
    out = {}
    if "sales" in data:
        out["sales"] = [{"who": name(r.get("key")), "won": r.get("won_count", 0),
                         "lost": r.get("lost_count", 0),
                         "amounts": ", ".join(money(a["won_amount"], a["currency"])
                                              for a in r.get("amounts") or [])}
                        for r in data["sales"].get("rows") or []]
    if "forecast" in data:
        out["forecast"] = [{"month": r.get("month") or "-", "open": r.get("open_count", 0),
                            "amount": money(r.get("open_amount"), r["currency"]),
                            "weighted": money(r.get("weighted_amount"), r["currency"])}
                           for r in data["forecast"].get("rows") or []]
    if "tasks" in data:
        out["tasks"] = [{"who": name(r.get("assignee_id")), "done": r.get("done", 0),
                         "open": r.get("open", 0), "overdue": r.get("overdue", 0)}
                        for r in data["tasks"].get("items") or []]
    if "calls" in data:
        out["calls"] = [{"who": name(r.get("key")), "calls": r.get("calls", 0),
                         "answered": r.get("answered", 0), "missed": r.get("missed", 0)}
                        for r in data["calls"].get("rows") or []]
        out["missed_not_called_back"] = data["calls"].get("missed_not_called_back", 0)
    if "funnel" in data:
        # per pipeline: its stages in order with the deals that entered each in the period,
        # the share of them that went on to the next stage and that were won
        out["funnel"] = [{"pipeline": f["pipeline"], "deals": f.get("deals", 0),
                          "stages": [{"name": s.get("name") or "-", "kind": s.get("kind"),
                                      "entered": s.get("entered", 0), "won": s.get("won", 0),
                                      "to_next": percent(s.get("conversion_to_next")),
                                      "to_won": percent(s.get("conversion_to_won"))}
                                     for s in f.get("stages") or []]}
                         for f in data["funnel"]]
    return out
