"""The Mongo dependency: one MongoClient per process and database server, indexes ensured at
start; transactions that store code joins without passing sessions around; and the only
place for what the databases we run on need beyond plain MongoDB queries.

A service hands MongoStore its store class (the only code that touches pymongo); every worker
gets the same store instance, which is safe because MongoClient is thread/greenlet safe.
Every MongoStore of a process shares one client, so one transaction can span them all.

Transactions: `transaction(client, write, *args)` runs `write(*args)` inside a multi-document
transaction and commits it. The database a store gets (`joining(db)`) hands out collections
whose reads and writes add the session of the transaction open in the calling greenlet or
thread, if any; store code stays free of `session=`. Inside a transaction a failed write
(a duplicate key included) aborts the whole transaction, on mongod and SecantusDB alike:
code that catches DuplicateKeyError to mean "already done" must check first or upsert
instead when it can run inside one (a swallowed error is reported as SwallowedWriteError,
never retried in a loop).

Database rules (the reasons, with reproductions: docs/developing.md):
- No hints. A query names an index's leading fields (equality first, then the sort or
  range) and both servers pick that index by themselves: mongod's planner, and
  SecantusDB (dev/CI), which walks the WHOLE index it is hinted to (every document of
  the collection, on every call) instead of the range it would read unhinted; counts
  and aggregations alike.
- Long `$in` lists go through `find_in` / `in_chunks` (lists of 50).
- A document known by `_id` is changed and read back with `update_and_get`, not
  `find_one_and_update`.
- A counter is moved with `increment` (a first upsert raced by another may answer None
  or a duplicate key there).
"""
import contextvars
import logging
import random
import threading
import time
from contextlib import contextmanager

from nameko.extensions import DependencyProvider
from pymongo import MongoClient, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from crm_common.config import get_settings
from crm_common.cursors import decode_cursor, encode_cursor, page
from crm_common.timeutil import parse_iso, to_iso, utcnow

log = logging.getLogger(__name__)

# how long a transaction is tried again after transient errors (write conflicts, a lost
# commit answer) before the last error is raised
TRANSACTION_RETRY_S = 20.0

# the collection methods that run inside the caller's transaction (reads and writes); index
# management, counts by metadata and commands run outside, as mongod requires
_JOINING = ("find", "find_one", "find_one_and_delete", "find_one_and_replace",
            "find_one_and_update", "insert_one", "insert_many", "replace_one", "update_one",
            "update_many", "delete_one", "delete_many", "bulk_write", "aggregate",
            "count_documents", "distinct")

_current = contextvars.ContextVar("crm_mongo_transaction", default=None)


def connect(mongo_url, appname):
    # Short server selection so a missing database fails a call fast instead of hanging it.
    # connectTimeoutMS is also the monitor's heartbeat timeout: a server busy for a few
    # seconds (SecantusDB sorting a large export) must not be declared down, which cancels
    # every operation in flight; an unreachable server still fails selection in 3 s.
    return MongoClient(mongo_url, tz_aware=True, appname=appname,
                       serverSelectionTimeoutMS=3000, connectTimeoutMS=20000)


# ---- transactions -------------------------------------------------------------------------

class SwallowedWriteError(RuntimeError):
    """A write failed inside a transaction (which aborted it) and the code carried on as if
    it had not; the transaction cannot commit. The failed write is the __cause__."""


class RetryTransaction(Exception):
    """Raised by code inside a transaction to run the whole write again from the start."""


class _Transaction:
    __slots__ = ("client", "session", "failed", "after_commit", "after_end")

    def __init__(self, client, session):
        self.client, self.session = client, session
        self.failed = None  # the first non-transient error a statement met
        self.after_commit = []  # (func, args) to run once committed
        self.after_end = []  # ... once committed or aborted

    def ended(self, committed):
        for func, args in (self.after_commit if committed else []) + self.after_end:
            try:
                func(*args)
            except Exception:  # noqa: BLE001 - the write stands (or is gone); its follower logs
                log.exception("step after the transaction failed: %s",
                              getattr(func, "__name__", func))

    def note(self, exc):
        if self.failed is None and not _transient(exc):
            self.failed = exc


