"""The automation engine alone (no I/O): conditions, the rule index, loops, delays in
working hours, date triggers."""
from datetime import date, datetime, timezone

import pytest

from contracts import automation as contract
from crm_common.errors import ValidationFailed
from crm_common.validation import load
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
    assert not ok and why == "all.0: deal.amount gte 1000 failed (is 500)"
    ok, why = engine.evaluate({"any": [{"field": "deal.amount", "op": "gt", "value": 900},
                                       {"field": "to_stage_id", "op": "ne", "value": "s1"}]}, ctx)
    assert not ok and why.startswith("none of: ")
    assert engine.evaluate({"field": "deal.amount", "op": "gt", "value": "x"}, ctx)[0] is False
    assert engine.test({"field": "d", "op": "lt", "value": "2030-01-01"},
                       {"d": "2026-12-05T10:00:00Z"})
    # a number sent for a text field's contains (an API client's JSON) still means its digits
    assert engine.test({"field": "deal.title", "op": "contains", "value": 52552163},
                       {"deal": {"title": "Big 52552163"}})
    assert not engine.test({"field": "deal.title", "op": "contains", "value": True},
                           {"deal": {"title": "Big True"}})


def test_triggers_give_each_fields_kind():
    kinds = dict((name, k) for name, _, k in engine.event_types())["deals.deal_stage_changed"]
    assert kinds["deal.amount"] == "number" and kinds["deal.title"] == "text"
    assert kinds["deal.rotting"] == "boolean" and kinds["deal.created_at"] == "datetime"


def test_nested_groups_evaluate_and_name_the_failed_path():
    """all(stage is s1, any(amount > 900, all(vip tag, tier gold))): the run log's reason
    names the failed test by its path in the tree."""
    ctx = {"to_stage_id": "s1", "deal": {"amount": 500},
           "contact": {"tags": ["vip"], "custom": {"tier": "silver"}}}
    rule = {"all": [{"field": "to_stage_id", "op": "eq", "value": "s1"},
                    {"any": [{"field": "deal.amount", "op": "gt", "value": 900},
                             {"all": [{"field": "contact.tags", "op": "contains", "value": "vip"},
                                      {"field": "contact.custom.tier", "op": "eq", "value": "gold"}]}]}]}
    ok, why = engine.evaluate(rule, ctx)
    assert not ok
    assert why == ("all.1: none of: all.1.any.0: deal.amount gt 900 failed (is 500); "
                   "all.1.any.1.all.1: contact.custom.tier eq 'gold' failed (is 'silver')")
    assert engine.evaluate(rule, {**ctx, "contact": {"tags": ["vip"], "custom": {"tier": "gold"}}}) == (True, None)
    assert engine.evaluate(rule, {**ctx, "deal": {"amount": 1000}}) == (True, None)
    ok, why = engine.evaluate(rule, {**ctx, "to_stage_id": "s2"})
    assert why == "all.0: to_stage_id eq 's1' failed (is 's2')"
    engine.check_conditions(rule, engine.roots_of_trigger(DEAL_EVENT))


def test_conditions_nest_at_most_max_nesting_groups():
    roots = engine.roots_of_trigger(DEAL_EVENT)

    def nested(groups):
        node = {"field": "deal.amount", "op": "gt", "value": 1}
        for i in range(groups):
            node = {("any", "all")[i % 2]: [node]}
        return node

    rule = {"name": "deep", "trigger": DEAL_EVENT, "actions": [{"type": "add_tag", "tag": "x"}]}
    load(contract.RuleIn(), {**rule, "conditions": nested(contract.MAX_NESTING)})
    engine.check_conditions(nested(contract.MAX_NESTING), roots)
    for groups in (contract.MAX_NESTING + 1, 2000):  # 2000: refused, not a RecursionError
        with pytest.raises(ValidationFailed) as caught:
            load(contract.RuleIn(), {**rule, "conditions": nested(groups)})
        assert "nest at most" in str(caught.value.details)
    with pytest.raises(ValidationFailed):
        engine.check_conditions(nested(contract.MAX_NESTING + 1), roots)
    assert contract.nesting_depth(nested(3)) == 3
    assert contract.nesting_depth({"field": "x", "op": "empty"}) == 0


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


