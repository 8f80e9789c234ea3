"""Notifications fan-out speed: events/s turned into in-app notifications plus signed webhook
deliveries to a local receiver, with no loss (count in = count out), beside the rate at which
pymongo alone inserts the same documents on the same server.

    .venv/bin/python bench/bench_notifications.py [--events 3000] [--hooks 1] [--replicas 1]

Starts an isolated stack (tests/stack.py); the notifications service is restarted with
loopback webhooks allowed so the receiver in this process can be the target.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kombu import Connection  # noqa: E402

from crm_common.publish import publish_event  # noqa: E402
from tests.fake_receivers import HttpRecorder  # noqa: E402
from tests.stack import Stack  # noqa: E402

USERS = [f"bench-user-{i}" for i in range(50)]


def pymongo_reference(stack, n):
    """The same two documents per event (inbox entry, webhook delivery), inserted one by one
    with their unique keys, into scratch collections with the service's key indexes."""
    db = stack.mongo[f"{stack.db_prefix}bench_reference"]
    inbox, outbox = db["inbox"], db["deliveries"]
    inbox.create_index("key", unique=True)
    outbox.create_index("key", unique=True)
    outbox.create_index("due_at", sparse=True)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    for i in range(n):
        event_id = uuid.uuid4().hex
        inbox.insert_one({"_id": uuid.uuid4().hex[:24], "key": f"{event_id}:{USERS[i % 50]}",
                          "user_id": USERS[i % 50], "title": "Due in 15 min", "body": "x" * 120,
                          "read_at": None, "created_at": now})
        outbox.insert_one({"_id": uuid.uuid4().hex[:24], "key": f"{event_id}:webhook:h:webhook",
                           "event_id": event_id, "status": "pending", "due_at": now,
                           "body": "x" * 300, "created_at": now})
    return 2 * n / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--hooks", type=int, default=1, help="webhook subscriptions per event")
    parser.add_argument("--replicas", type=int, default=1, help="notifications replicas")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    receiver = HttpRecorder().start()
    # tests/stack.py's Stack directly (as bench.common.Platform does), so a stack that fails
    # to start is still closed
    stack = Stack()
    try:
        stack.start()
        stack.stop_service("notifications", 0)
        for replica in range(args.replicas):
            stack.start_service("notifications", replica, CRM_WEBHOOK_ALLOW_LOOPBACK=1)
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
        run = uuid.uuid4().hex[:6]

        print(f"notifications fan-out: {args.events} task_due_soon events -> 1 in-app "
              f"notification + {args.hooks} signed webhook(s) each = {expected_out} deliveries; "
              f"{args.replicas} replica(s)", flush=True)
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
        while time.time() < deadline:
            # the stack is this bench's own: every inbox entry is one of ours (a metadata
            # count, so watching does not load the server being measured)
            inbox_n = db["inbox"].estimated_document_count()
            hooks_n = len(receiver.requests)
            if inbox_n >= args.events and hooks_n >= args.events * args.hooks:
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        thread.join()
        time.sleep(1)  # anything late (a duplicate) would show up now

        received = [json.loads(r["body"])["event_id"] for r in receiver.requests]
        secrets_by_path = {f"/hook{i}": h["secret"] for i, h in enumerate(hooks)}
        bad_signatures = sum(
            1 for r in receiver.requests
            if r["headers"].get("X-CRM-Signature") != "sha256=" + hmac.new(
                secrets_by_path[r["path"]].encode(), r["body"], hashlib.sha256).hexdigest())
        out = inbox_n + len(received)
        print(f"  published {args.events} events in {published.get('seconds', 0):.2f} s", flush=True)
        print(f"  {'platform: deliveries (in-app + webhooks)':<44} {out / elapsed:>9.1f} /s   "
              f"({out} in {elapsed:.2f} s; {args.events / elapsed:.1f} events/s)", flush=True)
        print(f"  count in = count out: in-app {inbox_n}/{args.events}, webhooks "
              f"{len(received)}/{args.events * args.hooks} (unique {len(set(zip(received, [r['path'] for r in receiver.requests])))}), "
              f"bad signatures {bad_signatures}", flush=True)
        rate = pymongo_reference(stack, min(args.events, 2000))
        print(f"  {'pymongo: insert_one of the same documents':<44} {rate:>9.1f} /s   "
              f"(one client, same server)", flush=True)
        ok = inbox_n == args.events and len(received) == args.events * args.hooks and not bad_signatures
        print("  RESULT:", "no loss, no duplicate" if ok else "MISMATCH", flush=True)
    finally:
        receiver.stop()
        stack.close()


if __name__ == "__main__":
    main()