def _transient(exc):
    return isinstance(exc, PyMongoError) and exc.has_error_label("TransientTransactionError")


def in_transaction():
    return _current.get() is not None


def after_commit(func, *args):
    """`func(*args)` once the open transaction has committed (never if it aborts); at once
    when none is open. For what must follow the write and cannot be undone (a cache
    epoch bumped, events published)."""
    tx = _current.get()
    if tx is None:
        func(*args)
    else:
        tx.after_commit.append((func, args))


def after_transaction(func, *args):
    """`func(*args)` once the open transaction has ended, committed or aborted (at once when
    none is open): the second half of a mark made outside it."""
    tx = _current.get()
    if tx is None:
        func(*args)
    else:
        tx.after_end.append((func, args))


@contextmanager
def outside_transaction():
    """Statements in this block run on their own, committed at once, even while a
    transaction is open (a marker other writers must see before the transaction commits;
    a counter every write touches, which inside transactions would make them conflict)."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def transaction(client, write, *args, **kwargs):
    """`write(*args, **kwargs)` inside one multi-document transaction on `client`, committed;
    returns what it returned. Transient errors (write conflicts, a commit whose answer was
    lost) run it again from the start, for up to TRANSACTION_RETRY_S; any other error aborts
    and is raised. Called inside an open transaction, `write` joins it."""
    outer = _current.get()
    if outer is not None:
        if outer.client is not client:
            raise RuntimeError("another client's transaction is open in this greenlet")
        return write(*args, **kwargs)
    deadline = time.monotonic() + TRANSACTION_RETRY_S
    attempt = 0
    with client.start_session() as session:
        while True:
            attempt += 1
            tx = _Transaction(client, session)
            session.start_transaction()
            token = _current.set(tx)
            try:
                result = write(*args, **kwargs)
            except BaseException as exc:
                _current.reset(token)
                _abort(session)
                tx.ended(committed=False)
                if _again(exc, tx, deadline):
                    _pause(attempt)
                    continue
                raise _explained(exc, tx)
            _current.reset(token)
            try:
                _commit(session, deadline)
            except PyMongoError as exc:
                tx.ended(committed=False)
                if _again(exc, tx, deadline):
                    _pause(attempt)
                    continue
                raise _explained(exc, tx)
            tx.ended(committed=True)
            return result


def _commit(session, deadline):
    while True:
        try:
            session.commit_transaction()
            return
        except PyMongoError as exc:
            # the answer was lost: committing again is safe (commits are idempotent)
            if exc.has_error_label("UnknownTransactionCommitResult") and time.monotonic() < deadline:
                continue
            raise


def _abort(session):
    if session.in_transaction:
        try:
            session.abort_transaction()
        except PyMongoError:  # the server aborts it by itself (lifetime limit)
            pass


def _again(exc, tx, deadline):
    if time.monotonic() >= deadline:
        return False
    return isinstance(exc, RetryTransaction) or (_transient(exc) and tx.failed is None)


def _explained(exc, tx):
    if tx.failed is not None and _transient(exc):
        error = SwallowedWriteError(
            f"a write inside the transaction failed ({type(tx.failed).__name__}: {tx.failed}) "
            f"and was caught; the transaction was aborted by the server")
        error.__cause__ = tx.failed
        return error
    return exc


def _pause(attempt):
    """A short random pause before trying a conflicting transaction again."""
    time.sleep(random.uniform(0, min(0.002 * attempt, 0.05)))


class JoiningCollection:
    """A pymongo Collection whose reads and writes join the transaction open in the calling
    greenlet/thread (see `transaction`); everything else is the Collection's own."""
    __slots__ = ("raw",)

    def __init__(self, raw):
        self.raw = raw

    def __getattr__(self, name):
        value = getattr(self.raw, name)
        return JoiningCollection(value) if isinstance(value, Collection) else value

    def __getitem__(self, name):
        return JoiningCollection(self.raw[name])

    def with_options(self, *args, **kwargs):
        return JoiningCollection(self.raw.with_options(*args, **kwargs))

    def __eq__(self, other):
        return self.raw == getattr(other, "raw", other)

    def __hash__(self):
        return hash(self.raw)

    def __repr__(self):
        return f"JoiningCollection({self.raw!r})"


