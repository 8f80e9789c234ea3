"""Stream speed (issue 20): N concurrent Server-Sent Events streams held by the stream
process (gateway/stream/), and the ringing event of an inbound call, posted to the gateway
as a PBX does, timed until the `call_ringing` screen pop arrives on the streams of the
contact's owner (an agent), at a steady open-loop rate.

    .venv/bin/python bench/bench_stream.py [--streams 200] [--rate 10] [--seconds 10]
        [--users N] [--auth ticket|header] [--release-check] [--profile-slow-ms 0]
        [--url http://127.0.0.1:8000 --stream-url http://127.0.0.1:8001
         --mongo "mongodb://127.0.0.1:27017/?retryWrites=false" --amqp ... --prefix crm_
         [--jwt-secret ...] [--stream-pid PID]]

One asyncio process (aiohttp) holds every stream, opened as the console opens them (a
single-use ticket from POST /api/v1/stream/tickets, then the EventSource URL; --auth header:
Authorization on the stream request). --users (default: one per stream, a tab per agent)
agents are written straight into the gateway's users collection with tokens signed with
the platform's secret (1,000 sign-ups through the API would be 1,000 argon2 hashes and as
many verifies), announced with user_upserted, each owning one contact written as the
contacts service stores it (as bench_telephony.py does).

Figures, all from the same run:
- ringing answer: the POST's own latency (what bench_telephony.py measures);
- SSE-free: call_started consumed straight from the telephony exchange by this process
  (the pipeline up to the broker, without the stream process);
- call_ringing on every stream of the owner (the target), latency from the moment each
  call was due; lost, wrongly addressed, resyncs and streams that ended are counted;
- raw AMQP reference: kombu publish -> consume of the same envelope at the same rate on
  the same broker;
- the stream process's RSS before and after opening the streams, and per stream; CPU per
  process for opening the streams and for the calls.

Target (2-core machine): 1,000 streams, call_ringing p99 <= 300 ms at 50 calls/s.
"""
import argparse
import asyncio
import json
import os
import random
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp  # noqa: E402
import pymongo  # noqa: E402
from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402

from bench.bench_telephony import (contact_doc, op_counts, ops_note, ringing,  # noqa: E402
                                   wait_for_phone_copy)
from bench.common import (Platform, cpu_note, cpu_seconds, load_average,  # noqa: E402
                          print_slow_operations, profile_databases, row, summarize)
from crm_common.messaging.publish import publish_event  # noqa: E402
from gateway.auth import Auth, new_user_doc  # noqa: E402

STREAM = "/api/v1/stream"


