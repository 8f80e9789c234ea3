"""Kill anywhere, lose nothing: processes forked from this one run the real outbox core
(crm_common.messaging.outbox.Outbox) against a real SecantusDB and RabbitMQ and are each
SIGKILLed once, at a random failpoint of the outbox path or at a random instant; the relay
recovers what they left. Every write that committed has each of its events delivered (once,
after the consumer's dedup on event_id), no uncommitted write has any. Then the same for a
real contacts service killed by its failpoints in the middle of an API write; and, on the
same database, the two ways a write error meets a transaction."""
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from datetime import timedelta

import pymongo
import pytest
from kombu import Connection, Exchange, Queue

from crm_common.config import load_settings
from crm_common.messaging import outbox as outbox_module
from crm_common.messaging.events import envelope
from crm_common.messaging.outbox import Outbox, failpoints
from crm_common.mongo import SwallowedWriteError, joining
from crm_common.timeutil import utcnow
from tests.stack import ROOT, EventRecorder, Stack, Vhost, _die_with_parent, free_port, wait_port

KILLS = int(os.environ.get("CRM_OUTBOX_KILLS", "200"))
# events of a contract that exists (dump_event checks them): contacts' contact_deleted
SOURCE, EVENT = "contacts", "contact_deleted"
WRITE_POINTS = (outbox_module.BEFORE_COMMIT, outbox_module.AFTER_COMMIT, outbox_module.AFTER_PUBLISH)
RELAY_POINTS = (outbox_module.RELAY_AFTER_CLAIM, outbox_module.RELAY_AFTER_PUBLISH)
LATER = timedelta(days=1)  # "as of tomorrow": every record is due for a recovering relay


@pytest.fixture(scope="module")
def infra():
    """A SecantusDB daemon of its own and a RabbitMQ vhost of its own."""
    vhost = Vhost()
    storage = tempfile.mkdtemp(prefix="crm-outbox-kill-")
    port = free_port()
    log = open(os.path.join(storage, "daemon.log"), "ab")
    daemon = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "secantusd_no_ttl_sweep.py"),
         "--host", "127.0.0.1", "--port", str(port), "--storage-path", os.path.join(storage, "db"),
         "--log-level", "WARNING"], stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        wait_port(port)
        yield {"mongo_url": f"mongodb://127.0.0.1:{port}/?retryWrites=false",
               "amqp_uri": vhost.uri, "db": f"killtest_{uuid.uuid4().hex[:6]}"}
    finally:
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(storage, ignore_errors=True)
        vhost.delete(wait=False)


def settings(**changes):
    return dataclasses.replace(load_settings(), outbox_failpoints="", **changes)


def open_outbox(infra, **changes):
    client = pymongo.MongoClient(infra["mongo_url"], tz_aware=True)
    db = joining(client[infra["db"]])
    return client, db, Outbox(db, SOURCE, infra["amqp_uri"],
                              settings(outbox_forget_gather_s=0.02, **changes))


def write_item(db, item, count):
    """The domain write: one document; its events name it."""
    db["items"].insert_one({"_id": item, "events": count})
    return item, [envelope(SOURCE, EVENT, {"contact_id": f"{item}:{k}"}, event_id=f"{item}:{k}")
                  for k in range(count)]


def run_child(infra, plan, log_path, ready_fd):
    """In the forked child: its own client and broker connection, then the plan until it is
    killed (it never ends by itself: a plan ends with a failpoint, or runs until the parent
    kills it)."""
    client, db, box = open_outbox(infra)
    box.start(relay=False)
    with open(log_path, "a") as log:
        def note(line):
            log.write(line + "\n")
            log.flush()

        if plan["kind"] == "relay":
            # a crash after the commit (nothing published), then a relay that dies in turn
            box._publish_stored = lambda records, later=False: None
            for n in range(plan["writes"]):
                item = f"{plan['id']}-{n}"
                note(f"try {item} 1")
                box.atomic(write_item, (db, item, 1))
                note(f"done {item}")
        failpoints.set(plan.get("point", ""))
        os.write(ready_fd, b"r")
        n = 0
        while True:
            if plan["kind"] == "relay":
                box.relay_once(now=utcnow() + LATER)
                time.sleep(0.001)
                continue
            item = f"{plan['id']}-w{n}"
            count = plan["rng"].randint(1, 3)
            note(f"try {item} {count}")
            box.atomic(write_item, (db, item, count), later=plan["later"])
            note(f"done {item}")
            n += 1


