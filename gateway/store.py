"""The only pymongo code of the gateway. Its own database (settings.database_name("gateway")):
users, api_keys, audit, rate_limits (fixed-window counters shared by every gunicorn worker),
idempotency (the stored answers of writes sent with an Idempotency-Key) and settings (the
generated dev JWT secret, the auth epoch).

Also the two things that let a worker skip the database on most requests (docs/auth.md):
- `AuthEpoch`: a counter bumped by every change that can alter a signed-in identity (a user
  changed or created, an API key changed). Workers cache identities stamped with it; a
  bump makes every cached identity stale at once in every worker on this host (an 8-byte
  shared-memory counter) and, within one sync interval, in every other gateway replica
  (a copy in the `settings` collection that each worker polls).
- `Syncer`: one background thread per worker process that runs the periodic work (flushing
  the buffered rate-limit counts, polling the auth epoch) every `SYNC_INTERVAL_S`."""
import fcntl
import logging
import mmap
import os
import re
import secrets
import struct
import tempfile
import threading
import time
from datetime import timedelta

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from crm_common.cursors import page
from crm_common.ids import new_id
from crm_common.mongo import after_commit, connect, in_chunks, joining, update_and_get
from crm_common.timeutil import utcnow

log = logging.getLogger("gateway.store")


# audit list filters, each with a (field, at, _id) index
AUDIT_FILTERS = ("resource_id", "request_id", "actor_id", "api_key_id", "resource")

# how often each worker flushes its rate-limit counts and polls the auth epoch
SYNC_INTERVAL_S = 0.5
# fields a sign-in writes; they change nothing in a cached identity
_LOGIN_ONLY_FIELDS = {"last_login_at", "password_hash"}


class Syncer:
    """One daemon thread per process running `tasks` every `interval` seconds. Started on
    first use, and again in a forked child (a thread does not survive fork)."""

    def __init__(self, interval=SYNC_INTERVAL_S):
        self.interval = interval
        self.tasks = []
        self._pid = None
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def add(self, task):
        if task not in self.tasks:
            self.tasks.append(task)
        self.ensure_running()

    def ensure_running(self):
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="gateway-sync", daemon=True).start()

    def wake(self):
        self._wake.set()

    def _run(self):
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.run_once()

    def run_once(self):
        for task in list(self.tasks):
            try:
                task()
            except Exception:  # noqa: BLE001 - retried at the next interval
                log.warning("gateway sync task %s failed", getattr(task, "__name__", task),
                            exc_info=True)


