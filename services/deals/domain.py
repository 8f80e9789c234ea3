"""Pure rules of the sales funnel: stages, defaults, periods. No I/O here."""
from datetime import datetime, timedelta, timezone

from crm_common.ids import new_id

DEFAULT_LEAD_SOURCES = ("website", "referral", "cold_call", "email_campaign", "social",
                        "event", "partner", "other")
DEFAULT_LOST_REASONS = ("price", "competitor", "no_budget", "no_decision", "timing",
                        "product_fit", "unresponsive", "other")
DEFAULT_STAGES = (("Lead in", 10, "open"), ("Qualified", 30, "open"), ("Proposal", 60, "open"),
                  ("Negotiation", 80, "open"), ("Won", 100, "won"), ("Lost", 0, "lost"))
DEFAULT_PROBABILITY = {"open": 50, "won": 100, "lost": 0}


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
                       "position": position})
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
