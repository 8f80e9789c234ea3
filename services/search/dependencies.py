"""The search index as a nameko dependency: one Tantivy index per replica (index.py),
written by one greenthread at a time, committed in groups off the event loop, rebuilt in
the background from the owners when it is missing or of another schema version.

Durability: an event handler returns (and its message is acked) only after what it wrote
is committed, so a replica killed at any instant finds every unacknowledged event in its
queue again when it starts. Commits are grouped: every `CRM_SEARCH_COMMIT_MS` at most,
all writes made meanwhile share one commit (and one fsync), or as soon as 3/4 of the
container's workers wait on it (each holds an unacknowledged message: the prefetch is
`max_workers`). A commit costs ~10-15 ms of CPU whatever it carries (Tantivy writes a
segment and merges), so fewer, larger commits are most of what search costs per event;
a search or list answers from every write made so far (a dirty index is committed before
it is read), so a longer interval delays no reader."""
import functools
import logging
import time
from datetime import timedelta

import eventlet
from eventlet import tpool
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider

from contracts.search import TYPES
from crm_common.changes import EPOCH, WINDOW_TIMEOUT_S, changed_pages
from crm_common.config import get_settings
from crm_common.errors import Timeout, Unavailable
from crm_common.messaging.rpc import RpcPool
from crm_common.timeutil import as_utc, parse_iso, to_iso, utcnow
from services.search import feed, lists
from services.search.documents import micros
from services.search.answers import hit
from services.search.index import SCHEMA_VERSION, TantivyIndex, replica_id
from services.search.query import parse, search_query

log = logging.getLogger(__name__)

# an owner that does not answer (down, restarting) is asked again this long before the
# event is failed (and retried by the reliable handler, then dead-lettered)
FETCH_PATIENCE_S = 30.0
# a list waits this long at most for an owner's record the caller has just written
FRESH_PATIENCE_S = 3.0
MAX_FRESH = 10
REBUILD_CHUNK = 200   # records written per hold of the writer during a rebuild
# a rebuild reads records up to this far past its start (clocks of other hosts may run
# ahead); what is written after a type was read reaches the index by its events
REBUILD_AHEAD = timedelta(days=1)


class Owners:
    """The owners' `search_records` over RPC, as no one in particular (so they answer
    every record), patient with an owner that is restarting."""

    def __init__(self, amqp_uri, timeout):
        self.pool = RpcPool(amqp_uri, size=8, timeout=timeout, name="search")

    def page(self, kind, patience=FETCH_PATIENCE_S, **query):
        """One `search_records` page: by `ids`, `after` an id, or `since` a time."""
        deadline = time.monotonic() + patience
        delay = 0.2
        while True:
            try:
                return self.pool.call(feed.OWNERS[kind], "search_records", kind, **query)
            except (Timeout, Unavailable) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("%s did not answer search_records (%s); asking again",
                            feed.OWNERS[kind], exc)
                eventlet.sleep(delay)
                delay = min(delay * 2, 5.0)

    def window(self, kind, **query):
        """One `search_records` page of a window of changes (crm_common/changes.py): an
        owner that is down is waited for; one that times out on too wide a window raises
        Timeout, for the window to be narrowed (waited for up to
        changes.WINDOW_TIMEOUT_S)."""
        delay = 0.2
        while True:
            try:
                return self.pool.call(feed.OWNERS[kind], "search_records", kind,
                                      timeout=WINDOW_TIMEOUT_S, **query)
            except Unavailable as exc:
                log.warning("%s is not there for search_records (%s); asking again",
                            feed.OWNERS[kind], exc)
                eventlet.sleep(delay)
                delay = min(delay * 2, 5.0)

    def records(self, wanted, patience=FETCH_PATIENCE_S):
        """{(kind, id): record or None} for [(kind, id)]."""
        out = {key: None for key in wanted}
        by_kind = {}
        for kind, record_id in wanted:
            by_kind.setdefault(kind, []).append(record_id)
        for kind, ids in by_kind.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for record in self.page(kind, patience, ids=chunk, limit=len(chunk))["items"]:
                    out[(kind, record["id"])] = record
        return out

    def close(self):
        self.pool.close()