def test_group_commit_gathers_concurrent_writes_and_fails_them_together():
    import threading
    from crm_common.group_commit import GroupCommit
    flushed, gate = [], threading.Event()

    def flush(items):
        flushed.append(list(items))
        if len(flushed) == 1:
            gate.wait(5)  # the first flush is slow: the others gather meanwhile
        if "bad" in items:
            raise RuntimeError("down")
        return [f"ok {i}" for i in items]

    commit = GroupCommit(flush)
    results = {}

    def submit(item):
        try:
            results[item] = commit.submit(item)
        except RuntimeError as exc:
            results[item] = str(exc)

    first = threading.Thread(target=submit, args=("a",))
    first.start()
    while not flushed:
        pass
    others = [threading.Thread(target=submit, args=(i,)) for i in ("b", "c", "bad")]
    for t in others:
        t.start()
    while len(commit.pending) < 3:
        pass
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert flushed[0] == ["a"] and sorted(flushed[1]) == ["b", "bad", "c"]
    assert results == {"a": "ok a", "b": "down", "c": "down", "bad": "down"}
    assert commit.submit("d") == "ok d" and not commit.flushing


def test_the_intake_keeps_one_copy_per_record_and_only_the_events_dry_runs_use():
    from types import SimpleNamespace
    from services.automation import operations

    class Store:
        def __init__(self):
            self.kept = None

        def rules_version(self):
            return "intake-test"

        def enabled_rules(self):
            return []

        def rule_event_types(self):
            return ["telephony.call_missed"]

        def keep_intake(self, events, copies, touches):
            self.kept = (events, copies, touches)

    at = [datetime(2026, 12, 1, h, tzinfo=timezone.utc) for h in range(4)]

    def item(type_key, records):
        return {"event": {"_id": type_key, "type_key": type_key, "occurred_at": at[0], "data": {}},
                "records": records}

    deal = lambda n, when: {"kind": "deal", "record": {"id": "d1", "n": n}, "at": when}  # noqa: E731
    store = Store()
    settings = SimpleNamespace(keep_events_of=("deals",))
    operations.CACHE.version = None
    taken = operations.flush_intake(store, settings, [
        item("deals.deal_updated", {"deal:d1": deal(2, at[2])}),
        item("deals.deal_created", {"deal:d1": deal(1, at[1])}),
        item("telephony.call_answered", {"contact:c1": {"touch": at[3]}}),
        item("telephony.call_missed", {"contact:c2": {"kind": "contact", "record": {"id": "c2"},
                                                      "at": at[1], "quiet_since": at[0]}}),
        item("telephony.call_started", {"contact:c2": {"touch": at[2]}})])
    batch, copies, touches = store.kept
    assert taken == (operations.CACHE, {})
    # the kept events in one document, with their types and latest time (dry runs' query)
    assert [e["_id"] for e in batch["events"]] == ["deals.deal_updated", "deals.deal_created",
                                                   "telephony.call_missed"]
    assert batch["types"] == ["deals.deal_created", "deals.deal_updated",
                              "telephony.call_missed"]
    assert batch["n"] == 3 and batch["last"] == at[0]
    assert copies["deal:d1"]["record"]["n"] == 2  # the newest copy, written once
    assert copies["contact:c2"]["quiet_since"] == at[2]  # the touch folded into the copy
    assert touches == {"contact:c1": at[3]}
    operations.CACHE.version = None


def test_record_copies_that_lost_a_first_upsert_race_are_written_again():
    """keep_intake's bulk write: an upsert refused as a duplicate key (another replica's
    first upsert of the key won the race) is written again, once, and then guarded by
    `at` like the others; any other write error is raised."""
    from pymongo.errors import BulkWriteError
    from services.automation.store import AutomationStore

    class Records:
        def __init__(self, errors):
            self.errors, self.calls = list(errors), []

        def bulk_write(self, ops, ordered):
            self.calls.append([op._filter["_id"] for op in ops])
            errors = self.errors.pop(0) if self.errors else []
            if errors:
                raise BulkWriteError({"writeErrors": errors, "nInserted": 0})

    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    copies = {k: {"kind": "deal", "record": {"id": k}, "at": at, "date_keys": []}
              for k in ("deal:a", "deal:b", "deal:c")}
    store = AutomationStore.__new__(AutomationStore)
    store.records = Records([[{"index": 1, "code": 11000}, {"index": 2, "code": 11000}],
                             [{"index": 0, "code": 11000}]])
    store.keep_intake(None, copies, {"contact:t": at})
    assert store.records.calls == [["deal:a", "deal:b", "deal:c", "contact:t"],
                                   ["deal:b", "deal:c"]]
    store.records = Records([[{"index": 0, "code": 11000}, {"index": 1, "code": 121}]])
    with pytest.raises(BulkWriteError):
        store.keep_intake(None, copies, {})