def _joining_method(name):
    def method(self, *args, **kwargs):
        tx = _current.get()
        if tx is None or "session" in kwargs:
            return getattr(self.raw, name)(*args, **kwargs)
        try:
            return getattr(self.raw, name)(*args, session=tx.session, **kwargs)
        except PyMongoError as exc:
            tx.note(exc)
            raise
    method.__name__ = method.__qualname__ = name
    return method


for _name in _JOINING:
    setattr(JoiningCollection, _name, _joining_method(_name))
del _name


class JoiningDatabase:
    """A pymongo Database whose collections are JoiningCollections."""
    __slots__ = ("raw",)

    def __init__(self, raw):
        self.raw = raw

    def __getitem__(self, name):
        return JoiningCollection(self.raw[name])

    def get_collection(self, name, **kwargs):
        return JoiningCollection(self.raw.get_collection(name, **kwargs))

    def __getattr__(self, name):
        value = getattr(self.raw, name)
        return JoiningCollection(value) if isinstance(value, Collection) else value

    def __repr__(self):
        return f"JoiningDatabase({self.raw!r})"


def joining(db):
    """`db` (a pymongo Database) with collections that join the caller's transaction."""
    return db if isinstance(db, JoiningDatabase) else JoiningDatabase(db)


# ---- helpers for SecantusDB -----------------------------------------------------------------

def window_page(collection, field, window, limit, cursor=None):
    """One page of the documents whose `field` lies in `window` ({"$gte", "$lt"}), in
    (field, _id) order, and the cursor of the next. A cursor resumes with two index ranges
    of (field, _id): the rest of the instant it stopped in, then what follows it. The one
    keyset query `page()` sends (an `$or`) is a collection scan on SecantusDB (dev/CI):
    7.6 s for a page in 40,000 documents, where these take 80-180 ms."""
    if not cursor:
        return page(collection, {field: window}, field, 1, limit)
    value, last_id = decode_cursor(cursor, field, 1, collection.name)
    docs = list(collection.find({field: value, "_id": {"$gt": last_id}})
                .sort([(field, 1), ("_id", 1)]).limit(limit + 1))
    if len(docs) <= limit:
        later = {"$gt": value, **({"$lt": window["$lt"]} if "$lt" in window else {})}
        docs += list(collection.find({field: later}).sort([(field, 1), ("_id", 1)])
                     .limit(limit + 1 - len(docs)))
    if len(docs) <= limit:
        return docs, None
    docs = docs[:limit]
    return docs, encode_cursor(field, 1, docs[-1], collection.name)


def update_and_get(collection, query, update, projection=None, upsert=False):
    """What `find_one_and_update(query, update, return_document=AFTER)` answers, as
    update_one + find_one by _id; `query` names `_id`.

    SecantusDB (dev/CI) runs find_one_and_update on an EXISTING document as a scan of the
    whole collection (growing with its size; the reproduction is in bench/RESULTS.md), while
    update_one and find_one by _id are index probes; mongod is fast either way. Not one atomic step: the document read back may already carry a
    later write (the update itself is still one atomic write, so a compare-and-set in
    `query` keeps its meaning: None when it did not match). A caller that records
    something from the exact result of its own compare-and-set must not use this: it
    builds the result from what it read and changed (deals' move does)."""
    result = collection.update_one(query, update, upsert=upsert)
    if not result.matched_count and result.upserted_id is None:
        return None
    return collection.find_one({"_id": query["_id"] if result.upserted_id is None
                                else result.upserted_id}, projection)


