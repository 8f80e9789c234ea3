"""Automation speed: events per second evaluated against 200 enabled rules through the
service (events published on the broker, handled by the automation process: kept for dry
runs, records' copies updated, every rule of the event type evaluated), beside the
evaluator alone in this process (engine.evaluate over the same rules and events).

    .venv/bin/python bench/bench_automation.py [--events 2000] [--rules 200] [--calls 2000]
                                                [--in-process-only] [--alone]
                                                [--profile /tmp/automation-profile]
    .venv/bin/python bench/bench_automation.py --events 0 --campaign 50000 [--rate 1200]
    .venv/bin/python bench/bench_automation.py --upserts 3000

Starts an isolated stack (tests/stack.py). The rules' conditions fail for most events and
skips are not logged, so the figure is the engine's cost, not the actions'. Then call
events no rule listens to (telephony's ringing path), which automation must pass cheaply.
--campaign: contacts (copies of one made through the API), a campaign to all of them (queue time, then the rate
of SMS reaching a local gateway for a minute), and a smaller one sent to its end (each
recipient once, counts adding up).
--upserts: only the database's CPU per upsert of a record copy, by the form of the upsert,
on a SecantusDB of its own (no stack, no lock needed).
"""
import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import Platform, cpu_note, cpu_seconds, load_average, proc_stats  # noqa: E402

STAGES = [f"stage-{i}" for i in range(40)]


def rule_body(n):
    return {"name": f"bench {n}", "enabled": True, "log_skips": False,
            "trigger": {"type": "event", "event": "deals.deal_stage_changed"},
            "conditions": {"all": [
                {"field": "to_stage_id", "op": "eq", "value": STAGES[n % len(STAGES)]},
                {"field": "deal.amount", "op": "gt", "value": 10 ** 9},
                {"any": [{"field": "deal.source", "op": "in", "value": ["web", "ads"]},
                         {"field": "contact.tags", "op": "contains", "value": "vip"}]}]},
            "actions": [{"type": "notify_user", "message": "{{ deal.title }}"}]}


def event_data(n):
    deal_id = f"bench-deal-{n % 500}"
    return {"deal": {"id": deal_id, "title": f"Deal {n}", "amount": random.randint(1, 10 ** 6),
                     "currency": "EUR", "pipeline_id": "p", "stage_id": STAGES[n % len(STAGES)],
                     "status": "open", "source": "web", "owner_id": "u1"},
            "deal_id": deal_id, "pipeline_id": "p", "from_stage_id": None,
            "to_stage_id": STAGES[n % len(STAGES)], "owner_id": "u1"}


class RulesOnly:
    """What the service's rule cache reads of its store."""

    def __init__(self, rules):
        self.rules = [dict(r, _id=str(i)) for i, r in enumerate(rules)]

    def rules_version(self):
        return 1

    def enabled_rules(self):
        return self.rules

    def rule_event_types(self):
        return sorted({r["trigger"].get("event") for r in self.rules} - {None})


def in_process(rules, events):
    from services.automation import engine
    from services.automation.operations import RuleCache
    cache = RuleCache().get(RulesOnly(rules))
    for label, candidates in (
            ("every rule evaluated", lambda data: rules),
            ("rules looked up by value (service)",
             lambda data: cache.rules_for("deals.deal_stage_changed", data))):
        started, cpu = time.perf_counter(), time.process_time()
        for data in events:
            for rule in candidates(data):
                engine.evaluate(rule["conditions"], data)
        seconds = time.perf_counter() - started
        print(f"  evaluator alone: {label:<36} {len(events) / seconds:>9.0f} events/s x "
              f"{len(rules)} rules   cpu ms/event="
              f"{1000 * (time.process_time() - cpu) / len(events):.3f}", flush=True)