RULE = {"name": "r", "trigger": DEAL_EVENT,
        "conditions": {"all": [{"field": "to_stage_id", "op": "eq", "value": "s1"},
                               {"any": [{"field": "deal.amount", "op": "gte", "value": 10},
                                        {"field": "contact.tags", "op": "contains", "value": "vip"},
                                        {"field": "deal.source", "op": "empty"}]}]},
        "actions": [{"type": "create_task", "title": "Call {{ deal.title }}", "due_in_minutes": 5},
                    {"type": "set_field", "field": "custom.tier", "value": ["a", "b"]},
                    {"type": "create_invoice", "options": {"language": "en"}, "send": True}]}


def refused(schema, body):
    """The per-field errors of a body the contract refuses (what the gateway answers 422)."""
    with pytest.raises(ValidationFailed) as caught:
        load(schema, body, json_body=True)
    return caught.value.details["fields"]


def test_the_contract_types_actions_conditions_and_segment_filters():
    """What the gateway checks before any RPC: the typed unions of contracts/automation.py."""
    rule_in = contract.RuleIn()
    assert load(rule_in, RULE, json_body=True)["actions"] == RULE["actions"]
    actions = {"unknown type": [{"type": "launch_rocket"}],
               "missing field": [{"type": "move_deal"}],
               "wrong type": [{"type": "create_task", "title": "t", "due_in_minutes": "5"}],
               "unknown key": [{"type": "webhook", "url": "https://x.test", "colour": 1}],
               "not an object": ["notify_user"],
               "type an object": [{"type": {"a": 1}}], "type a list": [{"type": ["move_deal"]}],
               "bad channel": [{"type": "send_message", "channel": "pigeon", "body": "x"}]}
    for name, bad in actions.items():
        assert "actions" in refused(rule_in, {**RULE, "actions": bad}), name
    assert refused(rule_in, {**RULE, "actions": [{"type": "move_deal"}]}) == {
        "actions": {0: {"stage_id": ["Missing data for required field."]}}}
    conditions = {"unknown op": {"field": "to_stage_id", "op": "like", "value": 1},
                  "in needs a list": {"field": "to_stage_id", "op": "in", "value": "x"},
                  "gt needs a number or date": {"field": "deal.amount", "op": "gt", "value": True},
                  "value of empty": {"field": "deal.source", "op": "empty", "value": 1},
                  "eq without value": {"field": "to_stage_id", "op": "eq"},
                  "op an object": {"field": "to_stage_id", "op": {"eq": 1}, "value": 1},
                  "empty group": {"all": []}, "extra key": {"any": [], "all": []}}
    for name, bad in conditions.items():
        assert "conditions" in refused(rule_in, {**RULE, "conditions": bad}), name
    # a field the trigger's records do not have, named where it is
    errors = refused(rule_in, {**RULE, "conditions": {"all": [
        {"field": "to_stage_id", "op": "eq", "value": "s"},
        {"field": "deal.colour", "op": "eq", "value": "red"}]}})
    assert "deal.colour" in errors["conditions.all.1.field"][0]
    assert "trigger" in refused(rule_in, {**RULE, "trigger": {"type": {}, "event": "x"}})
    assert "trigger.event" in refused(rule_in, {**RULE, "trigger": {"type": "event",
                                                                    "event": "deals.nope"}})
    segment_in = contract.SegmentIn()
    assert load(segment_in, {"name": "s", "filters": {"tag": "vip", "status": "lead"}},
                json_body=True)["filters"] == {"tag": "vip", "status": "lead"}
    for bad in ({"colour": "red"}, {"tag": 5}, {"status": "asleep"},
                {"created_after": "yesterday"}, {"bought_from": "2026-01-01"}):
        assert "filters" in refused(segment_in, {"name": "s", "filters": bad}), bad


def test_the_document_describes_the_unions():
    import importlib

    from gateway.app import OPS_PATHS, ROUTE_MODULES
    from gateway.openapi import build_spec
    from gateway.routes import api
    for name in ROUTE_MODULES:
        importlib.import_module(f"gateway.routes.{name}")
    schemas = build_spec(api, OPS_PATHS)["components"]["schemas"]
    actions = schemas["RuleIn"]["properties"]["actions"]["items"]
    assert actions["discriminator"]["propertyName"] == "type"
    assert set(actions["discriminator"]["mapping"]) == set(contract.ACTION_TYPES)
    assert schemas["MoveDealAction"]["required"] == ["stage_id", "type"]
    assert schemas["MoveDealAction"]["additionalProperties"] is False
    tests = schemas["AllConditions"]["properties"]["all"]["items"]["oneOf"]
    assert {"$ref": "#/components/schemas/CompareCondition"} in tests
    assert schemas["InCondition"]["properties"]["value"]["type"] == "array"
    assert "tag" in schemas["SegmentFilters"]["properties"]
    assert schemas["SegmentFilters"]["dependencies"]["bought_from"] == ["bought_product"]
    assert schemas["RuleOut"]["properties"]["actions"]["items"]["discriminator"]


