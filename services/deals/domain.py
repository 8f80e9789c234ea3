"""Pure rules of the sales funnel: stages, defaults, periods. No I/O here."""
from datetime import datetime, timedelta, timezone

from crm_common.ids import new_id
from crm_common.timeutil import period_key

DEFAULT_LEAD_SOURCES = ("website", "referral", "cold_call", "email_campaign", "social",
                        "event", "partner", "other")
DEFAULT_LOST_REASONS = ("price", "competitor", "no_budget", "no_decision", "timing",
                        "product_fit", "unresponsive", "other")
DEFAULT_STAGES = (("Lead in", 10, "open"), ("Qualified", 30, "open"), ("Proposal", 60, "open"),
                  ("Negotiation", 80, "open"), ("Won", 100, "won"), ("Lost", 0, "lost"))
DEFAULT_PROBABILITY = {"open": 50, "won": 100, "lost": 0}
MS_PER_DAY = 86400 * 1000.0


def amount_changes(current, data, items_total=None):
    """The amount beside line items (README "Amount"), as the fields to write besides
    `data` (a validated PATCH): the amount follows the sales service's lines total
    (`items_total` given now, else the deal's last one; None: never had lines) unless
    `amount_override`; an amount typed on a deal with lines sets the override (it stays
    until cleared); `amount_override: false` clears it and the amount is the lines' total
    again; `amount_override: true` pins the amount as it is."""
    out = {}
    lines_total = items_total if items_total is not None else current.get("items_total")
    if items_total is not None and items_total != current.get("items_total"):
        out["items_total"] = items_total
    was = bool(current.get("amount_override"))
    override = was
    if "amount_override" in data:
        override = data["amount_override"]
    elif "amount" in data and lines_total is not None:
        override = True
    if override != was:
        out["amount_override"] = override
    if not override and lines_total is not None and "amount" not in data and (
            items_total is not None or was):
        if current.get("amount") != lines_total:
            out["amount"] = lines_total
    return out


def default_pipeline():
    return {"name": "Sales", "is_default": True, "deleted_at": None, "version": 1,
            "removed_stages": [],
            "stages": build_stages([{"name": n, "probability": p, "kind": k, "rotting_days": None}
                                    for n, p, k in DEFAULT_STAGES], {})}


def build_stages(items, existing):
    """Validated stage input -> stored stages, in order. An item naming an existing stage id
    keeps that id (its deals and history stay attached); one without an id is new."""
    stages = []
    for position, item in enumerate(items):
        stage_id = item.get("id") or new_id()
        probability = item.get("probability")
        if probability is None:
            old = existing.get(stage_id)
            probability = old["probability"] if old and old["kind"] == item.get("kind", "open") \
                else DEFAULT_PROBABILITY[item.get("kind", "open")]
        stages.append({"id": stage_id, "name": item["name"].strip(), "probability": probability,
                       "kind": item.get("kind", "open"), "rotting_days": item.get("rotting_days"),
                       "position": position,
                       "required_fields": list(dict.fromkeys(item.get("required_fields") or []))})
    return stages


def stage_of(pipeline, stage_id):
    return next((s for s in pipeline["stages"] if s["id"] == stage_id), None)


def first_open_stage(pipeline):
    return next(s for s in pipeline["stages"] if s["kind"] == "open")


def funnel_order(pipeline):
    """Open stages in order, then won stages: the path a deal is meant to travel."""
    stages = pipeline["stages"]
    return [s for s in stages if s["kind"] == "open"] + [s for s in stages if s["kind"] == "won"]


def is_rotting(deal, stage, now):
    days = stage.get("rotting_days") if stage else None
    if deal.get("status") != "open" or not days:
        return False
    return now - deal["stage_entered_at"] > timedelta(days=days)


def period_range(period):
    """"2026-11" -> [Nov 1, Dec 1); "2026-Q4" -> [Oct 1, Jan 1), UTC."""
    year, part = period.split("-")
    year = int(year)
    if part.startswith("Q"):
        first = (int(part[1]) - 1) * 3 + 1
        months = 3
    else:
        first, months = int(part), 1
    start = datetime(year, first, 1, tzinfo=timezone.utc)
    end_month = first + months
    end = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def ratio(part, whole, digits=4):
    return round(part / whole, digits) if whole else None


