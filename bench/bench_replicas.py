"""Throughput with 1, 2 and 3 contacts replicas under the same load: GET /api/v1/contacts/{id}
at 16 clients through the gateway, requests/s and p99 side by side, and the ratio to one
replica. On a 2-core machine the gain flattens (every process shares the same 2 cores);
the figure is printed, not asserted.

    .venv/bin/python bench/bench_replicas.py [--seconds 10] [--clients 16]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import bench_gateway  # noqa: E402
from bench.common import Platform, http_load, row, thread_load  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    platform = Platform()
    try:
        headers = platform.auth_headers()
        http_load(platform.base_url, bench_gateway.write_request, 8, 3, headers)  # seed
        db = platform.stack.db("contacts")
        bench_gateway.IDS.extend(d["_id"] for d in db.contacts.find({}, {"_id": 1}).limit(2000))
        ids = list(bench_gateway.IDS)
        print(f"GET /api/v1/contacts/{{id}} over {len(ids)} contacts, {args.clients} clients, "
              f"{args.seconds:.0f} s per setting")
        reference = thread_load(lambda i, c: db.contacts.find_one({"_id": ids[(i * 7919 + c) % len(ids)]}),
                                args.clients, args.seconds)
        row("reference: pymongo find_one", reference)
        baseline = None
        for replicas in (1, 2, 3):
            for extra in range(1, replicas):
                if f"contacts-{extra}" not in platform.stack.processes:
                    platform.stack.start_service("contacts", extra)
            platform.stack.wait_service("contacts")
            result, statuses = http_load(platform.base_url, bench_gateway.read_request,
                                         args.clients, args.seconds, headers)
            baseline = baseline or result["rps"]
            row(f"{replicas} contacts replica(s)", result,
                f"x{result['rps'] / baseline:.2f} of 1 replica, statuses={statuses}")
    finally:
        platform.close()


if __name__ == "__main__":
    main()