def test_related_records_are_read_once_per_flush():
    """The contacts of the deals whose events meet a rule: one read for the whole flush,
    none when no rule is met."""
    from types import SimpleNamespace

    from services.automation import operations
    rule = {"_id": "r1", "trigger": DEAL_EVENT, "enabled": True,
            "conditions": {"field": "to_stage_id", "op": "eq", "value": "s1"},
            "actions": [{"type": "notify_user", "message": "x"}]}

    class Store:
        reads = []

        def rules_version(self):
            return "related-test"

        def enabled_rules(self):
            return [rule]

        def rule_event_types(self):
            return ["deals.deal_stage_changed"]

        def keep_intake(self, events, copies, touches):
            pass

        def get_records(self, keys):
            self.reads.append(keys)
            return {"contact:c1": {"id": "c1", "first_name": "Ann"}}

    def item(stage, contact):
        data = {"to_stage_id": stage, "contact_id": contact,
                "deal": {"id": "d", "contact_id": contact}}
        return {"event": {"_id": stage + contact, "type_key": "deals.deal_stage_changed",
                          "occurred_at": datetime(2026, 12, 1, tzinfo=timezone.utc),
                          "data": data}, "records": {}}

    operations.CACHE.version = None
    store = Store()
    out = operations.flush_intake(store, SimpleNamespace(keep_events_of=()), [
        item("s1", "c1"), item("s1", "c2"), item("s2", "c3")])
    assert store.reads == [["contact:c1", "contact:c2"]]  # s2 meets no rule: not read
    cache, related = out
    automation = operations.Automation(store, None, None, None, None, None)
    ctx = automation._context(item("s1", "c1")["event"]["data"], related)
    assert ctx["contact"]["first_name"] == "Ann"
    assert "contact" not in automation._context(item("s1", "c2")["event"]["data"], related)
    operations.CACHE.version = None


def test_dry_run_events_are_read_from_batches_newest_first_each_once():
    """The kept events are one document per group commit: a dry run gets the newest
    `limit` of a type since a time, each once (an event redelivered into a later batch),
    with the one-event documents of before, and reads no batch older than it needs."""
    from services.automation.store import AutomationStore

    at = lambda h: datetime(2026, 12, 1, h, tzinfo=timezone.utc)  # noqa: E731
    ev = lambda i, h, t="deals.deal_created": {"_id": f"e{i}", "type_key": t,  # noqa: E731
                                               "occurred_at": at(h), "data": {}}
    batches = [{"_id": "b1", "types": ["deals.deal_created"], "last": at(3),
                "events": [ev(1, 1), ev(2, 3)]},
               {"_id": "b2", "types": ["deals.deal_created", "deals.deal_won"], "last": at(6),
                "events": [ev(3, 5), ev(4, 6, "deals.deal_won"), ev(2, 3)]},
               {"_id": "b3", "types": ["deals.deal_created"], "last": at(9),
                "events": [ev(5, 9), ev(6, 8)]}]
    legacy = [{**ev(0, 7), "_id": "old"}]
    read = []

    class Cursor(list):
        def sort(self, key, direction=None):
            return self

        def limit(self, n):
            return Cursor(self[:n])

        def __iter__(self):
            for doc in list.__iter__(self):
                read.append(doc["_id"])
                yield doc

    class Events:
        def find(self, query):
            if "types" in query:
                return Cursor(sorted((b for b in batches if query["types"] in b["types"]
                                      and b["last"] >= query["last"]["$gte"]),
                                     key=lambda b: b["last"], reverse=True))
            return Cursor(e for e in legacy if e["type_key"] == query["type_key"]
                          and e["occurred_at"] >= query["occurred_at"]["$gte"])

    store = AutomationStore.__new__(AutomationStore)
    store.events = Events()
    found = store.events_since("deals.deal_created", at(2), 10)
    assert [e["_id"] for e in found] == ["e5", "e6", "old", "e3", "e2"]  # e1 before, e2 once
    read.clear()
    # the newest 2: b3 holds them, and b2's latest (6:00) is older: the reading stops there
    assert [e["_id"] for e in store.events_since("deals.deal_created", at(0), 2)] == \
        ["e5", "e6"]
    assert "b1" not in read