def upsert_if_newer(key, doc, stamp="at", keep_max=()):
    """An UpdateOne (for a bulk write) storing `doc` as the document `key` unless the
    stored one has a later `stamp`: newest copy wins whatever the order copies arrive in
    (an older copy arriving late changes nothing; the same copy again rewrites it as it
    is). `doc` replaces the stored document whole (a field it lacks is removed). Each
    field of `keep_max` that `doc` has keeps the later of the stored and the new value,
    also when the stored copy is the newer. An upsert racing another of the same key may
    fail with a duplicate key (SecantusDB; mongod retries it itself): writing it again
    applies it to the document the other made.

    One statement filtered by `_id` alone, the guard inside the update (a pipeline, as
    mongod >= 4.2 runs it). SecantusDB (dev/CI) plans any second filter field (the plain
    `{_id, stamp: {$lte}}`) through every index picker, each reading the index catalogue
    again, before it looks `_id` up: about 1.6 times the CPU of an upsert by `_id` alone
    there, where this form costs about 1.1 times it (`bench/bench_automation.py
    --upserts`; figures in bench/RESULTS.md). A `hint` changes nothing there (its update
    command checks the hint and plans without it) and `$expr` beside `_id` scans the
    collection. On mongod both forms are one `_id` probe."""
    new = {"$literal": {"_id": key, **{k: v for k, v in doc.items() if k != "_id"}}}
    kept = {field: {"$max": [f"${field}", {"$literal": doc[field]}]}
            for field in keep_max if doc.get(field) is not None}
    newer = {"$mergeObjects": [new, kept]} if kept else new
    older = {"$mergeObjects": ["$$ROOT", kept]} if kept else "$$ROOT"
    return UpdateOne({"_id": key}, [{"$replaceWith": {"$cond": [
        {"$lte": [f"${stamp}", {"$literal": doc[stamp]}]}, newer, older]}}], upsert=True)


def set_if_newer(collection, key, fields, at, stamp="at"):
    """`fields` set on the document `key` as of `at` unless it holds a later `stamp`: a
    service's copy of another's record, whose announcements may be handled in either
    order (concurrent workers; an announcement of every record beside a change made
    then). A document without `stamp` (kept before copies had one) takes any; an `_id` in
    `fields` is the key's own. False when a later copy is stored."""
    fields = {k: v for k, v in fields.items() if k != "_id"}
    try:
        if collection.update_one({"_id": key, stamp: {"$not": {"$gt": at}}},
                                 {"$set": {**fields, stamp: at}}).matched_count:
            return True
        collection.insert_one({"_id": key, **fields, stamp: at})
        return True
    except DuplicateKeyError:  # stored meanwhile, or already later
        return False


# SecantusDB (dev/CI) checks every document an `$in` matches against the whole list, so
# one `$in` costs (values x matches), and lists of 50 are an order of magnitude cheaper
# (reproduction in bench/RESULTS.md). mongod walks the index bounds either way; lists of 50 cost it a few
# round trips. Queries whose list can be long go through these two.
IN_CHUNK = 50


def in_chunks(values, size=IN_CHUNK):
    """`values` without repeats, in lists of at most `size` (for `$in` and bulk by-id writes)."""
    values = list(dict.fromkeys(values))
    for start in range(0, len(values), size):
        yield values[start:start + size]


def find_in(collection, field, values, projection=None):
    """The documents whose `field` is one of `values`, each once (a multikey field may
    match one document from two lists)."""
    seen = set()
    for chunk in in_chunks(values):
        for doc in collection.find({field: {"$in": chunk}}, projection):
            if doc["_id"] not in seen:
                seen.add(doc["_id"])
                yield doc


def active_ids(users, ids):
    """The ids among `ids` of active users in a service's copy of the users (user-type
    custom fields: crm_common.custom_fields.check_values)."""
    return {u["_id"] for u in find_in(users, "_id", list(ids), {"active": 1})
            if u.get("active", True) is not False}


