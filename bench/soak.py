"""Fault-injection soak: a mixed load through the gateway while one contacts replica is
killed (SIGKILL) and restarted, then RabbitMQ itself is restarted. Afterwards it checks
that nothing accepted was lost and nothing happened twice, and prints the figures.

    .venv/bin/python bench/soak.py [--seconds 90]

It runs its own RabbitMQ node (tests.faults.PrivateBroker) so restarting the broker
disturbs nothing else on the machine, and its own database and services (tests.stack).
Exit status 0 only if every check holds.
"""
import argparse
import os
import random
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from tests.faults import PrivateBroker  # noqa: E402
from tests.stack import Stack  # noqa: E402


class Load:
    def __init__(self, base_url, token, api_key):
        self.base_url = base_url
        self.user = {"Authorization": f"Bearer {token}"}
        self.integration = {"X-API-Key": api_key}
        self.lock = threading.Lock()
        self.results = []  # (time, kind, status)
        self.created = {}  # contact id -> phone, for every 201
        self.calls = {}  # call_id -> contact id, for every call whose 3 events got a 2xx
        self.stop = threading.Event()

    def record(self, kind, status):
        with self.lock:
            self.results.append((time.monotonic(), kind, status))

    def request(self, session, kind, method, path, headers, **kw):
        try:
            answer = session.request(method, self.base_url + path, headers=headers, timeout=15, **kw)
            self.record(kind, answer.status_code)
            return answer
        except requests.RequestException:
            self.record(kind, "connection_error")
            return None

    def writer(self, n):
        session = requests.Session()
        while not self.stop.is_set():
            phone = f"+3933{random.randrange(10**7, 10**8)}"
            answer = self.request(session, "contact_create", "POST", "/api/v1/contacts", self.user,
                                  json={"first_name": "Soak", "last_name": f"w{n}",
                                        "phones": [phone]}, params={"force": "true"})
            if answer is not None and answer.status_code == 201:
                with self.lock:
                    self.created[answer.json()["id"]] = phone

    def reader(self):
        session = requests.Session()
        while not self.stop.is_set():
            with self.lock:
                ids = list(self.created)
            if not ids:
                time.sleep(0.1)
                continue
            self.request(session, "contact_read", "GET", f"/api/v1/contacts/{random.choice(ids)}",
                         self.user)

    def caller(self):
        session = requests.Session()
        while not self.stop.is_set():
            with self.lock:
                known = list(self.created.items())
            if not known:
                time.sleep(0.1)
                continue
            contact_id, phone = random.choice(known)
            call_id = uuid.uuid4().hex
            ok = True
            for state, extra in (("ringing", {}), ("answered", {}),
                                 ("ended", {"outcome": "answered", "duration_s": 30})):
                body = {"event_id": f"{call_id}-{state}", "provider": "soak", "call_id": call_id,
                        "direction": "inbound", "from": phone, "to": "+390200000000",
                        "state": state, **extra}
                answer = self.request(session, "call_event", "POST", "/api/v1/telephony/events",
                                      self.integration, json=body)
                while answer is None or answer.status_code >= 500:  # a PBX retries until 2xx
                    if self.stop.is_set():
                        ok = False
                        break
                    time.sleep(0.5)
                    answer = self.request(session, "call_event", "POST", "/api/v1/telephony/events",
                                          self.integration, json=body)
                if not ok or answer.status_code >= 400:
                    ok = False
                    break
            if ok:
                with self.lock:
                    self.calls[call_id] = contact_id