def service_logic(rules, events):
    """What automation's handler does in Python per event, without its broker or database:
    the event loaded through its contract, then what the service's handler does with a
    batch of 100 (Automation.take_in: records' copies prepared; per event the rules looked
    up and the matched ones' conditions evaluated) with a store that writes nothing. The rest of the process's CPU per event is nameko, kombu, pymongo."""
    from contracts.events import load_event
    from services.automation import operations
    from crm_common.timeutil import utcnow

    class Store(RulesOnly):
        def keep_intake(self, events, copies, touches):
            pass

        def get_record(self, key):
            return None

        def get_records(self, keys):
            return {}

        def claim_run(self, run):
            return True

        def get_user(self, user_id):
            return None

    class Settings:
        keep_events_of, loop_limit, lease_s = ("deals",), 5, 120

    class Clock:
        now = staticmethod(utcnow)

    operations.CACHE = operations.RuleCache()
    automation = operations.Automation(Store(rules), None, Clock(), Settings(), None, None)
    wire = bodies("deals", "deal_stage_changed", events)
    cpu = time.process_time()
    loaded = [load_event("deals", "deal_stage_changed", body) for body in wire]
    load_ms = 1000 * (time.process_time() - cpu) / len(wire)
    cpu = time.process_time()
    for i in range(0, len(loaded), 100):
        batch = loaded[i:i + 100]
        taken = automation.take_in(batch)
        for event in batch:
            automation.fire(event, 0, taken)
    handle_ms = 1000 * (time.process_time() - cpu) / len(wire)
    print(f"  automation's Python alone: contract load {load_ms:.3f} ms/event, handler "
          f"{handle_ms:.3f} ms/event (no broker, no database)", flush=True)


def copy_upserts(n, rounds=2, batch=100):
    """The database's CPU per upsert of a record copy (what keep_intake writes per record
    of a batch), on a SecantusDB of its own: `n` copies of 500 deals (as the deal events
    carry them) in unordered bulk writes of `batch`, into a collection with `records`'
    3 sparse indexes, for each form: the store's (`upsert_if_newer`: by `_id`, the guard
    in the update), the plain compare-and-set filter `{_id, at: {$lte}}` it replaces, and
    `{_id}` alone with no guard (not correct: the floor)."""
    from datetime import datetime, timedelta, timezone
    from pymongo import MongoClient, UpdateOne
    from pymongo.errors import BulkWriteError
    from services.automation.operations import Automation
    from services.automation.store import TIME_FIELDS, copy_upsert
    from tests.stack import start_secantus, stop_secantus

    tick, t0 = os.sysconf("SC_CLK_TCK"), datetime(2026, 12, 1, tzinfo=timezone.utc)

    def cpu(pid):
        fields = proc_stats()[pid][1]
        return (int(fields[11]) + int(fields[12])) / tick

    def operators(doc):
        empty = [f for f in TIME_FIELDS if f in doc and not doc[f]]
        return {"$set": {k: v for k, v in doc.items() if k not in empty},
                **({"$unset": {f: "" for f in empty}} if empty else {})}

    forms = {
        "upsert_if_newer (the store's)": copy_upsert,
        "{_id, at: {$lte}} (before)": lambda key, doc: UpdateOne(
            {"_id": key, "at": {"$lte": doc["at"]}}, operators(doc), upsert=True),
        "{_id} alone (no guard)": lambda key, doc: UpdateOne(
            {"_id": key}, operators(doc), upsert=True)}
    copies = []
    for i, data in enumerate(event_data(n) for n in range(n)):
        event = {"type": "deal_stage_changed", "data": data}
        copies += Automation._records_of(event, data, t0 + timedelta(milliseconds=i)).items()
    proc, storage, url = start_secantus(os.devnull)
    try:
        client = MongoClient(url, tz_aware=True)
        print(f"  copy upserts, {n} in bulk writes of {batch} (SecantusDB of its own; "
              f"{load_average()}):", flush=True)
        for round_ in range(rounds):
            for i, (name, form) in enumerate(forms.items()):
                records = client["bench_upserts"][f"records_{round_}_{i}"]
                for field in ("quiet_since", "stage_since", "date_keys"):
                    records.create_index(field, sparse=True)
                before, started = cpu(proc.pid), time.perf_counter()
                for start in range(0, len(copies), batch):
                    try:
                        records.bulk_write([form(key, doc) for key, doc
                                            in dict(copies[start:start + batch]).items()],
                                           ordered=False)
                    except BulkWriteError:  # an older copy refused by the plain filter
                        pass
                spent, seconds = cpu(proc.pid) - before, time.perf_counter() - started
                print(f"    {name:<32} {1000 * spent / len(copies):.3f} ms of its CPU per "
                      f"upsert ({1000 * seconds / len(copies):.3f} ms wall)", flush=True)
    finally:
        stop_secantus(proc, storage)


