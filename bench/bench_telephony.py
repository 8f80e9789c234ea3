"""Telephony speed: the ringing-event answer (a PBX waits for it to route the call) with
100,000 contacts loaded, posted through the gateway at a steady 50 events/s, and the
sustained events/s of full call sequences; beside them the same caller lookup done
directly with pymongo (find_one on contacts.phone_keys) on the same server.

    .venv/bin/python bench/bench_telephony.py [--contacts 100000] [--seconds 20] [--rate 50]
        [--rates 20,35] [--repeat 2] [--no-sequences] [--profile-slow-ms 20]
        [--connector-rate 20 --connector-seconds 10]
        [--url http://127.0.0.1:8000 --mongo "mongodb://127.0.0.1:27017/?retryWrites=false" --amqp ... --prefix crm_]

--repeat runs each open-loop measurement that many times on the same stack (the machine
is shared: each row prints the load average when it started); --rates adds lower rates.
The pymongo reference is the database work of one ringing event done directly, as the
service does it: the caller looked up in telephony's copy of the numbers, then one
transaction with the call record's upsert and its outbox insert; and the contacts lookup
(as contacts.lookup sends it, what a number the copy lacks costs), on the same server.
The contacts are written with pymongo, so the bench waits for telephony's sync to copy
their numbers (it resets the sync state: a first pass) and prints how long that took.

The AMI connector figure (connectors/asterisk between tests/ami_server.py playing Asterisk
and the gateway) is the latency from each AMI event to the gateway's answer to the
connector's post, beside the same event POSTed directly (connector_latency).

Targets (2-core machine): ringing answer p99 < 100 ms at 50 events/s with 100,000 contacts;
the AMI connector adds <= 10 ms.
"""
import argparse
import http.client
import json
import logging
import os
import queue
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymongo  # noqa: E402
import requests  # noqa: E402

from bench.common import (KeepAliveClient, Platform, cpu_note, cpu_seconds, http_load,  # noqa: E402
                          load_average, print_slow_operations, profile_databases, row,
                          summarize, thread_load)
from connectors.asterisk.__main__ import follow  # noqa: E402
from connectors.asterisk.ami import AmiClient  # noqa: E402
from connectors.asterisk.forwarder import INGEST_PATH, Forwarder  # noqa: E402
from crm_common.messaging.publish import publish_event  # noqa: E402
from services.contacts.domain import normalize_phones, search_fields  # noqa: E402
from tests.ami_server import AmiServer  # noqa: E402

COMPANY_DID = "+390212345678"
HEADERS = {}
N_CONTACTS = [100000]


def number(i):
    return f"+39347{i:07d}"


def contact_doc(first_name, phone, owner_id, source, now):
    """A contact as the contacts service stores it (phone_keys and search fields from
    its domain.py), for loading directly."""
    doc = {"_id": uuid.uuid4().hex[:24], "first_name": first_name, "last_name": "Bench",
           "emails": [], "phones": normalize_phones([{"number": phone, "type": "mobile"}], "IT"),
           "owner_id": owner_id, "tags": [], "source": source,
           "status": "lead", "do_not_contact": False, "custom": {}, "company_id": None,
           "created_at": now, "updated_at": now, "deleted_at": None,
           "last_contacted_at": None, "created_by": None, "version": 1,
           "possible_duplicates": []}
    doc.update(search_fields(doc))
    return doc


def load_contacts(db, count, owners):
    """Contacts as the contacts service stores them (phone_keys from domain.py), inserted
    directly: loading 100,000 through the API would measure the import, not the lookup."""
    existing = db.contacts.count_documents({"source": "bench-telephony"})
    if existing >= count:
        return existing
    now = datetime.now(timezone.utc)
    batch = []
    for i in range(existing, count):
        # each written at its own time, as contacts are (1 ms apart)
        batch.append(contact_doc(f"Caller{i}", number(i), owners[i % len(owners)],
                                 "bench-telephony", now - timedelta(milliseconds=count - i)))
        if len(batch) == 5000:
            db.contacts.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.contacts.insert_many(batch, ordered=False)
    return count