class AuthEpoch:
    """A version stamp of everything a cached identity depends on: (host counter, database
    counter). `bump()` after a change; `current()` costs a few microseconds.

    The host counter lives in an 8-byte shared file (/dev/shm, else the temp folder) named
    after the gunicorn master (the parent of every worker) and the database: every worker
    of this gateway sees a bump before the change's HTTP answer has left. The database
    counter (`settings` `auth_epoch`) reaches other replicas when they poll it."""

    def __init__(self, settings_collection, name):
        self.settings = settings_collection
        self.db_value = None  # unknown until the first poll
        self._map = self._fd = None
        try:
            self._open_shared(name)
        except OSError as exc:
            log.warning("no shared auth epoch on this host (%s): other workers see auth "
                        "changes within the sync interval / cache TTL only", exc)

    def _open_shared(self, name):
        folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        prefix = "crm-gateway-auth-"
        _remove_dead(folder, prefix)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        path = os.path.join(folder, f"{prefix}{os.getppid()}-{safe}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_uid != os.getuid():  # not ours: someone could reset it
                raise PermissionError(f"{path} belongs to another user")
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, 8)
            self._fd = fd
        except OSError:
            os.close(fd)
            raise

    def current(self):
        host = struct.unpack_from("<Q", self._map)[0] if self._map is not None else None
        return host, self.db_value

    def bump(self):
        """After a change: stale at once here and on this host, at the next poll elsewhere."""
        if self._map is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                struct.pack_into("<Q", self._map, 0, struct.unpack_from("<Q", self._map)[0] + 1)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        try:
            doc = self.settings.find_one_and_update(
                {"_id": "auth_epoch"}, {"$inc": {"n": 1}}, upsert=True,
                return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # two first bumps raced: the other one counts
            doc = None
        except PyMongoError:
            # the change itself is stored; this host knows already, other replicas will
            # within the cache TTL
            log.warning("could not bump the auth epoch in the database", exc_info=True)
            doc = None
        # this process need not wait for its own poll; None (SecantusDB's answer to a first
        # upsert, or a failure): unknown until the next poll, so nothing cached matches
        self.db_value = doc["n"] if doc is not None else None

    def poll(self):
        doc = self.settings.find_one({"_id": "auth_epoch"})
        self.db_value = doc["n"] if doc else 0


def _remove_dead(folder, prefix):
    """Drop epoch files of gunicorn masters that are gone (a few bytes each, on tmpfs)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) <= 1:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
        except OSError:  # alive, someone else's
            pass


class GatewayStore:
    def __init__(self, settings):
        # connect() does not block: pymongo connects in the background on first use
        self.client = connect(settings.mongo_url, "crm-gateway")
        # collections join the transaction a user's write and its user_upserted are in
        self.db = joining(self.client[settings.database_name("gateway")])
        self.users = self.db["users"]
        self.api_keys = self.db["api_keys"]
        self.audit = self.db["audit"]
        self.rate_limits = self.db["rate_limits"]
        self.idempotency = self.db["idempotency"]
        self.settings = self.db["settings"]
        self.syncer = Syncer()
        self.auth_epoch = AuthEpoch(self.settings, self.db.name)
        self.rate_counters = None  # gateway.security.BufferedCounters, made on first use

    def start_auth_epoch_polling(self):
        self.syncer.add(self.auth_epoch.poll)

    def ensure_indexes(self):
        # unique email: two workers creating the first admin at once end with one user
        self.users.create_index("email", unique=True)
        # unique extension (users without one hold null, outside this partial index)
        try:
            self.users.create_index("extension", unique=True, name="extension_unique",
                                    partialFilterExpression={"extension": {"$type": "string"}})
        except OperationFailure as error:  # users stored before the rule share one
            log.error("users share an extension, so it is not unique yet (give each its "
                      "own through PATCH /users/{id}): %s", error)
        self.users.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.users.create_index([("manager_id", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.users.create_index([("team", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.users.create_index([("role", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.api_keys.create_index("key_hash", unique=True)
        self.api_keys.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.audit.create_index([("at", DESCENDING), ("_id", DESCENDING)])
        for field in AUDIT_FILTERS:
            self.audit.create_index([(field, ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)])
        # mongod drops expired counters by itself; harmless where TTL is not implemented
        self.rate_limits.create_index("expires_at", expireAfterSeconds=0)
        # stored answers to Idempotency-Key writes, 24 h (expired ones are ignored on read too)
        self.idempotency.create_index("expires_at", expireAfterSeconds=0)

    def ping(self):
        self.db.command("ping")
        return True

    def close(self):
        self.client.close()

    # settings
    def shared_secret(self, name):
        """A random secret generated once and shared by every worker and restart."""
        candidate = secrets.token_urlsafe(48)
        try:
            self.settings.update_one({"_id": name}, {"$setOnInsert": {"value": candidate}},
                                     upsert=True)
        except DuplicateKeyError:  # another worker inserted it at the same moment
            pass
        return self.settings.find_one({"_id": name})["value"]

    def claim(self, name, seconds):
        """True for one caller per `seconds` window (e.g. one worker re-announces users)."""
        now = utcnow()
        try:
            result = self.settings.update_one(
                {"_id": f"claim:{name}", "until": {"$lt": now}},
                {"$set": {"until": now + timedelta(seconds=seconds)}}, upsert=True)
        except DuplicateKeyError:  # the claim exists and has not expired
            return False
        return bool(result.upserted_id or result.modified_count)

    # users
    def insert_user(self, doc):
        doc["_id"] = new_id()
        self.users.insert_one(doc)  # DuplicateKeyError on a taken email
        after_commit(self.auth_epoch.bump)  # a manager's cached team may have grown
        return doc

    def insert_user_once(self, doc):
        """Create the user unless one with this email exists; returns it either way."""
        doc = {**doc, "_id": new_id()}
        try:
            self.users.update_one({"email": doc["email"]}, {"$setOnInsert": doc}, upsert=True)
        except DuplicateKeyError:  # two workers upserted the same email at once
            pass
        self.auth_epoch.bump()
        return self.users.find_one({"email": doc["email"]})

    def get_user(self, user_id):
        return self.users.find_one({"_id": user_id})

    def get_user_by_email(self, email):
        return self.users.find_one({"email": email})

    def get_user_by_extension(self, extension):
        return self.users.find_one({"extension": extension})

    def get_users(self, user_ids):
        return list(self.users.find({"_id": {"$in": list(user_ids)}}))

    def update_user(self, user_id, changes, inc=None, query=None):
        update = {"$set": changes}
        if inc:
            update["$inc"] = inc
        doc = update_and_get(self.users, {"_id": user_id, **(query or {})}, update)
        if inc or not set(changes) <= _LOGIN_ONLY_FIELDS:
            # role, team, active, token_version...: every cached identity is stale (bumped
            # even when nothing matched: cheap, and never wrong), once the change is visible
            after_commit(self.auth_epoch.bump)
        return doc

    def team_member_ids(self, user_id, team):
        """Everyone reporting to this user, plus everyone in the same team (when it has one)."""
        ids = {d["_id"] for d in self.users.find({"manager_id": user_id}, {"_id": 1})}
        if team:
            ids |= {d["_id"] for d in self.users.find({"team": team}, {"_id": 1})}
        ids.discard(user_id)
        return sorted(ids)

    def page_users(self, query, limit, cursor):
        return page(self.users, query, "created_at", DESCENDING, limit, cursor)

    def all_users(self):
        return self.users.find({}).sort([("_id", ASCENDING)])

    # api keys
    def insert_api_key(self, doc):
        doc["_id"] = new_id()
        self.api_keys.insert_one(doc)
        return doc

    def get_api_key_by_hash(self, key_hash):
        return self.api_keys.find_one({"key_hash": key_hash})

    def get_api_key(self, key_id):
        return self.api_keys.find_one({"_id": key_id})

    def update_api_key(self, key_id, changes, query=None):
        doc = update_and_get(self.api_keys, {"_id": key_id, **(query or {})}, {"$set": changes})
        self.auth_epoch.bump()  # revoked, scopes or limit changed: cached keys are stale
        return doc

    def touch_api_key(self, key_id, now, every_s=60):
        """last_used_at, written at most once a minute per key (not a write per request)."""
        self.api_keys.update_one(
            {"_id": key_id, "$or": [{"last_used_at": None},
                                    {"last_used_at": {"$lt": now - timedelta(seconds=every_s)}}]},
            {"$set": {"last_used_at": now}})

    def page_api_keys(self, query, limit, cursor):
        return page(self.api_keys, query, "created_at", DESCENDING, limit, cursor)

    # audit
    def insert_audit(self, entry):
        entry["_id"] = new_id()
        self.audit.insert_one(entry)
        return entry

    def recent_writes(self, field, value, resources, since, limit):
        """A caller's latest writes (actor_id or api_key_id = value) since a time, of these
        resources: an (actor_id | api_key_id, at, _id) index range."""
        found = (self.audit.find({field: value, "at": {"$gte": since}},
                                 {"resource": 1, "resource_id": 1, "record_updated_at": 1})
                 .sort([("at", DESCENDING), ("_id", DESCENDING)]).limit(limit * 5))
        return [e for e in found if e.get("resource") in resources][:limit]

    def page_audit(self, query, limit, cursor):
        return page(self.audit, query, "at", DESCENDING, limit, cursor)

    # rate limits
    def hit(self, key, window_start, window_s, amount=1):
        """Add to the counter of one fixed window; returns the count after this hit."""
        counter_id = f"{key}:{int(window_start.timestamp())}"
        update = {"$inc": {"n": amount},
                  "$setOnInsert": {"expires_at": window_start + timedelta(seconds=window_s)}}
        for _ in range(2):  # two first hits of a window may race on the upsert
            try:
                doc = self.rate_limits.find_one_and_update(
                    {"_id": counter_id}, update, upsert=True,
                    return_document=ReturnDocument.AFTER)
                if doc is None:
                    # SecantusDB sometimes answers None to concurrent first upserts (the
                    # increment is applied); mongod never does: read the count back
                    doc = self.rate_limits.find_one({"_id": counter_id})
                return doc["n"]
            except DuplicateKeyError:
                continue
        return self.rate_limits.find_one({"_id": counter_id})["n"]

    def add_hits(self, increments, read_ids):
        """Buffered rate-limit counts: `increments` {counter_id: (amount, expires_at)} added in
        one bulk write, then the totals of `read_ids` (every worker's flushed hits) in one
        query. Returns {counter_id: total}."""
        if increments:
            ops = [UpdateOne({"_id": cid}, {"$inc": {"n": amount},
                                            "$setOnInsert": {"expires_at": expires_at}},
                             upsert=True)
                   for cid, (amount, expires_at) in increments.items()]
            try:
                self.rate_limits.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:
                # a first upsert of a counter raced another worker's: the document exists
                # now, so the retry adds to it; anything else is a real failure
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != 11000 for e in errors):
                    raise
                retry = [ops[e["index"]] for e in errors]
                self.rate_limits.bulk_write(retry, ordered=False)
        # $in lists of 50: SecantusDB's cost grows with values x matches
        return {d["_id"]: d.get("n", 0) for chunk in in_chunks(read_ids)
                for d in self.rate_limits.find({"_id": {"$in": chunk}}, {"n": 1})}

    # Idempotency-Key answers (gateway/idempotency.py): one document per caller and key
    def claim_idempotency(self, doc):
        """Insert the pending claim; False if a document with this id exists."""
        try:
            self.idempotency.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    def get_idempotency(self, record_id):
        return self.idempotency.find_one({"_id": record_id})

    def take_over_idempotency(self, record_id, stale, changes):
        """Replace a claim whose owner died (`stale`: the condition that says so)."""
        return self.idempotency.update_one({"_id": record_id, **stale},
                                           {"$set": changes}).modified_count == 1

    def finish_idempotency(self, record_id, claim, answer):
        self.idempotency.update_one({"_id": record_id, "claim": claim, "state": "pending"},
                                    {"$set": {"state": "done", **answer}})

    def release_idempotency(self, record_id, claim):
        self.idempotency.delete_one({"_id": record_id, "claim": claim, "state": "pending"})

    def count(self, key, window_start):
        doc = self.rate_limits.find_one({"_id": f"{key}:{int(window_start.timestamp())}"})
        return doc["n"] if doc else 0
