"""What authentication costs per request, and what a sign-in costs.

    .venv/bin/python bench/bench_auth.py [--seconds 5] [--clients 8]

Measured on an isolated stack (tests/stack.py), with the same work done directly with
pymongo on the same server beside it:
- GET /healthz (no auth, no RPC): the bare gunicorn + Flask floor;
- GET /api/v1/users/me with a Bearer token: JWT check, user load, rate-limit upsert, then
  the handler's user read (no RPC) -- vs pymongo doing those three operations;
- GET /api/v1/contacts?limit=1 with a token and with an API key (auth + one RPC);
- POST /api/v1/auth/login (argon2id verify) -- vs argon2 verify alone in this process.
"""
import argparse
import os
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymongo  # noqa: E402
import requests  # noqa: E402
from pymongo import ReturnDocument  # noqa: E402

from bench.common import Platform, http_load, row, summarize, thread_load  # noqa: E402


def healthz(seed, index, counter):
    return "GET", "/healthz", None


def me(seed, index, counter):
    return "GET", "/api/v1/users/me", None


def contacts(seed, index, counter):
    return "GET", "/api/v1/contacts?limit=1", None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    platform = Platform()
    try:
        run(platform, args.seconds, args.clients)
    finally:
        platform.close()


def run(platform, seconds, clients):
    stack = platform.stack
    base = platform.base_url
    admin = stack.sign_in()
    token = {"Authorization": admin.headers["Authorization"]}
    key = admin.post("/api-keys", json={"name": "bench", "scopes": ["contacts:read"]}).json()
    key_headers = {"X-API-Key": key["key"]}
    for i in range(20):
        admin.post("/contacts", json={"first_name": "Bench", "last_name": str(i)})

    print(f"auth overhead, {clients} keep-alive clients, {seconds:.0f} s each "
          f"(gateway {base}, 2 gunicorn workers x 8 threads)")
    for label, make, headers in (("GET /healthz (no auth)", healthz, {}),
                                 ("GET /users/me (Bearer)", me, token),
                                 ("GET /contacts?limit=1 (Bearer)", contacts, token),
                                 ("GET /contacts?limit=1 (X-API-Key)", contacts, key_headers)):
        http_load(base, make, clients, 1.0, headers)  # warm-up
        result, statuses = http_load(base, make, clients, seconds, headers)
        row(label, result, f"statuses={statuses}")

    db = pymongo.MongoClient(stack.mongo_url, tz_aware=True)[f"{stack.db_prefix}gateway"]
    user_id = admin.user["id"]

    def auth_work(index, counter):
        db.users.find_one({"_id": user_id})
        window = int(time.time()) // 60 * 60
        db.rate_limits.find_one_and_update(
            {"_id": f"bench:{index}:{window}"},
            {"$inc": {"n": 1}, "$setOnInsert": {"expires_at": datetime.now(timezone.utc)}},
            upsert=True, return_document=ReturnDocument.AFTER)
        db.users.find_one({"_id": user_id})

    thread_load(auth_work, clients, 1.0)
    row("pymongo: the same 3 operations (reference)", thread_load(auth_work, clients, seconds))

    print("sign-in (argon2id verify), sequential")
    login_latencies = []
    started = time.monotonic()
    for _ in range(15):
        start = time.perf_counter()
        answer = requests.post(base + "/api/v1/auth/login", timeout=30,
                               json={"email": stack.admin_email, "password": stack.admin_password})
        login_latencies.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text
    row("POST /auth/login", summarize(login_latencies, time.monotonic() - started))
    from gateway.auth import hasher
    stored = hasher.hash("bench-password")
    verify_latencies = []
    started = time.monotonic()
    for _ in range(15):
        start = time.perf_counter()
        hasher.verify(stored, "bench-password")
        verify_latencies.append(time.perf_counter() - start)
    row("argon2 verify alone (reference)", summarize(verify_latencies, time.monotonic() - started))


if __name__ == "__main__":
    main()
