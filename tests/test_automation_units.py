"""The automation engine alone (no I/O): conditions, the rule index, loops, delays in
working hours, date triggers."""
from datetime import date, datetime, timezone

import pytest

from crm_common.errors import ValidationFailed
from services.automation import engine

DEAL_EVENT = {"type": "event", "event": "deals.deal_stage_changed"}


def test_conditions_say_which_one_failed():
    ctx = {"to_stage_id": "s1", "deal": {"amount": 500, "title": "Big Order", "tags": None},
           "contact": {"tags": ["vip"], "custom": {"tier": "gold"}}}
    assert engine.evaluate({"all": [{"field": "to_stage_id", "op": "eq", "value": "s1"},
                                    {"field": "contact.tags", "op": "contains", "value": "vip"},
                                    {"field": "deal.title", "op": "contains", "value": "order"},
                                    {"field": "contact.custom.tier", "op": "in", "value": ["gold"]},
                                    {"field": "deal.tags", "op": "empty"}]}, ctx) == (True, None)
    ok, why = engine.evaluate({"all": [{"field": "deal.amount", "op": "gte", "value": 1000}]}, ctx)
    assert not ok and why == "deal.amount gte 1000 failed (is 500)"
    ok, why = engine.evaluate({"any": [{"field": "deal.amount", "op": "gt", "value": 900},
                                       {"field": "to_stage_id", "op": "ne", "value": "s1"}]}, ctx)
    assert not ok and why.startswith("none of: ")
    assert engine.evaluate({"field": "deal.amount", "op": "gt", "value": "x"}, ctx)[0] is False
    assert engine.test({"field": "d", "op": "lt", "value": "2030-01-01"},
                       {"d": "2026-12-05T10:00:00Z"})


def test_fields_are_checked_against_the_event_contract():
    roots = engine.roots_of_trigger(DEAL_EVENT)
    engine.check_conditions({"field": "deal.amount", "op": "gt", "value": 1}, roots)
    engine.check_conditions({"field": "contact.custom.tier", "op": "eq", "value": 1}, roots)
    for bad in ({"field": "deal.colour", "op": "eq", "value": 1},
                {"field": "colour", "op": "eq", "value": 1},
                {"field": "to_stage_id", "op": "like", "value": 1},
                {"field": "to_stage_id", "op": "in", "value": "x"},
                {"all": []}, {"all": [{"any": [{"all": [{"any": [{"all": [{"any": [
                    {"field": "to_stage_id", "op": "eq", "value": 1}]}]}]}]}]}]}):
        with pytest.raises(ValidationFailed):
            engine.check_conditions(bad, roots)
    with pytest.raises(ValidationFailed):
        engine.roots_of_trigger({"type": "event", "event": "automation.rule_fired"})


def test_templates_are_checked_at_save():
    roots = engine.roots_of_trigger(DEAL_EVENT)
    engine.check_template("{{ deal.title }} for {{ contact.first_name }} ({{ rule.name }})",
                          roots, "t")
    for bad in ("{{ deal.title", "{{ deal.nope }}", "{{ nobody }}", "{% for %}"):
        with pytest.raises(ValidationFailed):
            engine.check_template(bad, roots, "t")


def test_self_loops_are_refused_and_told_apart():
    loop = {"trigger": DEAL_EVENT, "actions": [{"type": "move_deal", "stage_id": "b"}]}
    with pytest.raises(ValidationFailed):
        engine.check_self_loop(loop)
    engine.check_self_loop({**loop, "conditions": {"field": "to_stage_id", "op": "eq", "value": "a"}})
    with pytest.raises(ValidationFailed):  # entering b would match again
        engine.check_self_loop({**loop, "conditions": {"field": "to_stage_id", "op": "in",
                                                      "value": ["a", "b"]}})


def test_rules_are_indexed_by_their_first_equality():
    assert engine.index_key({"all": [{"field": "x", "op": "gt", "value": 1},
                                     {"field": "to_stage_id", "op": "in", "value": ["a", "b"]}]}) \
        == ("to_stage_id", {"a", "b"})
    assert engine.index_key({"any": [{"field": "to_stage_id", "op": "eq", "value": "a"}]}) is None
    assert engine.index_key(None) is None


def test_delays_count_working_hours_in_the_owner_zone():
    friday_evening = datetime(2026, 12, 4, 16, 30, tzinfo=timezone.utc)  # 17:30 in Rome
    hours = {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5]}
    due = engine.due_time(friday_evening, {"minutes": 120, "working_hours": True}, hours, "Europe/Rome")
    assert due == datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)  # Monday 10:30 in Rome
    due = engine.due_time(friday_evening, {"minutes": 0, "at": "10:00"}, hours, "Europe/Rome")
    assert due == datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)  # next working day 10:00
    assert engine.due_time(friday_evening, None, hours, None) == friday_evening


def test_date_triggers_look_up_records_by_day():
    keys = engine.date_keys({"birthday": "1990-12-08", "custom": {"renewal": "2027-01-15"},
                             "created_at": "2026-01-01T00:00:00Z"})
    assert set(keys) == {"birthday:1990-12-08", "birthday:12-08", "custom.renewal:2027-01-15",
                         "custom.renewal:01-15"}
    trigger = {"field": "birthday", "days": 3, "when": "before", "annual": True}
    assert engine.date_target(date(2026, 12, 5), trigger)[0] == "birthday:12-08"
    trigger = {"field": "custom.renewal", "days": 2, "when": "after", "annual": False}
    assert engine.date_target(date(2027, 1, 17), trigger)[0] == "custom.renewal:2027-01-15"


def test_conversations_refusals_split_into_the_clients_and_ours():
    from crm_common.errors import Conflict
    from services.automation.actions import refusal
    assert refusal(Conflict("no", {"reason": "do_not_contact"})) == (
        "skipped", {"reason": "do_not_contact", "message": "no"})
    assert refusal(Conflict("x", {"reason": "opted_out"}))[0] == "skipped"
    assert refusal(Conflict("x", {"reason": "no_mailbox"}))[0] == "failed"
    assert refusal(Conflict("x"))[1]["reason"] == "refused"


def test_default_rules_are_valid_rules():
    from services.automation.operations import DEFAULT_RULES, rule_in
    from crm_common.validation import load
    for payload in DEFAULT_RULES.values():
        data = load(rule_in, payload, json_body=True)
        roots = engine.roots_of_trigger(data["trigger"])
        engine.check_conditions(data.get("conditions"), roots)
        engine.check_actions(data["actions"], roots, engine.record_kind_of_trigger(data["trigger"]))
        engine.check_self_loop(data)
        assert data["enabled"] is False  # a company chooses to send