def unbind_others(stack, source, event_type):
    """Unbinds every queue but automation's from `<source>.events` for `event_type`, so
    only automation consumes what is published next (rabbitmqctl lists the bindings)."""
    import subprocess
    from kombu import Connection
    vhost = stack.vhost.name
    listed = subprocess.run(["rabbitmqctl", "list_bindings", "-p", vhost, "--quiet",
                             "source_name", "destination_name", "routing_key"],
                            capture_output=True, text=True, timeout=60).stdout
    others = [line.split("\t")[1] for line in listed.splitlines()
              if line.startswith(f"{source}.events\t") and line.endswith(f"\t{event_type}")
              and "--automation." not in line]
    with Connection(stack.amqp_uri) as conn:
        for queue in others:
            conn.default_channel.queue_unbind(queue, f"{source}.events", event_type)
    return others


def drain(stack, queues, timeout=180):
    """Waits until these queues hold no message (ready or unacked) and 2 s more, so their
    consumers' work on the first phase is not counted in the next. -> seconds waited."""
    import subprocess
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        listed = subprocess.run(["rabbitmqctl", "list_queues", "-p", stack.vhost.name, "--quiet",
                                 "name", "messages"], capture_output=True, text=True,
                                timeout=60).stdout
        counts = dict(line.split("\t") for line in listed.splitlines() if "\t" in line)
        if all(counts.get(q, "0").strip() == "0" for q in queues):
            break
        time.sleep(1)
    time.sleep(2)
    return time.perf_counter() - started


def call_data(n):
    call_id = f"bench-call-{n}"
    return {"call": {"id": call_id, "direction": "inbound", "state": "ringing",
                     "contact_id": f"bench-contact-{n % 300}", "agent_id": "u1"},
            "contact_id": f"bench-contact-{n % 300}", "agent_id": "u1", "owner_id": "u1",
            "direction": "inbound", "from": "+15550000000", "to": "+15550000001",
            "summary": "ringing", "ref": {"type": "call", "id": call_id}}


def backlog(conn, queue):
    """Messages ready in the queue (not yet given to a consumer)."""
    return conn.default_channel.queue_declare(queue, passive=True).message_count


def bodies(source, event_type, items):
    """The envelopes dumped through the contract beforehand: the timed part publishes."""
    from contracts.events import dump_event
    from crm_common.messaging.events import envelope
    return [dump_event(source, event_type, envelope(source, event_type, data)) for data in items]


def publish_all(source, event_type, items, conn):
    """One producer on one channel, persistent messages, the exchange declared once
    (publish_event declares it and builds a producer on every call: 100-200/s here)."""
    from kombu import Exchange, Producer
    exchange = Exchange(f"{source}.events", type="topic", durable=True)
    exchange.declare(channel=conn.default_channel)
    producer = Producer(conn.default_channel, exchange=exchange, serializer="json")
    for body in items:
        producer.publish(body, routing_key=event_type, delivery_mode=2)