def wait_for_phone_copy(telephony_db, count, timeout=1800):
    """Contacts written with pymongo announce no event: telephony's copy of their numbers
    (contact_phones) fills through its sync. Its state is reset first, so the next pass is a
    first one (a fresh install whose contacts predate the copy; it also covers contacts
    stamped before a pass that ran while they were being loaded). Measured only once the
    copy holds them all, else every lookup is also an RPC to contacts. Returns the seconds
    waited."""
    telephony_db.counters.delete_one({"_id": "contact_phones_sync"})
    started = time.perf_counter()
    while telephony_db.contact_phones.estimated_document_count() < count:
        if time.perf_counter() - started > timeout:
            raise RuntimeError("telephony's phone copy did not fill")
        time.sleep(1)
    return time.perf_counter() - started


def op_counts(client):
    """The server's operation counters (serverStatus opcounters; mongod and SecantusDB)."""
    return dict(client.admin.command("serverStatus").get("opcounters", {}))


def ops_note(before, after, events):
    """Database operations per event, writes first (each a retryable write unless the URL
    turns them off: docs/developing.md)."""
    kinds = ("insert", "update", "delete", "query", "command")
    return "db ops/event: " + " ".join(
        f"{k}={(after.get(k, 0) - before.get(k, 0)) / max(events, 1):.2f}" for k in kinds)


def ringing(call_id, caller):
    return {"event_id": f"{call_id}-r", "provider": "bench", "call_id": call_id,
            "direction": "inbound", "from": caller, "to": COMPANY_DID, "state": "ringing"}


def paced_ringing(base_url, rate, seconds, count, workers=16, timeline=None):
    """Open loop: one ringing event every 1/rate s, whatever the answers take; latency is
    counted from the moment the event was due, so queueing behind slow answers shows."""
    parsed = urlparse(base_url)
    due, latencies, statuses, lock = queue.Queue(), [], {}, threading.Lock()
    routed = [0]

    def worker():
        client = KeepAliveClient(parsed.hostname, parsed.port)
        while True:
            item = due.get()
            if item is None:
                client.close()
                return
            scheduled, event = item
            try:
                status, body = client.request(
                    "POST", "/api/v1/telephony/events", json.dumps(event).encode(),
                    {"Content-Type": "application/json", **HEADERS})
            except (OSError, ValueError, http.client.HTTPException):
                client.close()
                status, body = "error", b"{}"
            elapsed = time.perf_counter() - scheduled
            with lock:
                latencies.append(elapsed)
                if timeline is not None:
                    timeline.append((scheduled - start, elapsed))
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200 and json.loads(body).get("route_to"):
                    routed[0] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        when = start + i / rate
        delay = when - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        due.put((when, ringing(f"bench-{uuid.uuid4().hex}", number(random.randrange(count)))))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    return summarize(latencies, seconds), statuses, routed[0]


