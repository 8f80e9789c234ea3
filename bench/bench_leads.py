"""Inbound leads speed: web form posts through the gateway (the 202 a website waits for) and
how long until each request is routed (contact matched or created, deal opened, owner
chosen, first-touch task), beside pymongo storing the same raw request on the same server.

    .venv/bin/python bench/bench_leads.py [--posts 200] [--clients 8] [--seconds 20]

Starts an isolated stack (tests/stack.py) with the form rate limits lifted.
"""
import argparse
import os
import sys
import time
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("CRM_FORM_RATE_PER_IP_PER_MINUTE", "1000000")
os.environ.setdefault("CRM_FORM_RATE_PER_FORM_PER_MINUTE", "1000000")
os.environ.setdefault("CRM_FORM_RATE_GLOBAL_PER_MINUTE", "1000000")

import requests  # noqa: E402

from bench.common import Platform, http_load, row, summarize  # noqa: E402

FORM_KEY = None  # set before the load processes fork


def form_post(seed, index, counter):
    return ("POST", f"/api/v1/forms/{FORM_KEY}/submissions",
            {"name": f"Bench Lead {counter}", "email": f"b-{seed}-{index}-{counter}@bench.example",
             "phone": f"+39 347 {abs(hash((seed, index))) % 1000:03d} {counter:04d}",
             "message": "Please call me back", "utm_source": "bench", "utm_campaign": "load"})


def pymongo_reference(platform, n):
    """The raw request stored with the same indexes, one insert_one per post."""
    import pymongo
    client = pymongo.MongoClient(platform.mongo_url, tz_aware=True)
    requests_ = client[f"{platform.db_prefix}bench_reference"]["inbound_requests"]
    requests_.create_index([("received_at", -1), ("_id", -1)])
    for field in ("status", "channel", "form_id", "contact_id"):
        requests_.create_index([(field, 1), ("received_at", -1), ("_id", -1)])
    requests_.create_index([("pending", 1), ("next_attempt_at", 1)])
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        doc = {"_id": uuid.uuid4().hex, "channel": "form", "form_id": "f", "status": "received",
               "received_at": datetime.now(timezone.utc), "pending": True,
               "next_attempt_at": datetime.now(timezone.utc), "contact_id": None,
               "payload": form_post("ref", 0, i)[2]}
        t = time.perf_counter()
        requests_.insert_one(doc)
        latencies.append(time.perf_counter() - t)
    result = summarize(latencies, time.perf_counter() - start)
    client.close()
    return result


def routed_count(api, form_id):
    """Requests of the form routed so far (walks the keyset pages)."""
    routed, cursor = 0, None
    while True:
        params = {"form_id": form_id, "limit": 500, **({"cursor": cursor} if cursor else {})}
        page = api.get("/inbound/requests", params=params).json()
        routed += sum(1 for r in page["items"] if r["status"] == "routed")
        cursor = page.get("next_cursor")
        if not cursor:
            return routed


def main():
    global FORM_KEY
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--profile-slow-ms", type=int, default=0,
                        help="list the server's operations slower than this (profiler)")
    args = parser.parse_args()
    platform = Platform()
    try:
        api = platform.stack.sign_in()
        admin_id = api.get("/users/me").json()["id"]
        form = api.post("/forms", json={"name": "Bench form", "owner_rule": {
            "kind": "fixed", "user_id": admin_id}, "first_task": {"due_minutes": 15}})
        assert form.status_code == 201, form.text
        form = form.json()
        FORM_KEY = form["key"]
        url = f"{platform.base_url}/api/v1/forms/{FORM_KEY}/submissions"
        if args.profile_slow_ms:
            import pymongo
            from bench.common import print_slow_operations, profile_databases
            profiler = pymongo.MongoClient(platform.mongo_url)
            profile_databases(profiler, platform.db_prefix, args.profile_slow_ms)
        print(f"inbound leads bench ({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})")

        session, latencies = requests.Session(), []
        started = time.perf_counter()
        for i in range(args.posts):
            body = form_post("seq", 0, i)[2]
            t = time.perf_counter()
            answer = session.post(url, json=body, timeout=30)
            latencies.append(time.perf_counter() - t)
            assert answer.status_code == 202, answer.text
        posted = time.perf_counter() - started
        row("form post, 1 client (202 answer)", summarize(latencies, posted))
        while routed_count(api, form["id"]) < args.posts:
            time.sleep(0.5)
            if time.perf_counter() - started > 600:
                print("  not all routed after 600 s")
                break
        done = time.perf_counter() - started
        print(f"  {args.posts} posts routed (contact, deal, owner) {done:.1f} s after the first: "
              f"{args.posts / done:.1f} leads/s end to end")

        result, statuses = http_load(platform.base_url, form_post, args.clients, args.seconds)
        row(f"form post, {args.clients} clients (202 answer)", result, f"statuses={statuses}")
        row("pymongo insert_one of the raw request (same server)", pymongo_reference(platform, args.posts))
        if args.profile_slow_ms:
            print_slow_operations(profiler, platform.db_prefix)
    finally:
        platform.close()


if __name__ == "__main__":
    main()