class SearchIndex(DependencyProvider):
    """`self.index` in the service: apply(event), search(...), state()."""

    def setup(self):
        self.settings = get_settings()
        self.root = self.settings.search.index_dir
        self.replica = replica_id(self.root)
        self.queues_lost = []   # feed queues the broker no longer had (listen.py)
        self.index = None
        self.lock = Semaphore(1)
        self.next_commit = Event()
        self.waiting = 0        # handlers waiting on next_commit
        self.wake = Event()     # the commit loop's: commit now
        # commit at once when this many handlers wait: 3/4 of the workers (each holds an
        # unacknowledged message; the prefetch is max_workers), the rest for lists/searches
        self.batch = max(getattr(self.container, "max_workers", 16) * 3 // 4, 1)
        self.running = False
        self.rebuild = None     # {"started_at", "finished_at", "done": {type: n}}
        self.owners = Owners(self.container.config["AMQP_URI"], self.settings.rpc_timeout)

    def queue_lost(self, name):
        """A feed queue of this replica was missing: events may have been missed."""
        self.queues_lost.append(name)

    def start(self):
        fresh = bool(self.queues_lost)
        if fresh:
            log.warning("feed queues %s were gone: rebuilding the index", self.queues_lost)
        self.index = TantivyIndex(self.root, fresh=fresh)
        self.rebuild = self.index.completed()
        self.running = True
        self.container.spawn_managed_thread(self._commit_loop)
        if self.index.needs_rebuild:
            self.rebuild = {"started_at": to_iso(utcnow()), "finished_at": None,
                            "done": {kind: 0 for kind in feed.ORDER}}
            self.container.spawn_managed_thread(self._rebuild)

    def stop(self):
        self.running = False
        if self.index is not None:
            if self.index.dirty:
                self._commit()
            self.index.close()
        self.owners.close()

    def kill(self):
        self.running = False
        self.owners.close()

    def get_dependency(self, worker_ctx):
        return self

    # -- writing --------------------------------------------------------------------
    def _commit_loop(self):
        interval = max(self.settings.search.commit_ms, 1) / 1000.0
        while self.running:
            self.wake.wait(interval)   # the interval, or enough handlers waiting (_wait)
            self.wake = Event()
            if self.index.dirty:
                try:
                    self._commit()
                except Exception:  # noqa: BLE001 - the loop must live; waiters were told
                    log.exception("search index commit failed")

    def _wait(self, committed):
        """Waits for the commit carrying this handler's writes; 3/4 of the workers waiting
        commit at once (all of them would hold every prefetched message)."""
        self.waiting += 1
        try:
            if self.waiting >= self.batch and not self.wake.ready():
                self.wake.send(True)
            committed.wait()
        finally:
            self.waiting -= 1

    def commit_for_readers(self):
        """What was written is committed before a search or list reads the index (they
        see every write applied so far, however long the commit interval)."""
        if self.index.dirty:
            self._commit()

    def _commit(self):
        with self.lock:
            if not self.index.dirty:   # committed meanwhile (a reader, the loop)
                return
            waiters, self.next_commit = self.next_commit, Event()
            try:
                tpool.execute(self.index.commit)
                self.index.committed()
            except Exception as exc:
                waiters.send_exception(exc)
                raise
        waiters.send(True)

    def _write(self, answers, carried=(), touched=None):
        """Owners' answers ({(kind, id): record}) and the records an event carried
        ([(kind, record)]) into the index, each with what follows from it; the records
        that must be fetched again because of them."""
        follow = []
        with self.lock:
            for kind, record in carried:
                follow += feed.apply(self.index, kind, record["id"], record, carried=True)
            for (kind, record_id), record in answers.items():
                follow += feed.apply(self.index, kind, record_id, record)
            if touched:
                feed.touch(self.index, *touched)
            return follow, self._commit_of_writes()

    def _commit_of_writes(self):
        """(Holding the lock) the commit that will carry what was written so far; None when
        everything written is committed already (e.g. an old state that was skipped)."""
        return self.next_commit if self.index.dirty else None

    def apply(self, event):
        """An event's records (carried, else fetched from their owners), written and
        committed."""
        work = feed.work_of(event)
        if work.import_undone:
            with self.lock:
                keys = self.index.keys_with("contact", f"import_id={work.import_undone}")
            work.fetch += [tuple(key.split(":", 1)) for key in keys]
        if work.bought:
            with self.lock:
                if self.index.record("contact", work.bought[0]) is None:
                    work.fetch.append(("contact", work.bought[0]))   # not indexed yet
        if not (work.fetch or work.records or work.touched or work.bought):
            return 0
        fetched = self.owners.records(work.fetch) if work.fetch else {}
        follow, committed = self._write(fetched, work.records, work.touched)
        if follow:
            _, committed = self._write(self.owners.records(follow))
        if work.bought:
            with self.lock:
                feed.buy(self.index, *work.bought)
                committed = self._commit_of_writes()
        if work.merged:
            with self.lock:
                feed.repoint(self.index, *work.merged)
                committed = self._commit_of_writes()
        if committed is not None:
            self._wait(committed)
        return len(work.records) + len(work.fetch) + len(follow)

    # -- rebuild --------------------------------------------------------------------
    def _rebuild(self):
        """Every record of every owner, in windows of the time each owner pages by (an
        index range: crm_common/changes.py); events keep being applied meanwhile (the later
        state of a record always wins), and what is written after a type was read reaches
        the index by its events."""
        started = time.monotonic()
        for kind in feed.REBUILT:
            position = EPOCH  # everything before it is read
            while self.running:
                end = utcnow() + REBUILD_AHEAD
                try:
                    for items in changed_pages(functools.partial(self.owners.window, kind),
                                               position, end, self.settings.search.rebuild_page):
                        if not self.running:
                            return
                        self._rebuild_page(kind, items)
                        position = max(position, as_utc(parse_iso(items[-1]["window_at"])))
                except Exception:  # noqa: BLE001 - keep trying; the state says where it is
                    log.exception("rebuild: reading %s from %s failed; again in 5 s",
                                  kind, to_iso(position))
                    eventlet.sleep(5)
                    continue
                break
        if not self.running:
            return
        self._commit()
        self.rebuild["finished_at"] = to_iso(utcnow())
        self.rebuild["seconds"] = round(time.monotonic() - started, 3)
        self.index.mark_complete(self.rebuild)
        log.info("search index rebuilt: %s", self.rebuild)

    def _rebuild_page(self, kind, items):
        """One page of a rebuild into the index, a chunk per hold of the writer."""
        for start in range(0, len(items), REBUILD_CHUNK):
            with self.lock:
                for record in items[start:start + REBUILD_CHUNK]:
                    if kind == "purchase" and record.get("contact_id"):
                        feed.buy(self.index, record["contact_id"],
                                 [(record["product_id"], record["purchased_at"][:10])])
                    elif kind != "purchase":
                        feed.write(self.index, kind, record)
            eventlet.sleep(0)
        if kind in self.rebuild["done"]:
            self.rebuild["done"][kind] += len(items)

    # -- answers --------------------------------------------------------------------
    @property
    def rebuilding(self):
        return self.index is None or self.index.needs_rebuild

    def state(self):
        return {"replica": self.replica, "schema_version": SCHEMA_VERSION,
                "state": "rebuilding" if self.rebuilding else "ready",
                "documents": self.index.num_docs() if self.index else 0,
                "rebuild": self.rebuild}

    def search(self, text, types, limit, caller, access=None):
        if self.rebuilding:
            raise Unavailable("The search index is being rebuilt; try again shortly",
                              {"rebuild": self.rebuild})
        self.commit_for_readers()
        parsed = parse(text, self.settings.default_region)
        people = caller.person_ids()   # the owners' own rule (docs/auth.md)
        types = tuple(types or TYPES)
        out = {"items": [], "counts": {kind: 0 for kind in types}}
        query = search_query(self.index.schema, parsed, types, people, access)
        if query is None:
            return out
        out["items"] = [hit(parsed, score, found) for score, found in self.index.hits(query, limit)]
        out["counts"].update(self.index.counts(query))
        return out

    def list_page(self, kind, params, caller, fresh=None, hints=None):
        """A list endpoint's page from the index (lists.py). `fresh`: the caller's own
        latest writes ([{"type", "id", "updated_at"}]) the answer must show: a record the
        index does not hold at that state yet is read from its owner and committed first."""
        if self.rebuilding:
            raise Unavailable("The search index is being rebuilt; the list is read from "
                              "its owner meanwhile", {"rebuild": self.rebuild})
        self.catch_up(fresh or [])
        self.commit_for_readers()
        return lists.page(self.index, kind, params, caller.person_ids(),
                          self.settings.default_region, hints)

    def catch_up(self, written):
        """Makes the index hold at least these states (read-your-own-write); what it holds
        uncommitted counts (the reader commits it)."""
        behind = []
        for item in written[:MAX_FRESH]:
            record_id, stamp = str(item.get("id") or ""), micros(item.get("updated_at"))
            if item.get("type") in feed.OWNERS and record_id:
                held = self.index.held(f"{item['type']}:{record_id}")
                if (held[0][0] if held else -1) < stamp:
                    behind.append((item["type"], record_id))
        if behind:
            follow, _ = self._write(self.owners.records(behind, patience=FRESH_PATIENCE_S))
            if follow:  # what carries words of it (a company's contacts)
                self._write(self.owners.records(follow, patience=FRESH_PATIENCE_S))
            # committed by the reader (list_page) at once

    def indexed(self, kind):
        self.commit_for_readers()
        return {"replica": self.replica, "state": self.state()["state"],
                "ids": self.index.live_stamps(kind, max(self.index.num_docs(), 1))}
