"""Gateway read/write speed: GET /api/v1/contacts/{id} and POST /api/v1/contacts at 1 and
16 concurrent clients, beside two references measured in the same run on the same
servers: a raw pymongo find_one/insert_one and a raw AMQP request/reply round trip.

    .venv/bin/python bench/bench_gateway.py [--seconds 8] [--url http://127.0.0.1:8000 \
        --amqp amqp://guest:guest@localhost:5672/ --mongo mongodb://127.0.0.1:27017/]

Targets (2-core machine): sequential read p50 <= 5 ms; >= 400 reads/s at 16 clients;
throughput must not fall from 1 to 16 clients.
"""
import argparse
import os
import socket
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pymongo  # noqa: E402
from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402

from bench.common import (Platform, cpu_note, cpu_seconds, http_load, load_average,  # noqa: E402
                          row, thread_load)

SEED_CONTACTS = 2000
IDS = []
TOKEN = {}


def read_request(seed, index, counter):
    return "GET", f"/api/v1/contacts/{IDS[(index * 7919 + counter) % len(IDS)]}", None


def write_request(seed, index, counter):
    key = f"{seed}-{index}-{counter}"
    return "POST", "/api/v1/contacts", {"first_name": "Bench", "last_name": key,
                                        "emails": [f"b{key}@bench.example"], "tags": ["bench"]}


def amqp_round_trip(amqp_uri, seconds):
    """A raw request/reply over RabbitMQ: publish to a queue, an echo consumer replies."""
    exchange = Exchange("bench.raw", type="direct", durable=False, auto_delete=True)
    request_q = Queue(f"bench-req-{uuid.uuid4().hex[:6]}", exchange, routing_key="req",
                      exclusive=True, auto_delete=True)
    stop = threading.Event()
    ready = threading.Event()

    def echo():
        with Connection(amqp_uri) as conn:
            producer = Producer(conn.channel())

            def on_request(body, message):
                producer.publish(body, routing_key=message.properties["reply_to"],
                                 correlation_id=message.properties["correlation_id"])
                message.ack()
            with Consumer(conn.channel(), [request_q], callbacks=[on_request]):
                ready.set()
                while not stop.is_set():
                    try:
                        conn.drain_events(timeout=0.2)
                    except socket.timeout:
                        pass

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    ready.wait(10)
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        reply_q = Queue(f"bench-reply-{uuid.uuid4().hex[:6]}", exclusive=True, auto_delete=True)
        got = {}
        consumer = Consumer(channel, [reply_q], callbacks=[lambda b, m: got.setdefault("r", b)],
                            no_ack=True)
        consumer.consume()
        producer = Producer(channel, exchange=exchange)

        def one(index, counter):
            got.clear()
            producer.publish({"n": counter}, routing_key="req", reply_to=reply_q.name,
                             correlation_id=str(counter))
            while "r" not in got:
                conn.drain_events(timeout=5)

        result = thread_load(one, 1, seconds)
    stop.set()
    thread.join(2)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--url")
    parser.add_argument("--amqp", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--token", help="bearer token, when the gateway requires sign-in")
    parser.add_argument("--reads-only", action="store_true", help="skip the write rows")
    args = parser.parse_args()

    platform = Platform(args.url, args.amqp, args.mongo)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    if platform.stack and not headers:
        headers = platform.auth_headers()
    try:
        db = pymongo.MongoClient(platform.mongo_url)[f"{platform.db_prefix}contacts"]
        print(f"gateway {platform.base_url}; seeding {SEED_CONTACTS} contacts through the API", flush=True)
        load, _ = http_load(platform.base_url, write_request, 8, 1.0, headers)  # warm-up
        IDS.extend(d["_id"] for d in db.contacts.find({"deleted_at": None}, {"_id": 1}).limit(SEED_CONTACTS))
        while len(IDS) < 200:
            http_load(platform.base_url, write_request, 8, 1.0, headers)
            IDS[:] = [d["_id"] for d in db.contacts.find({}, {"_id": 1}).limit(SEED_CONTACTS)]
        s = args.seconds
        print(f"\nreads: GET /api/v1/contacts/{{id}} over {len(IDS)} contacts, {s:.0f} s each")

        def gateway_rows(label, make_request):
            """The request at 1 and 16 clients, with the load and the CPU per request of
            each part of the stack."""
            for clients in (1, 16):
                load, cpu = load_average(), cpu_seconds(platform)
                result, statuses = http_load(platform.base_url, make_request, clients, s, headers)
                row(f"{label}, {clients} client(s)", result, f"statuses={statuses} ({load})")
                print(f"      {cpu_note(cpu, cpu_seconds(platform), max(result['n'], 1))}".replace(
                    "/event", "/request"), flush=True)

        gateway_rows("gateway GET", read_request)
        ids = list(IDS)
        for clients in (1, 16):
            result = thread_load(lambda i, c: db.contacts.find_one({"_id": ids[(i * 7919 + c) % len(ids)]}),
                                 clients, s)
            row(f"reference: pymongo find_one, {clients} thread(s)", result)

        if not args.reads_only:
            print(f"\nwrites: POST /api/v1/contacts, {s:.0f} s each")
            gateway_rows("gateway POST", write_request)
            scratch = db["bench_scratch"]
            for clients in (1, 16):
                result = thread_load(lambda i, c: scratch.insert_one({"i": i, "c": c, "x": "y" * 300}),
                                     clients, s)
                row(f"reference: pymongo insert_one, {clients} thread(s)", result)
            scratch.drop()

        print("\nreference: raw AMQP request/reply round trip, 1 client")
        row("raw AMQP round trip", amqp_round_trip(platform.amqp_uri, min(s, 5)))
    finally:
        platform.close()


if __name__ == "__main__":
    main()