def increment(collection, key, field="n", attempts=5):
    """The counter `field` of the document `key` after an atomic +1 (1 when the document
    is new): concurrent callers never get the same value. SecantusDB (dev/CI) may answer
    None to concurrent first upserts of one key (the write is applied: read it back) or
    refuse one of them with a duplicate key (tried again; raised when a transaction is
    open, which the error aborted); mongod does neither."""
    for _ in range(attempts):
        try:
            doc = collection.find_one_and_update({"_id": key}, {"$inc": {field: 1}}, upsert=True,
                                                 return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            if _current.get() is not None:
                raise
            continue
        if doc is None:
            doc = collection.find_one({"_id": key})
        return doc[field]
    raise RuntimeError(f"could not move the counter {collection.name}/{key}")


_clients = {}  # (mongo url, appname) -> [client, users]: one client per process and server
_clients_lock = threading.Lock()


def shared_client(mongo_url, appname):
    """The process's client for this server (made on first use); give it back with
    `release_client` (the last user closes it)."""
    with _clients_lock:
        entry = _clients.get((mongo_url, appname))
        if entry is None:
            entry = _clients[(mongo_url, appname)] = [connect(mongo_url, appname), 0]
        entry[1] += 1
        return entry[0]


def release_client(mongo_url, appname):
    with _clients_lock:
        entry = _clients.get((mongo_url, appname))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _clients[(mongo_url, appname)]
            entry[0].close()


class MongoStore(DependencyProvider):
    def __init__(self, store_class):
        self.store_class = store_class
        self.client = None
        self.store = None
        self._client_key = None

    def setup(self):
        settings = get_settings()
        service = self.container.service_name
        self._client_key = (settings.mongo_url, f"crm-{service}")
        self.client = shared_client(*self._client_key)
        db = joining(self.client[settings.database_name(service)])
        self.store = self.store_class(db, settings)

    def start(self):
        self.store.ensure_indexes()
        log.info("indexes ensured for %s", self.store.db.name)

    def stop(self):
        if self.client is not None:
            self.client = None
            release_client(*self._client_key)

    def get_dependency(self, worker_ctx):
        return self.store


class BaseStore:
    """What every store shares: its database, settings and a cheap health probe."""

    def __init__(self, db, settings):
        self.db = db
        self.settings = settings

    def ensure_indexes(self):
        pass

    def ping(self):
        self.db.command("ping")
        return True

    def search_records(self, collection, dump_many, ids=None, after=None, limit=500,
                       since=None, cursor=None, until=None, window_field="updated_at"):
        """For the search service (contracts/search.py RecordsPage): the documents of
        `collection` with these `ids`; else, with `since` (ISO time), those whose
        `window_field` (a time every document has, leading an index with `_id`) lies in
        [since, until) in (window_field, _id) keyset pages, each item with that time as
        `window_at` (crm_common/changes.py reads the whole collection so: a bounded window
        keeps each page's match set small, which SecantusDB reads whole before the limit);
        else the next `limit` after `after` in `_id` order (SecantusDB serves no `_id` range
        from an index: each such page reads the collection). Deleted ones included, as
        `dump_many` dumps them plus `deleted` and `version`."""
        limit = max(1, min(int(limit), 2000))
        next_cursor = None
        if ids is not None:
            docs = list(find_in(self.db[collection], "_id", [str(i) for i in ids]))
        elif since is not None:
            window = {"$gte": parse_iso(since)}
            if until is not None:
                window["$lt"] = parse_iso(until)
            docs, next_cursor = window_page(self.db[collection], window_field, window,
                                            limit, cursor)
        else:
            docs = list(self.db[collection].find({"_id": {"$gt": str(after or "")}})
                        .sort("_id", 1).limit(limit))
        items = [dict(out, id=doc["_id"], deleted=doc.get("deleted_at") is not None,
                      version=doc.get("version"),
                      **({"import_id": doc["import_id"]} if doc.get("import_id") else {}),
                      **({"window_at": to_iso(doc[window_field])} if since is not None else {}))
                 for doc, out in zip(docs, dump_many(docs))]
        full = ids is None and since is None and len(docs) == limit
        return {"items": items, "next_after": docs[-1]["_id"] if full else None,
                "next_cursor": next_cursor}

    def repoint_contact(self, collection, event, field="contact_id"):
        """contacts' contact_merged: records of the merged contacts now belong to the
        survivor. Idempotent: a redelivered event finds nothing left to move."""
        survivor = event["data"]["survivor_id"]
        merged = [i for i in event["data"]["merged_ids"] if i != survivor]
        if not merged:
            return 0
        result = self.db[collection].update_many(
            {field: {"$in": merged}}, {"$set": {field: survivor, "updated_at": utcnow()}})
        return result.modified_count