def through_service(platform, rules, events, calls, alone=False, profile=None):
    stack = platform.stack
    for body in rules:
        stack.rpc.call("automation", "create_rule", body, timeout=30)
    kept = stack.db("automation")["events"]
    events = bodies("deals", "deal_stage_changed", events)
    deal_events(platform, kept, events, "through the service (1 replica)",
                profile and profile + ".stack.txt")
    if alone:
        others = unbind_others(stack, "deals", "deal_stage_changed")
        print(f"  the other consumers of deal_stage_changed unbound: {len(others)} queues "
              f"({', '.join(sorted(q.split('--')[-1].split('.')[0] for q in others))})",
              flush=True)
        drained = drain(stack, others)
        print(f"  their backlog of the first phase worked off before the next: {drained:.1f} s",
              flush=True)
        fresh = [dict(body, event_id=f"alone-{body['event_id']}") for body in events]
        deal_events(platform, kept, fresh, "automation alone (1 replica)",
                    profile and profile + ".alone.txt")
    if not calls:
        return
    marker_rule(stack, platform, kept, calls)


def sample(stack, seconds, out, database=False):
    """py-spy (its binary: $PY_SPY, else on PATH) sampling the automation process (or the
    database daemon) for `seconds`, collapsed stacks into `out`; None when there is no
    py-spy."""
    import shutil
    import subprocess
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    pid = stack.mongo_proc.pid if database and stack.mongo_proc else next(
        (proc.pid for key, proc in stack.processes.items() if key.startswith("automation")),
        None)
    if not spy or pid is None:
        return None
    # (the database has a thread per connection, ~100: sampled at 200/s, py-spy fell
    # minutes behind on a loaded machine)
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds),
                             "--rate", "50" if database else "200", "--format", "raw",
                             "--output", out, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finished(spy, timeout):
    """Whether a sampler ended within `timeout` s (else it is stopped: no summary)."""
    import subprocess
    try:
        spy.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
        return False


# where the automation process's samples are, by the first frame (from the leaf) that names one
PARTS = (("services/automation", "automation's own code"), ("contracts/", "event contracts (load)"),
         ("marshmallow", "event contracts (load)"), ("pymongo", "pymongo"), ("bson", "pymongo"),
         ("kombu", "kombu / amqp"), ("amqp/", "kombu / amqp"), ("nameko", "nameko"),
         ("eventlet", "eventlet (hub, green I/O)"), ("json", "json"))


# the database daemon's samples, by the command (SecantusDB's handler frame) they serve
DB_PARTS = (("_find_and_modify", "findAndModify"), ("_insert", "insert"), ("_update", "update"),
            ("_delete", "delete"), ("_aggregate", "aggregate"), ("_count", "count"),
            ("_get_more", "getMore"), ("_find", "find"), ("commit", "commit / transactions"))


