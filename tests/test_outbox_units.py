"""The outbox's parts without a stack: the transaction loop and the collections that join it
(crm_common.mongo), failpoints, and the batched deletes of published records
(crm_common.messaging.outbox). Fakes stand in for pymongo; test_outbox_kill.py runs the real
thing against SecantusDB and RabbitMQ."""
import threading
import time

import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure

from contracts.events import EventContractError
from crm_common import mongo
from crm_common.messaging import outbox
from crm_common.messaging.events import envelope


# ---- fakes ---------------------------------------------------------------------------------

def transient(message="write conflict"):
    return OperationFailure(message, 112, {"errorLabels": ["TransientTransactionError"]})


def unknown_commit():
    return OperationFailure("commit answer lost", 91,
                            {"errorLabels": ["UnknownTransactionCommitResult"]})


class Session:
    def __init__(self, commits=()):
        self.log = []
        self.commits = list(commits)  # errors the next commits raise, in order
        self.in_transaction = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def start_transaction(self):
        self.in_transaction = True
        self.log.append("start")

    def commit_transaction(self):
        self.log.append("commit")
        if self.commits:
            error = self.commits.pop(0)
            if error is not None:
                raise error
        self.in_transaction = False

    def abort_transaction(self):
        self.log.append("abort")
        self.in_transaction = False


class Client:
    def __init__(self, session):
        self.session = session

    def start_session(self):
        return self.session


class RawCollection:
    """Records each call's session; `fail` raises once for a method."""

    def __init__(self):
        self.calls = []
        self.fail = {}

    def _call(self, name, *args, **kwargs):
        self.calls.append((name, kwargs.get("session")))
        error = self.fail.pop(name, None)
        if error is not None:
            raise error
        return name

    def insert_one(self, doc, session=None):
        return self._call("insert_one", doc, session=session)

    def find_one(self, query, session=None):
        return self._call("find_one", query, session=session)

    def create_index(self, keys, session=None):
        return self._call("create_index", keys, session=session)


# ---- the transaction loop ------------------------------------------------------------------

def test_a_write_commits_once_and_its_after_commit_steps_follow():
    session = Session()
    done = []

    def write():
        mongo.after_commit(done.append, "bumped")
        assert not done  # not before the commit
        return "result"

    assert mongo.transaction(Client(session), write) == "result"
    assert session.log == ["start", "commit"]
    assert done == ["bumped"]
    assert not mongo.in_transaction()


def test_steps_after_the_transaction_run_whether_it_committed_or_aborted():
    session = Session()
    ended = []

    def write():
        mongo.after_transaction(ended.append, len(ended))
        if len(ended) < 1:
            raise transient()

    mongo.transaction(Client(session), write)
    assert ended == [0, 1]  # the aborted try's, then the committed one's


def test_statements_outside_the_transaction_run_on_their_own():
    session = Session()
    raw = RawCollection()
    collection = mongo.JoiningCollection(raw)

    @mongo.outside_transaction()
    def mark():
        collection.insert_one({"_id": "marker"})

    mongo.transaction(Client(session), lambda: (mark(), collection.insert_one({"_id": 1})))
    assert raw.calls == [("insert_one", None), ("insert_one", session)]


def test_after_commit_outside_a_transaction_runs_at_once():
    done = []
    mongo.after_commit(done.append, 1)
    assert done == [1]


def test_a_write_conflict_runs_the_whole_write_again():
    session = Session()
    tries = []

    def write():
        tries.append(1)
        if len(tries) < 3:
            raise transient()
        return len(tries)

    assert mongo.transaction(Client(session), write) == 3
    assert session.log == ["start", "abort", "start", "abort", "start", "commit"]


def test_a_lost_commit_answer_commits_again_without_rewriting():
    session = Session(commits=[unknown_commit(), None])
    tries = []
    assert mongo.transaction(Client(session), lambda: tries.append(1) or "ok") == "ok"
    assert tries == [1] and session.log == ["start", "commit", "commit"]


def test_a_transient_commit_failure_runs_the_write_again():
    session = Session(commits=[transient("NoSuchTransaction"), None])
    tries = []
    mongo.transaction(Client(session), lambda: tries.append(1))
    assert len(tries) == 2 and session.log == ["start", "commit", "start", "commit"]