# the platform's side ------------------------------------------------------------------
def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def find_stream_pid():
    """The one `python -m gateway.stream` on the machine (--url mode), else None."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if b"gateway.stream" in args and b"-m" in args:
                found.append(int(name))
    return found[0] if len(found) == 1 else None


def make_agents(platform, client, count, secret):
    """`count` agents, each with a token and one contact of their own."""
    gateway = client[f"{platform.db_prefix}gateway"]
    run = uuid.uuid4().hex[:6]
    template = new_user_doc({"email": "template@bench.test", "name": "x", "role": "agent",
                             "password": uuid.uuid4().hex})  # one argon2 hash for all
    signer = SimpleNamespace(secret=secret, config=SimpleNamespace(jwt_ttl_s=4 * 3600,
                                                                   session_max_s=8 * 3600))
    now = datetime.now(timezone.utc)
    prefix = f"+39348{random.randrange(1000):03d}"
    users, agents, contacts = [], [], []
    for i in range(count):
        user = dict(template, _id=uuid.uuid4().hex[:24], email=f"stream-{run}-{i}@bench.test",
                    name=f"Stream agent {i}", created_at=now, updated_at=now)
        phone = f"{prefix}{i:04d}"
        users.append(user)
        contacts.append(contact_doc(f"Streamer{i}", phone, user["_id"], "bench-stream", now))
        agents.append(SimpleNamespace(id=user["_id"], phone=phone, streams=[],
                                      token=Auth.issue_token(signer, user)["access_token"]))
    gateway.users.insert_many(users, ordered=False)
    client[f"{platform.db_prefix}contacts"].contacts.insert_many(contacts, ordered=False)
    with Connection(platform.amqp_uri) as connection:  # telephony's copy of the users
        for user in users:
            publish_event(platform.amqp_uri, "gateway", "user_upserted", {"user": {
                "id": user["_id"], "name": user["name"], "role": "agent", "active": True,
                "extension": None}}, connection=connection)
    return agents


def jwt_secret(platform, client, given):
    if given:
        return given
    if platform.stack is not None:
        return platform.stack.jwt_secret
    # ./crm up without CRM_JWT_SECRET: the generated one the gateway keeps (gateway/store.py)
    doc = client[f"{platform.db_prefix}gateway"].settings.find_one({"_id": "jwt_secret"})
    if doc is None:
        sys.exit("no JWT secret: pass --jwt-secret (the gateway's CRM_JWT_SECRET)")
    return doc["value"]


# the browser side ---------------------------------------------------------------------
class Stream:
    """One open stream read by a task: hello, then call_ringing events timed on arrival."""

    def __init__(self, agent, run):
        self.agent, self.run = agent, run
        self.hello = asyncio.get_running_loop().create_future()
        self.ended = False
        self.response = None

    async def open(self, session, base_url, stream_url, mode):
        headers, url = {}, stream_url + STREAM
        if mode == "ticket":
            async with session.post(base_url + STREAM + "/tickets", headers={
                    "Authorization": f"Bearer {self.agent.token}"}) as answer:
                if answer.status != 201:
                    raise RuntimeError(f"ticket: {answer.status} {await answer.text()}")
                url += "?ticket=" + (await answer.json())["ticket"]
        else:
            headers["Authorization"] = f"Bearer {self.agent.token}"
        self.response = await session.get(url, headers=headers)
        if self.response.status != 200:
            raise RuntimeError(f"stream: {self.response.status} {await self.response.text()}")
        asyncio.get_running_loop().create_task(self.read())
        await asyncio.wait_for(self.hello, 30)

    async def read(self):
        name, data = None, []
        try:
            async for raw in self.response.content:
                line = raw.rstrip(b"\r\n")
                if line:
                    if line.startswith(b"event: "):
                        name = line[7:]
                    elif line.startswith(b"data: "):
                        data.append(line[6:])
                    continue
                if data:
                    self.run.on_event(self, name, data, time.perf_counter())
                name, data = None, []
        except (aiohttp.ClientError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self.ended = True
            if not self.run.closing:
                self.run.dropped += 1

    def close(self):
        if self.response is not None:
            self.response.close()


class Run:
    def __init__(self):
        self.calls = {}        # call_id -> SimpleNamespace(due, agent, got={stream: latency})
        self.closing = False
        self.dropped = 0
        self.resyncs = 0
        self.wrong = 0         # a call_ringing on a stream that is not its owner's
        self.unknown = 0       # a call_ringing for no call of this run (warm-up, others)
        self.sample = None     # one call_started envelope (the raw AMQP reference's body)

    def on_event(self, stream, name, data, arrived):
        if name == b"hello":
            if not stream.hello.done():
                stream.hello.set_result(arrived)
            return
        if name == b"resync":
            self.resyncs += 1
            return
        if name != b"call_ringing":
            return
        body = b"\n".join(data)
        call = self.calls.get(json.loads(body)["data"]["call"]["call_id"])
        if call is None:
            self.unknown += 1
        elif call.agent is not stream.agent:
            self.wrong += 1
        else:
            call.got[stream] = arrived - call.due
            if self.sample is None:
                self.sample = body


async def open_streams(session, platform, agents, count, mode, run, parallel=50):
    """`count` streams, round-robin over the agents; returns the opening latencies."""
    gate, latencies = asyncio.Semaphore(parallel), []

    async def one(i):
        agent = agents[i % len(agents)]
        async with gate:
            stream = Stream(agent, run)
            started = time.perf_counter()
            await stream.open(session, platform.base_url, platform.stream_url, mode)
            latencies.append(time.perf_counter() - started)
            agent.streams.append(stream)

    await asyncio.gather(*(one(i) for i in range(count)))
    return latencies


async def post_calls(session, platform, headers, agents, run, rate, seconds, answers):
    """Open loop: one ringing event every 1/rate s, each for a random agent's contact."""
    statuses, tasks = {}, []

    async def post(call_id, event, due):
        try:
            async with session.post(platform.base_url + "/api/v1/telephony/events",
                                    json=event, headers=headers) as answer:
                await answer.read()
                status = answer.status
        except aiohttp.ClientError:
            status = "error"
        answers.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        agent = random.choice(agents)
        call_id = f"bench-stream-{uuid.uuid4().hex}"
        run.calls[call_id] = SimpleNamespace(due=due, agent=agent, got={})
        event = ringing(call_id, agent.phone)
        tasks.append(asyncio.create_task(post(call_id, event, due)))
    await asyncio.gather(*tasks)
    return statuses