def profile_summary(path, parts=PARTS):
    """Shares of the samples of a py-spy raw file, per part (PARTS) of the leaf frames."""
    counts, total = {}, 0
    with open(path) as lines:
        for line in lines:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            part = next((name for frame in reversed(frames) for key, name in parts
                         if frame.startswith(key + " ") or parts is PARTS and key in frame),
                        "other (python, threads)")
            counts[part] = counts.get(part, 0) + int(n)
            total += int(n)
    return ", ".join(f"{name} {100 * n / max(total, 1):.0f}%"
                     for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def kept_count(kept, since=None):
    """Events kept for dry runs (stored since `since`): the `n` of each batch document (one
    per group commit)."""
    where = {"stored_at": {"$gte": since}} if since else {}
    return sum(doc.get("n", 1) for doc in kept.find(where, {"n": 1}))


def deal_events(platform, kept, events, label, profile=None):
    from kombu import Connection
    stack = platform.stack
    from crm_common.timeutil import utcnow
    since = utcnow()  # the phase's documents only (read every 0.2 s)
    before_docs = kept.count_documents({})
    spy = sample(stack, 20, profile) if profile else None
    db_spy = sample(stack, 20, profile + ".db", database=True) if profile else None
    before = cpu_seconds(platform)
    started = time.perf_counter()
    with Connection(stack.amqp_uri) as conn:
        publish_all("deals", "deal_stage_changed", events, conn)
        published = time.perf_counter() - started
        waiting = backlog(conn, "evt-deals-events--automation.on_deals_events")
    deadline = time.time() + 300
    while kept_count(kept, since) < len(events) and time.time() < deadline:
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    done = kept_count(kept, since)
    after = cpu_seconds(platform)
    print(f"  {label:<33} {done / seconds:>10.0f} events/s   published in {published:.1f} s "
          f"({len(events) / published:.0f}/s, {waiting} waiting then), handled "
          f"{done}/{len(events)} in {seconds:.1f} s", flush=True)
    print(f"    {cpu_note(before, after, max(done, 1))}; kept in "
          f"{kept.count_documents({}) - before_docs} documents", flush=True)
    if spy is not None and finished(spy, 120):
        if os.path.exists(profile):
            print(f"    automation process samples (py-spy, {profile}): "
                  f"{profile_summary(profile)}", flush=True)
    if db_spy is not None and finished(db_spy, 120):
        if os.path.exists(profile + ".db"):
            print(f"    database samples by command (py-spy, {profile}.db): "
                  f"{profile_summary(profile + '.db', DB_PARTS)}", flush=True)


def marker_rule(stack, platform, kept, calls):
    from crm_common.messaging.publish import publish_event
    from kombu import Connection
    # call events no rule listens to (the ringing path of telephony): nothing kept, no
    # rule; one rule on call_ended (never matching) makes the last event a marker
    stack.rpc.call("automation", "create_rule", {
        "name": "bench marker", "enabled": True, "log_skips": False,
        "trigger": {"type": "event", "event": "telephony.call_ended"},
        "conditions": {"all": [{"field": "direction", "op": "eq", "value": "nowhere"}]},
        "actions": [{"type": "notify_user", "message": "x"}]}, timeout=30)
    marker = f"bench-marker-{time.time()}"
    calls = bodies("telephony", "call_started", calls)
    before = cpu_seconds(platform)
    started = time.perf_counter()
    with Connection(stack.amqp_uri) as conn:
        publish_all("telephony", "call_started", calls, conn)
        publish_event(stack.amqp_uri, "telephony", "call_ended", call_data(0), event_id=marker,
                      connection=conn)
        published = time.perf_counter() - started
        deadline = time.time() + 300
        while not kept.find_one({"types": "telephony.call_ended", "events._id": marker}) \
                and time.time() < deadline:
            time.sleep(0.1)
        while backlog(conn, "evt-telephony-events--automation.on_telephony_events") \
                and time.time() < deadline:
            time.sleep(0.1)
    seconds = time.perf_counter() - started
    after = cpu_seconds(platform)
    print(f"  call events no rule listens to    {len(calls) / seconds:>10.0f} events/s   "
          f"published in {published:.1f} s, handled {len(calls)} in {seconds:.1f} s "
          f"(search and notifications consume them too)", flush=True)
    print(f"    {cpu_note(before, after, len(calls))}", flush=True)


def seed_contacts(platform, session, base, n):
    """n contacts tagged `campaign-bench` (every 30th also `vip`): one through the API, the
    others copies of its stored document written with pymongo (each its own id, name and
    phone), as a CSV import of this size takes many minutes on this machine."""
    from datetime import timedelta
    from crm_common.ids import new_id
    started = time.perf_counter()
    first = session.post(base + "/contacts", json={
        "first_name": "Bench", "last_name": "0", "phones": ["+393470000000"],
        "tags": ["campaign-bench", "vip"]})
    first.raise_for_status()
    stored = platform.stack.db("contacts")["contacts"]
    template = stored.find_one({"_id": first.json()["id"]})
    phone_fields = json.dumps({k: template.get(k) for k in ("phones", "phone_keys")
                               if template.get(k) is not None}, default=str)
    batch = []
    for i in range(1, n):
        doc = dict(template, _id=new_id(), first_name=f"Bench{i}", last_name=str(i),
                   tags=["campaign-bench"] + (["vip"] if i % 30 == 0 else []),
                   created_at=template["created_at"] + timedelta(microseconds=i),
                   # each its own updated_at, as contacts written one by one have: 50,000
                   # copies of one instant made every page of telephony's directory sync
                   # (window_page: the rest of an instant, then what follows) read all
                   # 50,000 on SecantusDB, which took the database for minutes
                   updated_at=template["updated_at"] + timedelta(microseconds=i),
                   **json.loads(phone_fields.replace("3470000000", f"347{i:07d}")))
        batch.append(doc)
        if len(batch) == 5000:
            stored.insert_many(batch)
            batch = []
    if batch:
        stored.insert_many(batch)
    # (dropping the indexes for the load and building them after it: SecantusDB's build
    # of 50,000 contacts' entries in one storage transaction stalled, its CPU idle)
    print(f"  {n} contacts written in {time.perf_counter() - started:.1f} s", flush=True)


def campaign(platform, contacts, rate, small_rate, profile=None):
    """A campaign to a segment of `contacts` imported contacts (every one): the time to
    queue them, then the SMS reaching the gateway (conversations' SMS channel to a local
    recorder) for a minute against the configured rate; before it, a smaller campaign sent
    to the end: each recipient texted once, the counts adding up."""
    import requests
    from tests.fake_receivers import HttpRecorder
    base = platform.base_url + "/api/v1"
    session = requests.Session()
    session.headers.update(platform.auth_headers())
    seed_contacts(platform, session, base, contacts)
    gateway = HttpRecorder().start()
    channel = session.post(base + "/channels", json={
        "kind": "sms", "name": "bench sms", "url": f"{gateway.base_url}/sms", "token": "t",
        "from_number": "+15550001"})
    channel.raise_for_status()

    def read(campaign_id):
        """The campaign; an answer without it (the gateway's rate limit) read again."""
        for _ in range(60):
            answer = session.get(f"{base}/campaigns/{campaign_id}")
            if answer.status_code == 200:
                return answer.json()
            time.sleep(1)
        answer.raise_for_status()

    def texted():
        return [json.loads(r["body"])["to"] for r in gateway.to("/sms")]

    def start(name, filters, rate_per_minute):
        segment = session.post(base + "/segments", json={
            "name": name, "filters": filters, "allow_everyone": not filters}).json()
        counted = time.perf_counter()
        answer = session.get(f"{base}/segments/{segment['id']}/count")
        counted = time.perf_counter() - counted
        count = answer.json().get("count") if answer.status_code == 200 else None
        print(f"  segment {name!r}: count {count if count is not None else answer.text[:200]} "
              f"in {counted:.1f} s (HTTP {answer.status_code})", flush=True)
        made = session.post(base + "/campaigns", json={
            "name": name, "segment_id": segment["id"], "channel": "sms",
            "body": "Hi {{ contact.first_name }}, sale today", "rate_per_minute": rate_per_minute})
        made.raise_for_status()
        started = time.perf_counter()
        session.post(f"{base}/campaigns/{made.json()['id']}/send", json={}).raise_for_status()
        while True:
            got = read(made.json()["id"])
            if got["status"] not in ("scheduled", "queuing") or \
                    time.perf_counter() - started > 600:
                break
            time.sleep(0.2)
        return got, count, time.perf_counter() - started

    # the small one, to its end (every 30th contact is "vip")
    small, count, queued_in = start("bench small", {"tag": "vip"}, small_rate)
    started = time.perf_counter()
    while small["status"] == "sending" and time.perf_counter() - started < 900:
        time.sleep(2)
        small = read(small["id"])
    seconds = time.perf_counter() - started
    # "delivered" is conversations' acceptance; its SMS reaches the gateway just after
    waited = time.perf_counter()
    while len(texted()) < small["counts"]["delivered"] and time.perf_counter() - waited < 120:
        time.sleep(1)
    sent = texted()
    c = small["counts"]
    print(f"  campaign of {count} contacts at {small_rate}/min: queued {c['queued']} in "
          f"{queued_in:.1f} s, {small['status']} after {seconds:.0f} s "
          f"({c['delivered'] * 60 / max(seconds, 1):.0f}/min); delivered {c['delivered']} "
          f"failed {c['failed']} skipped {c['skipped']}; texted {len(sent)}, "
          f"{len(set(sent))} numbers, twice {len(sent) - len(set(sent))}", flush=True)
    # the big one: queued, then a minute of sending
    before_sent = len(gateway.to("/sms"))
    before = cpu_seconds(platform)
    big, count, queued_in = start("bench all", {"tag": "campaign-bench"}, rate)
    after = cpu_seconds(platform)
    print(f"  campaign of {count} contacts: {big['counts']['queued']} queued in "
          f"{queued_in:.1f} s (status {big['status']})", flush=True)
    print(f"    {cpu_note(before, after, max(big['counts']['queued'], 1))} (per queued send)",
          flush=True)
    started = time.perf_counter()
    before = cpu_seconds(platform)
    at_start = len(gateway.to("/sms"))
    spies = [(part, path, sample(platform.stack, 30, path, database=part == "database"))
             for part, path in (("automation process", profile and profile + ".campaign"),
                                ("database", profile and profile + ".campaign.db")) if path]
    time.sleep(60)
    seconds = time.perf_counter() - started
    after = cpu_seconds(platform)
    sent = texted()[before_sent:]
    print(f"  then {len(sent)} texted in {seconds:.0f} s = {len(sent) * 60 / seconds:.0f}/min "
          f"(configured {rate}/min), {len(sent) - len(set(sent))} twice", flush=True)
    print(f"    {cpu_note(before, after, max(len(gateway.to('/sms')) - at_start, 1))} "
          f"(per SMS of that minute)", flush=True)
    for part, path, spy in spies:
        if spy is not None and finished(spy, 120) and os.path.exists(path):
            print(f"    {part} samples (py-spy, {path}, 30 s): "
                  f"{profile_summary(path, DB_PARTS if part == 'database' else PARTS)}",
                  flush=True)
    gateway.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--campaign", type=int, default=0,
                        help="contacts of the campaign phase (0: none)")
    parser.add_argument("--rate", type=int, default=1200, help="the big campaign's per minute")
    parser.add_argument("--small-rate", type=int, default=1200)
    parser.add_argument("--in-process-only", action="store_true")
    parser.add_argument("--alone", action="store_true",
                        help="then the same events again with automation their only consumer")
    parser.add_argument("--upserts", type=int, default=0,
                        help="only the database's CPU per record copy upsert, by form, on a "
                             "SecantusDB of its own (this many copies)")
    parser.add_argument("--profile", help="path prefix: py-spy samples of the automation "
                                          "process and the database while the deal events "
                                          "run and the campaign sends (needs py-spy)")
    args = parser.parse_args()
    random.seed(1)
    if args.upserts:
        copy_upserts(args.upserts)
        return
    rules = [rule_body(n) for n in range(args.rules)]
    events = [event_data(n) for n in range(args.events)]
    print(f"bench_automation: {args.events} deal_stage_changed events, {args.rules} rules; "
          f"{load_average()}", flush=True)
    if events:
        in_process(rules, events)
        service_logic(rules, events)
    if args.in_process_only:
        return
    platform = Platform()
    try:
        if args.events:
            through_service(platform, rules, events, [call_data(n) for n in range(args.calls)],
                            alone=args.alone, profile=args.profile)
        if args.campaign:
            campaign(platform, args.campaign, args.rate, args.small_rate, args.profile)
    finally:
        platform.close()


if __name__ == "__main__":
    main()