def print_timeline(timeline, window=2.0):
    """Latency by the second the events were due: when a run falls behind, and for how long."""
    buckets = {}
    for due_at, elapsed in timeline:
        buckets.setdefault(int(due_at // window), []).append(elapsed)
    cells = []
    for b in sorted(buckets):
        lat = sorted(buckets[b])
        cells.append(f"{b * window:>3.0f}s:{lat[len(lat) // 2] * 1000:.0f}/{lat[-1] * 1000:.0f}")
    print("      timeline (due at: p50/max ms): " + " ".join(cells), flush=True)


def newchannel(call_id, caller):
    """The AMI event a PBX call begins with (tests/fixtures/telephony/asterisk.json): the
    ingest makes it the call's ringing event."""
    return {"Event": "Newchannel", "Privilege": "call,all", "Channel": "PJSIP/trunk-00000001",
            "ChannelState": "0", "ChannelStateDesc": "Down", "CallerIDNum": caller,
            "CallerIDName": "", "ConnectedLineNum": "<unknown>", "Exten": COMPANY_DID,
            "Context": "from-trunk", "Uniqueid": call_id, "Linkedid": call_id,
            "Timestamp": f"{time.time():.6f}"}


class TimedSession(requests.Session):
    """The connector's HTTP session, noting when the gateway answered each event."""

    def __init__(self, answered):
        super().__init__()
        self.answered = answered

    def post(self, url, data=None, **kwargs):
        answer = super().post(url, data=data, **kwargs)
        self.answered[json.loads(data)["Uniqueid"]] = (time.perf_counter(), answer.status_code)
        return answer


def paced_ami(rate, seconds, count, send):
    """Open loop: `send(event)` for one Newchannel every 1/rate s; returns {Uniqueid: due}."""
    due, start = {}, time.perf_counter()
    for i in range(int(rate * seconds)):
        when = start + i / rate
        delay = when - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        event = newchannel(f"{int(time.time())}.{uuid.uuid4().int % 10**9}",
                           number(random.randrange(count)))
        due[event["Uniqueid"]] = when
        send(event)
    return due


def connector_latency(base_url, api_key, rate, seconds, count, spool_dir):
    """The AMI connector's added latency: Newchannel events written by tests/ami_server.py
    (Asterisk's side of AMI) to connectors.asterisk's AmiClient, whose reader and posting
    threads (the Forwarder) run here as in its process; latency from when each event was
    due to the gateway's answer to the connector's POST. Beside it the same events POSTed
    directly to the same route by one sequential client with the same HTTP library (the
    connector posts one at a time, in order). Returns (direct, connector, statuses)."""
    url = base_url.rstrip("/") + INGEST_PATH
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}

    # direct: one sequential poster, open loop (a queue between the pacer and it)
    direct_answers, pending = {}, queue.Queue()
    session = TimedSession(direct_answers)

    def poster():
        while True:
            event = pending.get()
            if event is None:
                return
            session.post(url, data=json.dumps(event), headers=headers, timeout=30)

    thread = threading.Thread(target=poster, daemon=True)
    thread.start()
    direct_due = paced_ami(rate, seconds, count, pending.put)
    pending.put(None)
    thread.join()
    session.close()

    # through the connector (its reconnect warning when the bench closes it is no news)
    logging.getLogger("connectors.asterisk").setLevel(logging.ERROR)
    ami = AmiServer()
    answers = {}
    forwarder = Forwarder(base_url, api_key, os.path.join(spool_dir, "ami.spool"),
                          session=TimedSession(answers))
    client = AmiClient("127.0.0.1", ami.port, ami.username, ami.secret, timeout=5)
    stopped = threading.Event()
    threading.Thread(target=forwarder.run, daemon=True).start()
    reader = threading.Thread(target=follow, args=(client, forwarder, stopped, 1.0), daemon=True)
    reader.start()
    deadline = time.time() + 10
    while ami.logins < 1 and time.time() < deadline:
        time.sleep(0.05)
    connector_due = paced_ami(rate, seconds, count, lambda event: ami.emit([event]))
    deadline = time.time() + 60
    while len(answers) < len(connector_due) and time.time() < deadline:
        time.sleep(0.05)
    stopped.set()
    forwarder.stop()
    client.close()
    ami.close()

    statuses = {}
    for answered in (direct_answers, answers):
        for _, status in answered.values():
            statuses[status] = statuses.get(status, 0) + 1

    def latencies(due, answered):
        return [answered[k][0] - when for k, when in due.items() if k in answered]
    return (summarize(latencies(direct_due, direct_answers), seconds),
            summarize(latencies(connector_due, answers), seconds), statuses,
            len(connector_due) - len(answers))


def sequence_request(seed, index, counter):
    """Closed loop: each request is one event of a 3-event call (ringing, answered, ended)."""
    call_id = f"seq-{seed}-{index}-{counter // 3}"
    state = ("ringing", "answered", "ended")[counter % 3]
    caller = number(hash(call_id) % N_CONTACTS[0])
    event = {"event_id": f"{call_id}-{state}", "provider": "bench", "call_id": call_id,
             "direction": "inbound", "from": caller, "to": COMPANY_DID, "state": state,
             "extension": "201"}
    if state == "ended":
        event["outcome"] = "answered"
    return "POST", "/api/v1/telephony/events", event


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--rates", default="", help="more open-loop rates, e.g. 20,35")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-sequences", action="store_true")
    parser.add_argument("--profile-slow-ms", type=int, default=None,
                        help="list the server's operations slower than this (profiler); on "
                             "SecantusDB it adds database CPU that grows with what it records "
                             "(every entry is an insert into the capped system.profile, which "
                             "reads the whole collection), so leave it off for the figures")
    parser.add_argument("--connector-rate", type=float, default=20,
                        help="AMI events/s for the connector figure")
    parser.add_argument("--connector-seconds", type=float, default=10,
                        help="seconds of each connector run (direct, then through the "
                             "connector); 0 leaves the connector figure out")
    parser.add_argument("--timeline", action="store_true",
                        help="print each ringing run's latency per 2 s of due time")
    parser.add_argument("--url")
    parser.add_argument("--amqp", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017/?retryWrites=false")  # as ./crm up
    parser.add_argument("--prefix", default="crm_")
    args = parser.parse_args()
    N_CONTACTS[0] = args.contacts

    # the isolated stack's telephony syncs the contacts loaded below every 2 s, not 60 s
    os.environ.setdefault("TELEPHONY_CONTACTS_SYNC_S", "2")
    platform = Platform(args.url, args.amqp, args.mongo, args.prefix)
    client = None
    try:
        HEADERS.update(platform.auth_headers())
        client = pymongo.MongoClient(platform.mongo_url, tz_aware=True)
        contacts_db = client[f"{platform.db_prefix}contacts"]
        owners = [f"bench-owner-{i}" for i in range(10)]
        for i, owner in enumerate(owners):
            publish_event(platform.amqp_uri, "gateway", "user_upserted", {"user": {
                "id": owner, "name": f"Owner {i}", "role": "agent", "active": True,
                "extension": str(201 + i)}})
        started = time.perf_counter()
        loaded = load_contacts(contacts_db, args.contacts, owners)
        print(f"telephony bench: {loaded} contacts loaded in {time.perf_counter() - started:.1f} s "
              f"({platform.base_url})", flush=True)
        telephony_db = client[f"{platform.db_prefix}telephony"]
        cpu = cpu_seconds(platform)
        waited = wait_for_phone_copy(telephony_db, loaded)
        print(f"telephony's phone copy filled by its sync in {waited:.1f} s more; "
              f"{cpu_note(cpu, cpu_seconds(platform), loaded)} (per contact)", flush=True)

        # warm up (connections, caches), then the figures
        paced_ringing(platform.base_url, 10, 2, args.contacts)
        if args.profile_slow_ms is not None:
            profile_databases(client, platform.db_prefix, args.profile_slow_ms)
        rates = [args.rate] + [float(r) for r in args.rates.split(",") if r.strip()]
        print("\nringing answer through the gateway, open loop (latency from the moment each "
              "event was due):")
        for rate in rates:
            for attempt in range(args.repeat):
                load, cpu, ops = load_average(), cpu_seconds(platform), op_counts(client)
                timeline = [] if args.timeline else None
                result, statuses, routed = paced_ringing(platform.base_url, rate, args.seconds,
                                                         args.contacts, timeline=timeline)
                row(f"ringing at {rate:g}/s, run {attempt + 1}", result,
                    f"statuses={statuses} routed={routed} ({load})")
                time.sleep(1)  # what follows the answers (publish, batched deletes, handlers)
                print(f"      {cpu_note(cpu, cpu_seconds(platform), result['n'])}; "
                      f"telephony outbox left={telephony_db.outbox.estimated_document_count()}",
                      flush=True)
                print(f"      {ops_note(ops, op_counts(client), result['n'])}", flush=True)
                if timeline:
                    print_timeline(timeline)

        telephony_db.bench_calls.create_index([("provider", 1), ("call_id", 1)], unique=True)
        telephony_db.bench_outbox.insert_one({"_id": "created before any transaction"})

        def direct_lookup(index, counter):
            # what contacts.lookup sends (store.lookup: $in on phone_keys, no hint)
            list(contacts_db.contacts.find(
                {"phone_keys": {"$in": [number(random.randrange(args.contacts))]}}).limit(20))

        def direct_ringing(index, counter):
            # one ringing event's database work as the service does it: the caller in
            # telephony's copy, then one transaction: the call upserted, its event stored
            telephony_db.contact_phones.find_one({"phones": number(random.randrange(args.contacts))})
            call_id = uuid.uuid4().hex
            with client.start_session() as session, session.start_transaction():
                telephony_db.bench_calls.update_one(
                    {"provider": "bench", "call_id": call_id},
                    {"$setOnInsert": {"_id": call_id, "provider": "bench", "call_id": call_id,
                                      "number": number(1), "rank": 1, "legs": {},
                                      "started_at": datetime.now(timezone.utc)}},
                    upsert=True, session=session)
                telephony_db.bench_outbox.insert_one(
                    {"_id": f"{call_id}:call_started", "body": {"data": {"call": {"id": call_id}}},
                     "relay_after": datetime.now(timezone.utc)}, session=session)
        print(f"\npymongo reference, same server ({load_average()}):")
        row("pymongo contacts lookup ($in phone_keys)", thread_load(direct_lookup, 1, 5))
        row("pymongo ringing work (copy lookup, tx upsert+insert)", thread_load(direct_ringing, 1, 5))
        row("pymongo ringing work, 4 threads", thread_load(direct_ringing, 4, 5))
        telephony_db.bench_calls.drop()
        telephony_db.bench_outbox.drop()
        if args.profile_slow_ms is not None:
            print_slow_operations(client, platform.db_prefix)
            profile_databases(client, platform.db_prefix, args.profile_slow_ms, reset=True)
        if args.connector_seconds > 0:
            created = requests.post(platform.base_url + "/api/v1/api-keys", headers=HEADERS,
                                    json={"name": "bench-ami-connector",
                                          "scopes": ["telephony:write"]}, timeout=10)
            created.raise_for_status()
            load = load_average()
            with tempfile.TemporaryDirectory() as spool_dir:
                direct, connected, statuses, lost = connector_latency(
                    platform.base_url, created.json()["key"], args.connector_rate,
                    args.connector_seconds, args.contacts, spool_dir)
            print(f"\nAMI connector: Newchannel at {args.connector_rate:g}/s, latency from each "
                  f"event's due time to the gateway's answer ({load}):")
            row("direct POST /telephony/asterisk (reference)", direct)
            row("AMI server -> connector -> gateway", connected,
                f"statuses={statuses} unanswered={lost}")
            print(f"      added by the connector: p50 "
                  f"{connected['p50_ms'] - direct['p50_ms']:+.2f} ms, p99 "
                  f"{connected['p99_ms'] - direct['p99_ms']:+.2f} ms (target <= 10 ms)",
                  flush=True)
        if args.no_sequences:
            return
        print("\nsustained full call sequences (ringing, answered, ended), closed loop:")
        for concurrency in (4, 16):
            load, cpu, ops = load_average(), cpu_seconds(platform), op_counts(client)
            result, statuses = http_load(platform.base_url, sequence_request, concurrency,
                                         args.seconds / 2, HEADERS)
            row(f"events/s at {concurrency} clients", result, f"statuses={statuses} ({load})")
            print(f"      {cpu_note(cpu, cpu_seconds(platform), max(result['n'], 1))}", flush=True)
            print(f"      {ops_note(ops, op_counts(client), result['n'])}", flush=True)
        if args.profile_slow_ms is not None:
            print_slow_operations(client, platform.db_prefix)
        row("pymongo contacts lookup at 4 threads (reference)", thread_load(direct_lookup, 4, 5))
    finally:
        if client is not None:
            client.close()
        platform.close()


if __name__ == "__main__":
    main()
