"""What a permission check costs per request (issue 25: <= 0.5 ms): the gateway's check
functions alone, in this process (auth.authorize with its permission cell or a custom
role's grants, field_access.guard, its check of the parameters and body and its redaction
of the answer), for a built-in role and for a custom role with field grants; then the same
GETs through the whole stack signed in as the admin (built-in) and as a custom "operator"
(deal amounts and a custom field hidden), with the CPU per request of each process, beside
a raw pymongo find_one of the same record.

    .venv/bin/python bench/bench_permissions.py [--seconds 5] [--clients 1,8]

Starts an isolated stack (tests/stack.py). Run it under `flock /tmp/bench.lock`.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymongo  # noqa: E402

from bench.common import (Platform, cpu_note, cpu_seconds, http_load, load_average,  # noqa: E402
                          row, thread_load)

ROLE = "bench-operator"
GRANTS = {"contacts": {"read": "all", "create": "all", "edit": "all"},
          "deals": {"read": "all", "edit": "all"}, "search": {"read": "all"}}
FIELDS = {"deals": {"amount": "hidden", "custom.bench_secret": "hidden",
                    "contact_id": "read"},
          "contacts": {"custom.bench_secret": "hidden", "owner_id": "read"}}
PATHS = []   # the GET being measured (set before the load processes fork)


def get_request(seed, index, counter):
    return "GET", PATHS[0], None


def deal_record(i):
    return {"id": f"{i:024x}", "title": f"Deal {i}", "amount": 100000 + i, "currency": "EUR",
            "status": "open", "contact_id": f"{i + 1:024x}", "owner_id": "u1",
            "custom": {"bench_secret": "x", "size": "L"}, "version": 1}


def checks_alone(seconds):
    """µs per request of the gateway's checks, built-in vs custom role, per route."""
    from flask import Flask, g

    from gateway import auth, field_access
    from gateway.permissions import _routes, permission_of
    routes = {(r.method, r.path): r for r in _routes()}
    built_in = {"kind": "user", "user_id": "u1", "role": "manager", "team": "t",
                "team_members": ["u1", "u2"], "scopes": []}
    custom = {"kind": "user", "user_id": "u1", "role": ROLE, "team": None, "team_members": [],
              "scopes": [], "grants": GRANTS, "fields": FIELDS}
    page = {"items": [deal_record(i) for i in range(50)], "next_cursor": None}
    cases = (("GET /deals/{id} (one deal)", ("GET", "/api/v1/deals/{deal_id}"), {}, None,
              deal_record(1)),
             ("GET /deals (a page of 50)", ("GET", "/api/v1/deals"),
              {"status": "open", "sort": "-created_at"}, None, page),
             ("PATCH /deals/{id}", ("PATCH", "/api/v1/deals/{deal_id}"), {},
              {"title": "x", "stage_id": "s"}, deal_record(2)),
             ("GET /contacts/{id}", ("GET", "/api/v1/contacts/{contact_id}"), {}, None,
              {"id": "c1", "first_name": "A", "custom": {"bench_secret": 1}}))
    app = Flask(__name__)
    out = []
    for label, key, params, body, answer in cases:
        route = routes[key]
        figures = []
        for identity in (built_in, custom):
            with app.test_request_context(route.path, method=route.method):
                g.identity = identity

                def one():
                    auth.authorize(route)
                    guard = field_access.guard(g.identity, route, permission_of(route))
                    if guard is not None:
                        guard.check(params, body)
                        guard.redact(answer)

                count, started = 0, time.perf_counter()
                stop = started + seconds
                while time.perf_counter() < stop:
                    for _ in range(200):
                        one()
                    count += 200
                figures.append((time.perf_counter() - started) / count * 1e6)
        out.append((label, *figures))
    return out


def make_operator(api_base, headers):
    import requests
    session = requests.Session()
    session.headers.update(headers)
    for entity in ("deal", "contact"):
        session.post(api_base + "/custom-fields", json={
            "entity": entity, "key": "bench_secret", "label": "Secret", "type": "text"},
            timeout=30)
    made = session.post(api_base + "/roles", json={"name": ROLE, "label": "Operator",
                                                   "permissions": GRANTS, "fields": FIELDS},
                        timeout=30)
    assert made.status_code in (201, 409), made.text
    email, password = "bench-operator@bench.example", "operator-" + "x" * 12
    user = session.post(api_base + "/users", json={"email": email, "password": password,
                                                   "name": "Operator", "role": ROLE}, timeout=30)
    assert user.status_code in (201, 409), user.text
    login = requests.post(api_base + "/auth/login", json={"email": email, "password": password},
                          timeout=30)
    login.raise_for_status()
    contact = session.post(api_base + "/contacts", json={
        "first_name": "Perm", "last_name": "Bench", "emails": ["perm@bench.example"],
        "custom": {"bench_secret": "hidden text"}}, timeout=30).json()
    deal = session.post(api_base + "/deals", json={
        "title": "Perm deal", "amount": 123456, "currency": "EUR", "contact_id": contact["id"],
        "custom": {"bench_secret": "hidden text"}}, timeout=30).json()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}, contact["id"], deal["id"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", default="1,8")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    print(f"permission checks alone (this process, 1 thread), µs per request; {load_average()}")
    print(f"  {'route':<32} {'built-in role':>14} {'custom role + field grants':>28}")
    for label, built_in, custom in checks_alone(min(args.seconds, 2)):
        print(f"  {label:<32} {built_in:>11.1f} µs {custom:>25.1f} µs", flush=True)

    platform = Platform()
    try:
        admin = platform.auth_headers()
        base = platform.base_url + "/api/v1"
        operator, contact_id, deal_id = make_operator(base, admin)
        db = pymongo.MongoClient(platform.mongo_url)
        print(f"\nthrough the stack, {args.seconds:.0f} s each; admin = built-in role, "
              f"operator = custom role with field grants")
        for label, path, collection in (("GET /contacts/{id}", f"/api/v1/contacts/{contact_id}",
                                         db[f"{platform.db_prefix}contacts"].contacts),
                                        ("GET /deals/{id}", f"/api/v1/deals/{deal_id}",
                                         db[f"{platform.db_prefix}deals"].deals)):
            record_id = path.rsplit("/", 1)[1]
            PATHS[:] = [path]
            for who, headers in (("admin", admin), ("operator", operator)):
                for n in clients:
                    load, cpu = load_average(), cpu_seconds(platform)
                    result, statuses = http_load(platform.base_url, get_request, n,
                                                 args.seconds, headers)
                    row(f"{label} as {who}, {n} client(s)", result,
                        f"statuses={statuses} ({load})")
                    print(f"      {cpu_note(cpu, cpu_seconds(platform), max(result['n'], 1))}"
                          .replace("/event", "/request"), flush=True)
            for n in clients:
                result = thread_load(lambda i, c: collection.find_one({"_id": record_id}), n,
                                     min(args.seconds, 3))
                row(f"reference: pymongo find_one, {n} thread(s)", result)
    finally:
        platform.close()


if __name__ == "__main__":
    main()