def test_an_error_aborts_runs_no_after_commit_step_and_is_raised():
    session = Session()
    done = []

    def write():
        mongo.after_commit(done.append, 1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        mongo.transaction(Client(session), write)
    assert session.log == ["start", "abort"] and not done


def test_a_swallowed_duplicate_key_is_reported_not_retried_forever():
    """A write error aborts the transaction on the server; code that catches it and goes on
    meets NoSuchTransaction (labelled transient) at its next statement or the commit."""
    session = Session(commits=[transient("NoSuchTransaction")])
    raw = RawCollection()
    raw.fail["insert_one"] = DuplicateKeyError("E11000 duplicate key")
    collection = mongo.JoiningCollection(raw)
    tries = []

    def write():
        tries.append(1)
        try:
            collection.insert_one({"_id": 1})
        except DuplicateKeyError:
            pass  # "already done": wrong inside a transaction

    with pytest.raises(mongo.SwallowedWriteError) as raised:
        mongo.transaction(Client(session), write)
    assert isinstance(raised.value.__cause__, DuplicateKeyError)
    assert tries == [1]


def test_retry_transaction_runs_the_write_again_even_after_a_write_error():
    session = Session()
    raw = RawCollection()
    raw.fail["insert_one"] = DuplicateKeyError("E11000 duplicate key")
    collection = mongo.JoiningCollection(raw)
    tries = []

    def write():
        tries.append(1)
        try:
            collection.insert_one({"_id": 1})
        except DuplicateKeyError:
            raise mongo.RetryTransaction()
        return "second"

    assert mongo.transaction(Client(session), write) == "second"
    assert len(tries) == 2


def test_a_nested_transaction_joins_the_open_one():
    session = Session()
    client = Client(session)
    inner = []
    mongo.transaction(client, lambda: mongo.transaction(client, lambda: inner.append(1)))
    assert inner == [1] and session.log == ["start", "commit"]


# ---- collections that join the transaction -----------------------------------------------

def test_joining_collections_add_the_open_transactions_session_to_reads_and_writes_only():
    session = Session()
    raw = RawCollection()
    collection = mongo.JoiningCollection(raw)
    collection.insert_one({"_id": 1})
    mongo.transaction(Client(session), lambda: (collection.insert_one({"_id": 2}),
                                                collection.find_one({"_id": 2}),
                                                collection.create_index("x")))
    assert raw.calls == [("insert_one", None), ("insert_one", session), ("find_one", session),
                         ("create_index", None)]


def test_each_greenlet_or_thread_has_its_own_transaction():
    session = Session()
    raw = RawCollection()
    collection = mongo.JoiningCollection(raw)
    inside, outside = threading.Event(), threading.Event()

    def other_thread():
        inside.wait(5)
        collection.find_one({})  # while the main thread's transaction is open
        outside.set()

    thread = threading.Thread(target=other_thread)
    thread.start()

    def write():
        inside.set()
        outside.wait(5)
        collection.insert_one({})

    mongo.transaction(Client(session), write)
    thread.join()
    assert raw.calls == [("find_one", None), ("insert_one", session)]


# ---- failpoints ----------------------------------------------------------------------------

def test_failpoints_are_off_unless_set_and_kill_at_the_nth_passage(monkeypatch):
    killed = []
    monkeypatch.setattr(outbox.os, "kill", lambda pid, sig: killed.append(sig))
    points = outbox.Failpoints()
    points.hit(outbox.AFTER_COMMIT)
    assert not killed
    points.set("after_commit@3, relay_after_claim")
    points.hit(outbox.AFTER_COMMIT)
    points.hit(outbox.AFTER_COMMIT)
    points.hit(outbox.BEFORE_COMMIT)
    assert not killed
    points.hit(outbox.AFTER_COMMIT)
    assert killed == [outbox.signal.SIGKILL]
    points.hit(outbox.RELAY_AFTER_CLAIM)
    assert len(killed) == 2
    with pytest.raises(ValueError):
        points.set("after_comit")


# ---- the deletes of published records --------------------------------------------------------

class Collection:
    def __init__(self):
        self.deletes = []

    def delete_many(self, query):
        self.deletes.append(list(query["_id"]["$in"]))


class Channel:
    closed = False

    def close(self):
        self.closed = True


def core(gather_s=0.05):
    box = outbox.Outbox.__new__(outbox.Outbox)
    box.collection, box.channel, box.gather_s = Collection(), Channel(), gather_s
    box.published, box._gathering, box._forgetting = outbox.queue.Queue(), None, True
    return box


def test_records_published_close_together_are_deleted_by_one_delete():
    box = core()

    def publish():
        for i in range(7):
            box.published.put(f"e{i}")
            time.sleep(box.gather_s / 20)

    threading.Thread(target=publish).start()
    box._forget_next()
    assert box.collection.deletes == [[f"e{i}" for i in range(7)]]


def test_long_lists_are_deleted_in_lists_of_50():
    box = core()
    for i in range(120):
        box.published.put(f"e{i}")
    box._forget_next()
    assert [len(ids) for ids in box.collection.deletes] == [50, 50, 20]


def test_a_stop_while_gathering_deletes_the_held_record_once():
    box = core(gather_s=0.3)
    box.published.put("held")
    gathering = threading.Thread(target=box._forget_next)
    gathering.start()
    deadline = time.time() + 2
    while box._gathering != "held" and time.time() < deadline:
        time.sleep(0.005)
    assert box._gathering == "held"  # it took "held" and waits for more
    box.published.put("late")
    box.stop()
    gathering.join()
    assert box.collection.deletes == [["held", "late"]]
    assert box.channel.closed  # the publishing connection goes with the container


def test_events_are_envelopes_or_type_and_data_pairs_dumped_through_their_contract():
    box = outbox.Outbox.__new__(outbox.Outbox)
    box.source = "notifications"
    data = {"notification_id": "n1", "channel": "email", "recipient": "user:u1",
            "event_type": "task_overdue", "event_id": "ev1", "attempts": 1}
    pair = box.record(("notification_delivered", data), {"h": 1})
    assert pair["type"] == "notification_delivered" and pair["_id"] == pair["body"]["event_id"]
    assert pair["body"]["source"] == "notifications" and pair["headers"] == {"h": 1}
    given = box.record(envelope("notifications", "notification_delivered", data, event_id="e1"))
    assert given["_id"] == "e1" and given["relay_after"] > given["created_at"]
    with pytest.raises(EventContractError):  # refused before anything is stored
        box.record(("notification_delivered", {"notification_id": "n1"}))
