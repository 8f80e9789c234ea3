"""Notifications fan-out speed: events/s turned into in-app notifications plus signed webhook
deliveries to a local receiver, with no loss (count in = count out), beside the rate at which
pymongo alone inserts the same documents on the same server.

    .venv/bin/python bench/bench_notifications.py [--events 3000] [--hooks 1] [--replicas 1]
        [--profile-slow-ms 20]

Starts an isolated stack (tests/stack.py); the notifications service is restarted with
loopback webhooks allowed so the receiver in this process can be the target.
Prints deliveries/s over the whole run and per slice of 1000 events (sustained: does it slow
down as the collections grow?), CPU ms per event of each part of the stack, the load average,
and the pymongo reference (the same documents inserted one by one, and in batches).
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kombu import Connection  # noqa: E402

from bench.common import (cpu_note, cpu_seconds, load_average,  # noqa: E402
                          print_slow_operations, profile_databases)
from crm_common.messaging.publish import publish_event  # noqa: E402
from tests.fake_receivers import HttpRecorder  # noqa: E402
from tests.stack import Stack  # noqa: E402

USERS = [f"bench-user-{i}" for i in range(50)]


def reference_docs(n):
    now = datetime.now(timezone.utc)
    for i in range(n):
        event_id = uuid.uuid4().hex
        yield ({"_id": uuid.uuid4().hex[:24], "key": f"{event_id}:{USERS[i % 50]}",
                "user_id": USERS[i % 50], "title": "Due in 15 min", "body": "x" * 120,
                "read_at": None, "created_at": now},
               {"_id": uuid.uuid4().hex[:24], "key": f"{event_id}:webhook:h:webhook",
                "event_id": event_id, "status": "pending", "due_at": now,
                "body": "x" * 300, "created_at": now})


def pymongo_reference(stack, n, batch=1):
    """The same two documents per event (inbox entry, webhook delivery) with their unique
    keys, into scratch collections with the service's key indexes: one by one (batch=1) or
    insert_many(ordered=False) of `batch` events at a time."""
    db = stack.mongo[f"{stack.db_prefix}bench_reference_{batch}"]
    inbox, outbox = db["inbox"], db["deliveries"]
    inbox.create_index("key", unique=True)
    outbox.create_index("key", unique=True)
    outbox.create_index("due_at", sparse=True)
    docs = list(reference_docs(n))
    started = time.perf_counter()
    if batch == 1:
        for entry, delivery in docs:
            inbox.insert_one(entry)
            outbox.insert_one(delivery)
    else:
        for i in range(0, n, batch):
            inbox.insert_many([d[0] for d in docs[i:i + batch]], ordered=False)
            outbox.insert_many([d[1] for d in docs[i:i + batch]], ordered=False)
    return 2 * n / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--hooks", type=int, default=1, help="webhook subscriptions per event")
    parser.add_argument("--replicas", type=int, default=1, help="notifications replicas")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--slice", type=int, default=1000, help="events per reported slice")
    parser.add_argument("--profile-slow-ms", type=int, default=0,
                        help="list the server's operations slower than this (profiler)")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the notifications service (e.g. CRM_NOTIFY_BATCH=200)")
    args = parser.parse_args()
    service_env = dict(kv.split("=", 1) for kv in args.env)

    receiver = HttpRecorder().start()
    # tests/stack.py's Stack directly (as bench.common.Platform does), so a stack that fails
    # to start is still closed
    stack = Stack()
    try:
        stack.start()
        stack.stop_service("notifications", 0)
        for replica in range(args.replicas):
            stack.start_service("notifications", replica, CRM_WEBHOOK_ALLOW_LOOPBACK=1,
                                **service_env)
        stack.wait_service("notifications")
        for user_id in USERS:
            publish_event(stack.amqp_uri, "gateway", "user_upserted", {"user": {
                "id": user_id, "email": None, "name": user_id, "role": "agent", "active": True,
                "language": "en", "timezone": "UTC"}})
        hooks = [stack.rpc.call("notifications", "create_webhook", {
            "url": f"{receiver.base_url}/hook{i}", "events": ["task_due_soon"]})
            for i in range(args.hooks)]
        time.sleep(1)
        db = stack.db("notifications")
        expected_out = args.events * (1 + args.hooks)
        per_slice = args.slice * (1 + args.hooks)
        run = uuid.uuid4().hex[:6]
        if args.profile_slow_ms:
            profile_databases(stack.mongo, stack.db_prefix, args.profile_slow_ms)

        print(f"notifications fan-out: {args.events} task_due_soon events -> 1 in-app "
              f"notification + {args.hooks} signed webhook(s) each = {expected_out} deliveries; "
              f"{args.replicas} replica(s) {' '.join(args.env)}; {load_average()}", flush=True)
        cpu_before = cpu_seconds(SimpleNamespace(stack=stack))
        started = time.perf_counter()
        published = {}

        def publisher():
            with Connection(stack.amqp_uri) as conn:
                for i in range(args.events):
                    publish_event(stack.amqp_uri, "tasks", "task_due_soon", {
                        "task": {"id": f"t{i}", "title": f"Bench task {i}",
                                 "due_at": "2030-01-01T10:00:00Z"},
                        "assignee_id": USERS[i % len(USERS)], "offset_minutes": 15},
                        event_id=f"bench-{run}-{i}", connection=conn)
            published["seconds"] = time.perf_counter() - started

        thread = threading.Thread(target=publisher)
        thread.start()
        deadline = time.time() + args.timeout
        inbox_n = hooks_n = 0
        marks = []  # (deliveries, seconds) each time another slice is done
        next_count = 0.0
        while time.time() < deadline:
            # the stack is this bench's own: every inbox entry is one of ours. A count costs
            # SecantusDB ~90 ms at 3000 entries (it is no metadata count there), so the inbox
            # is counted every 2 s only; the webhooks received are counted here for free.
            # In-app entries are written when the event is handled, before its webhook can
            # be sent, so the slices are timed by the webhooks (each slice's deliveries/s
            # counts the in-app entries of its events too).
            if time.time() >= next_count or hooks_n >= args.events * args.hooks:
                inbox_n = db["inbox"].estimated_document_count()
                next_count = time.time() + 2
            hooks_n = len(receiver.requests)
            while (hooks_n >= (len(marks) + 1) * args.slice * args.hooks
                   and len(marks) * args.slice < args.events):
                marks.append(time.perf_counter() - started)
            if inbox_n >= args.events and hooks_n >= args.events * args.hooks:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(SimpleNamespace(stack=stack))
        load = load_average()
        thread.join()
        time.sleep(2)  # anything late (a duplicate) would show up now
        inbox_n = db["inbox"].count_documents({})

        received = [json.loads(r["body"])["event_id"] for r in receiver.requests]
        secrets_by_path = {f"/hook{i}": h["secret"] for i, h in enumerate(hooks)}
        bad_signatures = sum(
            1 for r in receiver.requests
            if r["headers"].get("X-CRM-Signature") != "sha256=" + hmac.new(
                secrets_by_path[r["path"]].encode(), r["body"], hashlib.sha256).hexdigest())
        unique_hooks = len(set(zip(received, [r["path"] for r in receiver.requests])))
        inbox_keys = len(db["inbox"].distinct("key"))
        out = inbox_n + len(received)
        print(f"  published {args.events} events in {published.get('seconds', 0):.2f} s", flush=True)
        print(f"  {'platform: deliveries (in-app + webhooks)':<44} {out / elapsed:>9.1f} /s   "
              f"({out} in {elapsed:.2f} s; {args.events / elapsed:.1f} events/s; {load})",
              flush=True)
        previous = 0.0
        slices = []
        for i, mark in enumerate(marks):
            events_in_slice = min(args.slice, args.events - i * args.slice)
            slices.append(f"{events_in_slice * (1 + args.hooks) / (mark - previous):.0f}")
            previous = mark
        print(f"  per {args.slice} events ({per_slice} deliveries), deliveries/s: "
              f"{' '.join(slices)}", flush=True)
        print(f"  {cpu_note(cpu_before, cpu_after, args.events)}", flush=True)
        print(f"  count in = count out: in-app {inbox_n}/{args.events} (unique keys {inbox_keys}), "
              f"webhooks {len(received)}/{args.events * args.hooks} (unique {unique_hooks}), "
              f"bad signatures {bad_signatures}", flush=True)
        n_ref = min(args.events, 2000)
        rate = pymongo_reference(stack, n_ref)
        print(f"  {'pymongo: insert_one of the same documents':<44} {rate:>9.1f} /s   "
              f"(one client, same server, {2 * n_ref} documents into empty collections)",
              flush=True)
        rate = pymongo_reference(stack, n_ref, batch=50)
        print(f"  {'pymongo: insert_many, 50 events a batch':<44} {rate:>9.1f} /s", flush=True)
        if args.profile_slow_ms:
            print_slow_operations(stack.mongo, stack.db_prefix)
        ok = (inbox_n == args.events and inbox_keys == args.events
              and len(received) == args.events * args.hooks
              and unique_hooks == len(received) and not bad_signatures)
        print("  RESULT:", "no loss, no duplicate" if ok else "MISMATCH", flush=True)
        return 0 if ok else 1
    finally:
        receiver.stop()
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