def a_plan(rng, number):
    """A random kill: at a failpoint of the write path (on its 1st-3rd passage), at a random
    instant of a stream of writes (published before or after the answer), or at a failpoint
    of a relay (or a random instant)."""
    roll = rng.random()
    # later: published by a background thread after the answer, deletes gathered (telephony)
    plan = {"id": f"c{number}", "rng": random.Random(rng.random()), "later": rng.random() < 0.5}
    if roll < 0.5:
        plan.update(kind="write", point=f"{rng.choice(WRITE_POINTS)}@{rng.randint(1, 3)}")
    elif roll < 0.75:
        plan.update(kind="write", instant=rng.uniform(0, 0.04))
    else:
        writes = rng.randint(1, 3)
        plan.update(kind="relay", writes=writes)
        if rng.random() < 0.7:
            plan["point"] = f"{rng.choice(RELAY_POINTS)}@{rng.randint(1, writes)}"
        else:
            plan["instant"] = rng.uniform(0, 0.01)
    return plan


def fork_and_kill(infra, plan, log_path):
    """Runs one plan in a forked child and returns once it died of SIGKILL (the parent
    sends it at `instant` after the child is ready, unless a failpoint fires first)."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(ready_read)
            run_child(infra, plan, log_path, ready_write)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(3)
    os.close(ready_write)
    try:
        if "instant" in plan:
            assert os.read(ready_read, 1) == b"r", "the child died before it was ready"
            time.sleep(plan["instant"])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(ready_read)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"{plan['id']} was not killed: status {status}; see {log_path}")


def drain(amqp_uri, queue_name, quiet_s=1.0):
    """Every message in the queue: [event body], acknowledged."""
    bodies = []
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        last = time.time()
        while time.time() - last < quiet_s:
            message = channel.basic_get(queue_name, no_ack=True)
            if message is None:
                time.sleep(0.05)
                continue
            bodies.append(json.loads(message.body))
            last = time.time()
    return bodies


def test_kill_at_any_point_loses_no_event_and_announces_no_uncommitted_write(infra, tmp_path):
    queue_name = f"killtest-{uuid.uuid4().hex[:6]}"
    with Connection(infra["amqp_uri"]) as conn:  # the consumer's queue, before any event
        Queue(queue_name, Exchange(f"{SOURCE}.events", type="topic", durable=True),
              routing_key="#", durable=True).bind(conn.default_channel).declare()
    # the collections exist before any write, as a service's start makes them: a collection
    # created implicitly by a transaction a kill left open would block every insert into it
    # until the server reaps that transaction (60 s, on mongod too)
    client, db, box = open_outbox(infra)
    box.ensure_index()
    db["items"].create_index("events")
    box.channel.close()
    client.close()
    seed = int(os.environ.get("CRM_OUTBOX_KILL_SEED", random.randrange(10 ** 6)))
    rng = random.Random(seed)
    started = time.monotonic()
    kinds = {}
    for number in range(KILLS):
        plan = a_plan(rng, number)
        kind = plan.get("point", "").split("@")[0] or f"{plan['kind']} instant"
        kinds[kind] = kinds.get(kind, 0) + 1
        fork_and_kill(infra, plan, str(tmp_path / f"{plan['id']}.log"))
    killing_s = time.monotonic() - started

    # recovery: a relay as the restarted service runs it, taking everything left
    client, db, box = open_outbox(infra)
    try:
        left = db["outbox"].count_documents({})
        recovering = time.monotonic()
        while box.relay_once(limit=500, now=utcnow() + LATER):
            pass
        recovery_s = time.monotonic() - recovering
        assert db["outbox"].count_documents({}) == 0
        committed = {d["_id"]: d["events"] for d in db["items"].find({})}
    finally:
        box.stop()
        client.close()
    tried, done = {}, set()
    for path in tmp_path.iterdir():
        for line in path.read_text().splitlines():
            word, item, *count = line.split()
            if word == "try":
                tried[item] = int(count[0])
            else:
                done.add(item)
    draining = time.monotonic()
    received = drain(infra["amqp_uri"], queue_name)
    drain_s = time.monotonic() - draining
    with Connection(infra["amqp_uri"]) as conn:
        conn.default_channel.queue_delete(queue_name)

    expected = {f"{item}:{k}" for item, count in committed.items() for k in range(count)}
    ids = [body["event_id"] for body in received]
    unique = set(ids)
    uncommitted = sorted(set(tried) - set(committed))
    print(f"\noutbox kill test (seed {seed}): {KILLS} kills {kinds} in {killing_s:.1f} s; "
          f"{len(tried)} writes tried, {len(committed)} committed ({len(done)} answered), "
          f"{len(uncommitted)} not committed; {len(expected)} events expected, "
          f"{len(ids)} delivered, {len(ids) - len(unique)} raw duplicates; the relay then "
          f"published {left} left in {recovery_s:.1f} s, drained in {drain_s:.1f} s")
    assert done <= set(committed), "an answered write is not in the database"
    assert set(committed) <= set(tried)
    assert not expected - unique, f"events lost: {sorted(expected - unique)[:10]}"
    assert not unique - expected, f"events of uncommitted writes: {sorted(unique - expected)[:10]}"
    assert all(body["type"] == EVENT and body["source"] == SOURCE for body in received)


def test_an_event_id_still_waiting_is_stored_once_and_the_write_commits(infra):
    """An idempotent handler announcing again under the same id (a redelivered lead): the
    duplicate key would abort the transaction, so the write runs again, carefully."""
    client, db, box = open_outbox(infra)
    try:
        item = f"again-{uuid.uuid4().hex[:6]}"
        box._publish_stored = lambda records, later=False: None  # the first copy waits
        box.atomic(write_item, (db, item, 2))
        again = f"{item}-again"

        def write_again():
            db["items"].insert_one({"_id": again})
            return again, [envelope(SOURCE, EVENT, {"contact_id": "c"}, event_id=f"{item}:1")]

        assert box.atomic(write_again) == again
        assert db["items"].count_documents({"_id": again}) == 1
        assert db["outbox"].count_documents({"_id": f"{item}:1"}) == 1
    finally:
        db["outbox"].delete_many({"_id": {"$regex": "^again-"}})
        box.channel.close()
        client.close()


def test_a_duplicate_key_caught_inside_a_write_fails_it_instead_of_looping(infra):
    client, db, box = open_outbox(infra)
    item = f"dup-{uuid.uuid4().hex[:6]}"
    db["items"].insert_one({"_id": item})

    def already_done():
        try:
            db["items"].insert_one({"_id": item})
        except pymongo.errors.DuplicateKeyError:
            pass  # "already done": aborts the transaction on mongod and SecantusDB alike
        db["items"].insert_one({"_id": f"{item}-next"})
        return None, [envelope(SOURCE, EVENT, {"contact_id": item})]

    try:
        started = time.monotonic()
        with pytest.raises(SwallowedWriteError):
            box.atomic(already_done)
        assert time.monotonic() - started < 5
        assert db["items"].count_documents({"_id": f"{item}-next"}) == 0
    finally:
        box.channel.close()
        client.close()


@pytest.fixture(scope="module")
def contacts_only():
    """A platform with the contacts service alone (no gateway: RPC straight to it)."""
    platform = Stack()
    try:
        yield platform
    finally:
        platform.close()


def _create(stack, name):
    try:
        return stack.rpc.call("contacts", "create_contact", {"first_name": name, "last_name": "Kill"},
                              timeout=3)
    except Exception as exc:  # noqa: BLE001 - the service died holding the call
        return exc


def test_a_contacts_service_killed_mid_write_still_announces_a_committed_write(contacts_only):
    stack = contacts_only
    recorder = EventRecorder(stack.amqp_uri, "contacts", "contact_created")
    contacts = stack.db("contacts")["contacts"]
    try:
        # a first contact, so the collection's indexes are multikey before a kill: SecantusDB
        # marks an index multikey inside the transaction of the first document with an
        # array, and a transaction the kill leaves open then blocks every other such insert
        # until the server reaps it (60 s)
        stack.start_service("contacts")
        stack.wait_service("contacts")
        assert not isinstance(_create(stack, "First"), Exception)
        stack.stop_service("contacts")

        # killed before the commit: neither the contact nor its event exist
        stack.start_service("contacts", CRM_OUTBOX_FAILPOINTS="before_commit")
        stack.wait_service("contacts")
        lost = f"Before-{uuid.uuid4().hex[:6]}"
        assert isinstance(_create(stack, lost), Exception)
        assert stack.processes["contacts-0"].wait(60) == -signal.SIGKILL
        assert contacts.count_documents({"first_name": lost}) == 0

        # killed after the commit, before publishing: the contact and its record exist
        stack.processes.pop("contacts-0")
        stack.start_service("contacts", CRM_OUTBOX_FAILPOINTS="after_commit")
        stack.wait_service("contacts")
        kept = f"After-{uuid.uuid4().hex[:6]}"
        assert isinstance(_create(stack, kept), Exception)
        assert stack.processes["contacts-0"].wait(60) == -signal.SIGKILL
        contact = contacts.find_one({"first_name": kept})
        assert contact is not None
        assert stack.db("contacts")["outbox"].count_documents({"body.data.contact.id": contact["_id"]}) == 1

        # restarted: its relay publishes the event (after the first try's grace)
        stack.processes.pop("contacts-0")
        stack.start_service("contacts", CRM_OUTBOX_RELAY_SECONDS="0.2")
        stack.wait_service("contacts")
        found = recorder.wait_for(lambda e: e["data"]["contact"]["id"] == contact["_id"], timeout=15)
        assert len(found) == 1
        assert not [e for e in recorder.events if e["data"]["contact"]["first_name"] == lost]
    finally:
        recorder.close()