async def settle(run, calls, timeout=10):
    """Wait until every stream of each call's owner got it, or `timeout`."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if all(len(c.got) >= sum(not s.ended for s in c.agent.streams) for c in calls):
            return
        await asyncio.sleep(0.1)


# the SSE-free and raw AMQP references -------------------------------------------------
def consume(amqp_uri, queue_, on_message, ready, finished):
    """Consume `queue_` without acks in this thread until finished() says so."""
    with Connection(amqp_uri) as connection:
        with Consumer(connection.channel(), queues=[queue_], callbacks=[on_message],
                      no_ack=True, accept=["json"]):
            ready.set()
            while not finished():
                try:
                    connection.drain_events(timeout=0.5)
                except socket.timeout:
                    pass


class BrokerWatch(threading.Thread):
    """call_started consumed straight from telephony.events: call_id -> perf_counter."""

    def __init__(self, amqp_uri):
        super().__init__(daemon=True)
        self.amqp_uri, self.seen, self.ready, self.stop = amqp_uri, {}, threading.Event(), False

    def run(self):
        exchange = Exchange("telephony.events", type="topic", durable=True)
        queue_ = Queue(f"bench-stream-{uuid.uuid4().hex[:8]}", exchange=exchange,
                       routing_key="call_started", exclusive=True, auto_delete=True)

        def on_message(body, message):
            call_id = ((body.get("data") or {}).get("call") or {}).get("call_id")
            self.seen.setdefault(call_id, time.perf_counter())

        consume(self.amqp_uri, queue_, on_message, self.ready, lambda: self.stop)


def raw_amqp(amqp_uri, body, rate, seconds):
    """kombu publish -> consume of `body` at `rate`/s, persistent as the platform's events;
    latency from the moment each message was due."""
    exchange = Exchange(f"bench.stream.{uuid.uuid4().hex[:8]}", type="topic",
                        durable=False, auto_delete=True)
    queue_ = Queue(f"bench-raw-{uuid.uuid4().hex[:8]}", exchange=exchange, routing_key="#",
                   exclusive=True, auto_delete=True)
    latencies, ready, done, expected = [], threading.Event(), threading.Event(), int(rate * seconds)
    payload = json.loads(body)

    def on_message(message_body, message):
        latencies.append(time.perf_counter() - message_body["due"])
        if len(latencies) >= expected:
            done.set()

    deadline = time.monotonic() + seconds + 10
    consumer = threading.Thread(target=consume, daemon=True, args=(
        amqp_uri, queue_, on_message, ready,
        lambda: done.is_set() or time.monotonic() > deadline))
    consumer.start()
    ready.wait(10)
    with Connection(amqp_uri) as connection:
        producer = Producer(connection.channel(), exchange=exchange, serializer="json")
        start = time.perf_counter()
        for i in range(expected):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.publish(dict(payload, due=due), routing_key="call_started",
                             delivery_mode=2)
    consumer.join(seconds + 15)
    return summarize(latencies, seconds), expected - len(latencies)


def p95(latencies):
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 2) if ordered else None


def show(label, latencies, seconds, note=""):
    result = summarize(latencies, seconds)
    row(label, result, f"p95 {p95(latencies)} ms {note}")


def close_all(run, agents):
    run.closing = True
    for agent in agents:
        for stream in agent.streams:
            stream.close()


async def release_check(session, platform, held, timeout=40):
    """How long the stream process keeps the streams of clients that went away (it learns
    of a closed connection when it next writes to it: a heartbeat)."""
    started = time.perf_counter()
    while True:
        async with session.get(platform.stream_url + STREAM + "/readyz") as answer:
            left = (await answer.json())["streams"]
        took = time.perf_counter() - started
        if left == 0 or took > timeout:
            break
        await asyncio.sleep(0.5)
    print(f"\nafter the client closed its {held} streams: {left} still held by the stream "
          f"process after {took:.1f} s", flush=True)


# the run ------------------------------------------------------------------------------
async def bench(args, platform, client, headers, agents, stream_pid):
    run = Run()
    streams_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None))
    calls_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32),
                                          timeout=aiohttp.ClientTimeout(total=30))
    try:
        rss_before = rss_kb(stream_pid) if stream_pid else None
        cpu, load = cpu_seconds(platform), load_average()
        started = time.perf_counter()
        opening = await open_streams(streams_session, platform, agents, args.streams,
                                     args.auth, run)
        took = time.perf_counter() - started
        await asyncio.sleep(1)
        rss_open = rss_kb(stream_pid) if stream_pid else None
        held = sum(not s.ended for a in agents for s in a.streams)
        print(f"\n{held} streams opened ({args.auth}) in {took:.1f} s over {len(agents)} agents "
              f"({load}):", flush=True)
        row("open a stream (ticket + hello)" if args.auth == "ticket" else "open a stream (hello)",
            summarize(opening, took))
        print(f"      {cpu_note(cpu, cpu_seconds(platform), args.streams)} (per stream)", flush=True)
        async with streams_session.get(platform.stream_url + STREAM + "/readyz") as answer:
            print(f"      stream process says: {await answer.json()}", flush=True)
        if rss_before:
            print(f"      stream process RSS: {rss_before / 1024:.1f} MB before, "
                  f"{rss_open / 1024:.1f} MB with {held} streams: "
                  f"{(rss_open - rss_before) / max(held, 1):.1f} KB per stream", flush=True)

        watch = BrokerWatch(platform.amqp_uri)
        watch.start()
        watch.ready.wait(10)
        # warm-up: connections, caches, the telephony path; not counted
        await post_calls(calls_session, platform, headers, agents, run, min(args.rate, 5), 2, [])
        await settle(run, list(run.calls.values()))
        run.calls.clear()
        run.unknown = 0

        answers = []
        if args.profile_slow_ms is not None:
            profile_databases(client, platform.db_prefix, args.profile_slow_ms, reset=True)
        cpu, load, ops = cpu_seconds(platform), load_average(), op_counts(client)
        statuses = await post_calls(calls_session, platform, headers, agents, run, args.rate,
                                    args.seconds, answers)
        calls = list(run.calls.values())
        await settle(run, calls)
        cpu_after, ops_after = cpu_seconds(platform), op_counts(client)
        watch.stop = True
        rss_run = rss_kb(stream_pid) if stream_pid else None

        expected = sum(len(c.agent.streams) for c in calls)
        delivered = [lat for c in calls for lat in c.got.values()]
        first = [min(c.got.values()) for c in calls if c.got]
        on_broker = [watch.seen[cid] - c.due for cid, c in run.calls.items() if cid in watch.seen]
        print(f"\n{len(calls)} inbound calls at {args.rate:g}/s for {args.seconds:g} s, "
              f"{held} streams ({load}); latency from the moment each call was due:", flush=True)
        show("ringing answer (POST /telephony/events)", answers, args.seconds,
             f"statuses={statuses}")
        show("call_started on the broker (SSE-free)", on_broker, args.seconds,
             f"missing={len(calls) - len(on_broker)}")
        show("call_ringing on the owner's streams (SSE)", delivered, args.seconds,
             f"expected={expected}")
        if held != len(agents):
            show("  first of the owner's streams", first, args.seconds)
        stream_share = [c.got[s] - (watch.seen[cid] - c.due) for cid, c in run.calls.items()
                        if cid in watch.seen for s in c.got]
        show("  broker -> stream -> client (difference)", stream_share, args.seconds)
        print(f"      lost={expected - len(delivered)} wrong_stream={run.wrong} "
              f"resyncs={run.resyncs} streams_ended={run.dropped} unknown={run.unknown}",
              flush=True)
        print(f"      {cpu_note(cpu, cpu_after, max(len(calls), 1))} (per call)", flush=True)
        print(f"      {ops_note(ops, ops_after, max(len(calls), 1))} (per call)", flush=True)
        if args.profile_slow_ms is not None:
            print_slow_operations(client, platform.db_prefix, top=25)
        if rss_run:
            print(f"      stream process RSS after the calls: {rss_run / 1024:.1f} MB", flush=True)

        if run.sample:
            seconds = min(args.seconds, 10)
            load = load_average()
            result, missing = raw_amqp(platform.amqp_uri, run.sample, args.rate, seconds)
            print(f"\nraw AMQP reference, same broker ({load}):")
            row(f"kombu publish -> consume, {len(run.sample)} B at {args.rate:g}/s", result,
                f"missing={missing}")
        if args.release_check:
            close_all(run, agents)
            await release_check(calls_session, platform, held)
        return run
    finally:
        close_all(run, agents)
        await streams_session.close()
        await calls_session.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--users", type=int, default=None,
                        help="agents holding the streams (default: one per stream)")
    parser.add_argument("--rate", type=float, default=10, help="inbound calls per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--auth", choices=("ticket", "header"), default="ticket",
                        help="open streams with a ticket (the console's EventSource) or "
                             "Authorization (fetch streaming)")
    parser.add_argument("--release-check", action="store_true",
                        help="close the streams and time until the stream process lets "
                             "them go (up to 40 s)")
    parser.add_argument("--profile-slow-ms", type=int, default=None,
                        help="list the server's operations slower than this during the calls "
                             "(profiler; 0: every operation, which costs an insert each)")
    parser.add_argument("--url")
    parser.add_argument("--stream-url", default="http://127.0.0.1:8001")
    parser.add_argument("--stream-pid", type=int, help="--url mode: the stream process")
    parser.add_argument("--jwt-secret", help="--url mode: the gateway's CRM_JWT_SECRET")
    parser.add_argument("--amqp", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017/?retryWrites=false")
    parser.add_argument("--prefix", default="crm_")
    args = parser.parse_args()

    # the isolated stack's telephony syncs the contacts loaded below every 2 s, not 60 s
    os.environ.setdefault("TELEPHONY_CONTACTS_SYNC_S", "2")
    platform = Platform(args.url, args.amqp, args.mongo, args.prefix, args.stream_url)
    client = None
    try:
        headers = platform.auth_headers()
        client = pymongo.MongoClient(platform.mongo_url, tz_aware=True)
        stream_pid = (platform.stack.processes["stream"].pid if platform.stack
                      else args.stream_pid or find_stream_pid())
        started = time.perf_counter()
        agents = make_agents(platform, client, args.users or args.streams,
                             jwt_secret(platform, client, args.jwt_secret))
        print(f"stream bench: {len(agents)} agents with a contact each in "
              f"{time.perf_counter() - started:.1f} s ({platform.base_url}, streams on "
              f"{platform.stream_url})", flush=True)
        waited = wait_for_phone_copy(client[f"{platform.db_prefix}telephony"], len(agents))
        print(f"telephony's phone copy filled by its sync in {waited:.1f} s", flush=True)
        time.sleep(1)  # telephony takes in the users
        asyncio.run(bench(args, platform, client, headers, agents, stream_pid))
    finally:
        if client is not None:
            client.close()
        platform.close()


if __name__ == "__main__":
    main()