def wait_until(check, timeout, step=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def wait_for_write(load, since, timeout):
    """When the first contact write after `since` was accepted (2xx)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with load.lock:
            done = [t for t, kind, status in load.results
                    if t >= since and kind == "contact_create" and status == 201]
        if done:
            return min(done)
        time.sleep(0.2)
    return None


def wait_ready(base_url, timeout):
    """When /readyz turned green, or (None, the checks still failing)."""
    deadline = time.monotonic() + timeout
    failing = None
    while time.monotonic() < deadline:
        try:
            answer = requests.get(base_url + "/readyz", timeout=5)
            if answer.status_code == 200:
                return time.monotonic(), None
            failing = {k: v.get("code") for k, v in answer.json()["checks"].items() if not v["ok"]}
        except (requests.RequestException, ValueError) as exc:
            failing = str(exc)
        time.sleep(1)
    return None, failing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=90)
    args = parser.parse_args()
    broker = PrivateBroker().start()
    stack = Stack(amqp_uri=broker.uri)
    failures = []
    try:
        stack.start()
        stack.start_service("contacts", 1)
        stack.wait_service("contacts")
        admin = stack.sign_in()
        token = admin.headers["Authorization"].split(" ", 1)[1]
        key = admin.post("/api-keys", json={"name": "soak", "scopes": ["telephony:write"],
                                            "rate_limit_per_minute": 1_000_000}).json()["key"]
        load = Load(stack.base_url, token, key)
        workers = [threading.Thread(target=load.writer, args=(i,)) for i in range(2)]
        workers += [threading.Thread(target=load.reader) for _ in range(2)]
        workers += [threading.Thread(target=load.caller) for _ in range(2)]
        start = time.monotonic()
        for w in workers:
            w.start()
        outages = []
        time.sleep(args.seconds * 0.3)
        print("fault 1: SIGKILL contacts replica 1", flush=True)
        t0 = time.monotonic()
        stack.processes["contacts-1"].send_signal(signal.SIGKILL)
        stack.processes.pop("contacts-1").wait()
        time.sleep(5)
        stack.start_service("contacts", 1)
        stack.wait_service("contacts")
        outages.append(("replica killed", t0, time.monotonic()))
        time.sleep(args.seconds * 0.3)
        print("fault 2: restart RabbitMQ", flush=True)
        t0 = time.monotonic()
        broker.stop()
        time.sleep(3)
        broker.start()
        started = time.monotonic()
        first_write = wait_for_write(load, started, 120)
        ready, still_failing = wait_ready(stack.base_url, 120)
        recovered = max(first_write or started, ready or started)
        outages.append(("broker restart", t0, recovered))
        print(f"  broker back after {started - t0:.1f} s; first accepted write "
              f"{(first_write - started) if first_write else float('nan'):.1f} s later; /readyz green "
              f"{(ready - started) if ready else float('nan'):.1f} s later"
              + (f"; still failing: {still_failing}" if still_failing else ""), flush=True)
        time.sleep(max(0.0, args.seconds - (time.monotonic() - start)))
        load.stop.set()
        for w in workers:
            w.join(60)
        elapsed = time.monotonic() - start

        # --- checks
        contacts = stack.db("contacts")["contacts"]
        missing = [cid for cid in load.created if not contacts.find_one({"_id": cid}, {"_id": 1})]
        if missing:
            failures.append(f"{len(missing)} contacts answered 201 but are not in the database")
        calls = stack.db("telephony")["calls"]
        timeline = stack.db("contacts")["timeline"]

        def calls_settled():
            return calls.count_documents({"provider": "soak", "state": "ended"}) >= len(load.calls)
        wait_until(calls_settled, 60)
        doubled, lost, entries_wrong = 0, 0, 0
        for call_id, contact_id in load.calls.items():
            records = list(calls.find({"provider": "soak", "call_id": call_id}))
            if len(records) != 1 or records[0].get("state") != "ended":
                lost += len(records) == 0
                doubled += len(records) > 1
                continue
        wait_until(lambda: timeline.count_documents({"kind": "call_ended"}) >= len(load.calls), 60)
        for call_id, contact_id in load.calls.items():
            record = calls.find_one({"provider": "soak", "call_id": call_id}, {"_id": 1})
            if record is None:
                continue
            n = timeline.count_documents({"contact_id": contact_id, "kind": "call_ended",
                                          "ref.id": record["_id"]})
            entries_wrong += n != 1
        if lost or doubled:
            failures.append(f"calls: {lost} lost, {doubled} recorded twice")
        if entries_wrong:
            failures.append(f"{entries_wrong} calls without exactly one call_ended timeline entry")

        grace = 10.0
        def in_outage(t):
            return any(a - 1 <= t <= b + grace for _, a, b in outages)
        by_status, stray = {}, {}
        for t, kind, status in load.results:
            by_status[status] = by_status.get(status, 0) + 1
            if (status == "connection_error" or (isinstance(status, int) and status >= 500)) \
                    and not in_outage(t):
                stray[status] = stray.get(status, 0) + 1
        if stray:
            failures.append(f"errors outside the outage windows: {stray}")

        print(f"\nsoak: {elapsed:.0f} s, {len(load.results)} requests "
              f"({len(load.results) / elapsed:.0f}/s), statuses {dict(sorted(by_status.items(), key=str))}")
        print(f"  contacts created (201): {len(load.created)}, all present: {not missing}")
        print(f"  calls completed (3 events 2xx): {len(load.calls)}, one record each: "
              f"{not (lost or doubled)}, one timeline entry each: {not entries_wrong}")
        for name, a, b in outages:
            print(f"  {name}: recovered in {b - a:.1f} s")
        print("  errors outside outage windows (+10 s grace):", stray or "none")
        print("RESULT:", "PASS" if not failures else "FAIL: " + "; ".join(failures))
    finally:
        stack.close()
        broker.close()
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
