"""Tasks speed: create, list (one assignee's page), agenda, and the timer's notice
throughput, each beside the same work done directly with pymongo on the same server.

    .venv/bin/python bench/bench_tasks.py [--seconds 6] [--backlog 2000]

Starts an isolated stack (tests/stack.py), with the tasks service ticking every second.
"""
import argparse
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import Platform, http_load, row, thread_load  # noqa: E402
from crm_common.errors import Timeout, Unavailable  # noqa: E402
from crm_common.messaging.publish import publish_event  # noqa: E402
from crm_common.timeutil import to_iso  # noqa: E402

ASSIGNEES = [f"bench-user-{i}" for i in range(20)]
FUTURE = datetime.now(timezone.utc) + timedelta(days=30)


def create_request(seed, index, counter):
    due = FUTURE + timedelta(minutes=(index * 1000 + counter) % 50000)
    return "POST", "/api/v1/tasks", {"title": f"Bench {seed} {counter}", "kind": "call",
                                     "assignee_id": ASSIGNEES[(index + counter) % len(ASSIGNEES)],
                                     "due_at": to_iso(due), "reminders": [15]}


def list_request(seed, index, counter):
    return "GET", f"/api/v1/tasks?assignee_id={ASSIGNEES[(index + counter) % len(ASSIGNEES)]}&limit=50", None


def agenda_request(seed, index, counter):
    return "GET", f"/api/v1/agenda?assignee_id={ASSIGNEES[(index + counter) % len(ASSIGNEES)]}", None


def task_doc(n):
    due = FUTURE + timedelta(minutes=n % 50000)
    now = datetime.now(timezone.utc)
    return {"_id": uuid.uuid4().hex[:24], "kind": "call", "title": f"raw {n}", "due_at": due,
            "sort_due": due, "assignee_id": ASSIGNEES[n % len(ASSIGNEES)], "status": "open",
            "reminders": [15], "created_at": now, "updated_at": now, "version": 1,
            "alarm_at": due - timedelta(minutes=15)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--timer-only", action="store_true")
    args = parser.parse_args()

    platform = Platform()
    stack = platform.stack
    stack.stop_service("tasks", 0)
    stack.start_service("tasks", 0, CRM_TASKS_TICK_SECONDS=1)
    stack.wait_service("tasks")
    headers = platform.auth_headers()
    for user in ASSIGNEES:
        publish_event(stack.amqp_uri, "gateway", "user_upserted", {"user": {"id": user, "active": True}})
    time.sleep(1.5)
    db = stack.db("tasks")
    raw = stack.mongo[f"{stack.db_prefix}bench_raw"]["tasks"]
    raw.create_index([("assignee_id", 1), ("sort_due", 1), ("_id", 1)])
    try:
        print(f"tasks benchmark ({args.seconds:.0f} s per figure)")
        for clients in (() if args.timer_only else (1, 8)):
            result, statuses = http_load(stack.base_url, create_request, clients, args.seconds, headers)
            row(f"POST /tasks, {clients} clients", result, str(statuses))
            counter = iter(range(10**9))
            ref = thread_load(lambda i, c: raw.insert_one(task_doc(next(counter))), clients, args.seconds / 2)
            row(f"  pymongo insert_one, {clients} clients", ref)
        print(f"  ({db['tasks'].count_documents({})} tasks stored)")
        for clients in (() if args.timer_only else (1, 8)):
            result, statuses = http_load(stack.base_url, list_request, clients, args.seconds, headers)
            row(f"GET /tasks?assignee_id= (50), {clients} clients", result, str(statuses))
            ref = thread_load(lambda i, c: list(db["tasks"].find({"assignee_id": ASSIGNEES[(i + c) % 20]})
                                                .sort([("sort_due", 1), ("_id", 1)]).limit(51)),
                              clients, args.seconds / 2)
            row(f"  pymongo find same page, {clients} clients", ref)
        now = datetime.now(timezone.utc)
        if not args.timer_only:
            result, statuses = http_load(stack.base_url, agenda_request, 8, args.seconds, headers)
            row("GET /agenda (with the deals call), 8 clients", result, str(statuses))

        def raw_agenda(i, c):
            who = ASSIGNEES[(i + c) % 20]
            list(db["tasks"].find({"assignee_id": who, "status": "open", "sort_due": {"$lt": now}}).limit(100))
            list(db["tasks"].find({"assignee_id": who, "status": "open",
                                   "sort_due": {"$gte": now, "$lt": now + timedelta(hours=12)}}).limit(100))
        if not args.timer_only:
            row("  pymongo the agenda's two finds, 8 clients", thread_load(raw_agenda, 8, args.seconds / 2))

        # timer: a backlog of tasks all overdue at once -> one task_overdue each
        overdue_due = to_iso(now - timedelta(minutes=5))
        docs = [{"title": f"late {n}", "assignee_id": ASSIGNEES[n % 20], "due_at": overdue_due}
                for n in range(args.backlog)]
        stack.stop_service("tasks", 0)  # build the backlog while no timer runs
        stack.start_service("tasks", 0, CRM_TASKS_TICK_SECONDS=3600)
        stack.wait_service("tasks")
        for doc in docs:
            for attempt in range(5):  # a loaded shared machine times a call out now and then
                try:
                    stack.rpc.call("tasks", "create_task", doc)
                    break
                except (Timeout, Unavailable):
                    time.sleep(1 + attempt)
        print(f"  timer: backlog of {len(docs)} overdue tasks built", flush=True)
        stack.stop_service("tasks", 0)
        started = time.perf_counter()
        stack.start_service("tasks", 0, CRM_TASKS_TICK_SECONDS=1)
        stack.wait_service("tasks")
        notices = db["notices"]
        while notices.count_documents({"kind": "task_overdue", "state": "sent"}) < args.backlog:
            if time.perf_counter() - started > 300:
                break
            time.sleep(0.2)
        took = time.perf_counter() - started
        sent = notices.count_documents({"kind": "task_overdue", "state": "sent"})
        print(f"  timer: {sent} overdue notices in {took:.1f} s incl. ~2-3 s process start "
              f"= {sent / took:.0f} notices/s (claim + event + mark sent + next alarm)")
        claims = stack.mongo[f"{stack.db_prefix}bench_raw"]["claims"]
        t0 = time.perf_counter()
        for n in range(args.backlog):
            claims.update_one({"_id": f"k{n}"}, {"$setOnInsert": {"state": "claimed"}}, upsert=True)
            claims.update_one({"_id": f"k{n}"}, {"$set": {"state": "sent"}})
            raw.update_one({"_id": f"none{n}"}, {"$set": {"alarm_at": None}})
        ref_took = time.perf_counter() - t0
        print(f"  pymongo same 3 writes per notice: {args.backlog / ref_took:.0f} notices/s")
    finally:
        platform.close()


if __name__ == "__main__":
    main()