# leads: owner rules, report periods and source costs (pure; used by leads.py / sources.py)
OWNER_REASONS = ("contact_owner", "open_deal_owner", "fixed_user", "round_robin",
                 "least_open_deals", "no_rule")
REASON_TEXT = {"contact_owner": "the contact's owner", "open_deal_owner": "the open deal's owner",
               "fixed_user": "the route's fixed user", "round_robin": "round robin",
               "least_open_deals": "fewest open deals", "no_rule": "no rule"}
MAX_REPORT_BUCKETS = 400


def rule_candidates(rule):
    """The user ids an owner rule chooses from, in the route's order, without repeats
    (contacts resolves a team to its members; a fixed rule may carry `user_id`)."""
    rule = rule or {}
    ids = list(rule.get("user_ids") or [])
    if not ids and rule.get("user_id"):
        ids = [rule["user_id"]]
    return [i for i in dict.fromkeys(ids) if isinstance(i, str) and i]


def round_robin_pick(candidates, n):
    """n = the route's counter after its atomic increment (1 for the first lead)."""
    return candidates[(n - 1) % len(candidates)]


def least_loaded(candidates, open_counts):
    """Fewest open deals wins; a tie goes to the earlier candidate in the route's list."""
    return min(enumerate(candidates), key=lambda ic: (open_counts.get(ic[1], 0), ic[0]))[1]


def month_start(moment):
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)


def next_month(moment):
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc)


def bucket_start(moment, period):
    """Start of the report period holding `moment` (UTC): day, ISO week (Monday), month."""
    day = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return month_start(moment)


def report_buckets(start, end, period):
    """[(key, bucket start, bucket end)] covering [start, end), the first and last clipped
    to the range; period "all" is one bucket. None when there would be too many."""
    if period == "all":
        return [("all", start, end)]
    out = []
    cursor = bucket_start(start, period)
    while cursor < end:
        try:
            following = (next_month(cursor) if period == "month"
                         else cursor + timedelta(days=7 if period == "week" else 1))
        except (OverflowError, ValueError):  # the range ends at the calendar's end
            following = end
        out.append((period_key(cursor, period), max(cursor, start), min(following, end)))
        if len(out) > MAX_REPORT_BUCKETS:
            return None
        cursor = following
    return out


def prorated_costs(costs, start, end):
    """Per currency, the part of each monthly cost that falls in [start, end): a month's
    amount times the share of the month's time inside the range (a whole month counts
    whole), rounded half up to minor units once per currency."""
    from fractions import Fraction
    totals = {}
    for cost in costs or []:
        m_start, m_end = period_range(cost["period"])
        overlap = (min(end, m_end) - max(start, m_start)).total_seconds()
        if overlap <= 0:
            continue
        share = Fraction(int(overlap), int((m_end - m_start).total_seconds()))
        totals[cost["currency"]] = totals.get(cost["currency"], 0) + cost["amount"] * share
    return {currency: int(value + Fraction(1, 2)) for currency, value in totals.items()
            if value > 0}


def lead_summary(source, channel, deal_created, title, owner_id, reason):
    how = "new deal" if deal_created else "joined open deal"
    via = f" via {channel}" if channel and channel != source else ""
    who = f"assigned to {owner_id} by {REASON_TEXT[reason]}" if owner_id else "no owner (no rule)"
    return f"Lead from {source}{via}: {how} \"{title}\", {who}"


def people_of(deal):
    """A deal's contacts with their roles (participants.py), its contact_id the primary one:
    a deal from before the list, or whose contact_id a PATCH changed, shows it as primary."""
    people = [dict(p) for p in deal.get("contacts") or []]
    primary = deal.get("contact_id")
    if primary and primary not in [p["contact_id"] for p in people]:
        people.insert(0, {"contact_id": primary, "role": None, "primary": True})
    for person in people:
        person["primary"] = person["contact_id"] == primary
    return people
