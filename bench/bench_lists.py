"""List screens and global search at size: every list read of issue 18 through the gateway
(answered from the search service's index) at 1 and 16 clients, p50/p95, beside the same
query on the Tantivy engine alone (in this process, on the same records), CPU per process
and the search service's RSS.

    .venv/bin/python bench/bench_lists.py                 # smoke size, under 2 minutes
    .venv/bin/python bench/bench_lists.py --scale 1       # the issue's sizes: 100,000
        contacts, 20,000 companies, 100,000 deals, 200,000 tasks, 200,000 calls (hours)
    .venv/bin/python bench/bench_lists.py --contacts 48000 --deals 0 --tasks 0 --calls 0
    .venv/bin/python bench/bench_lists.py --custom-field ...   # contacts also carry a
        number and a select custom field; the reads add filters and sorts by them
    .venv/bin/python bench/bench_lists.py --contacts 100000 --contacts-api-max 20000 ...
        # 20,000 imported, the rest their copies, indexed by a rebuild (minutes, not an hour)

Data goes in through the platform: contacts and their companies by CSV import, deals,
tasks and calls by the API (POST /deals, POST /tasks, /telephony/events), 8 clients.
Starts an isolated stack (tests/stack.py).
"""
import argparse
import csv
import io
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlencode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (Platform, cpu_note, cpu_seconds, hold_quiet,  # noqa: E402
                          http_latencies, load_average, wait_for_import)
from crm_common.changes import EPOCH, changed_pages  # noqa: E402
from crm_common.timeutil import to_iso, utcnow  # noqa: E402

FULL = {"contacts": 100_000, "companies": 20_000, "deals": 100_000, "tasks": 200_000,
        "calls": 200_000}
SMOKE_SCALE = 0.002
LAST_NAMES = ["Rossi", "Bianchi", "Müller", "Łukasz", "García", "Иванов", "כהן", "Smith",
              "Dubois", "Kowalski", "Nakamura", "Silva"]
FIRST_NAMES = ["Mario", "Anna", "José", "Élodie", "Piotr", "Ольга", "Noa", "John", "Lea"]
PATH = None  # the read being measured (set before the load processes fork)


def make_request(seed, index, counter):
    return "GET", PATH, None


def percentiles(latencies):
    ordered = sorted(latencies)
    if not ordered:
        return None, None
    at = lambda q: round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)  # noqa: E731
    return at(0.50), at(0.95)


def load(base_url, path, clients, seconds, headers):
    """(latencies, statuses) of `clients` keep-alive clients reading `path`."""
    global PATH
    PATH = path
    return http_latencies(base_url, make_request, clients, seconds, headers)


# -- loading through the platform ---------------------------------------------------------

def phone(i):
    return f"+39 347 {1000000 + i:07d}"


def contacts_csv(n, companies, custom=None):
    """The import's CSV; with `custom` (CUSTOM_TYPES) a column per custom field, by key."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("First name", "Last name", "Email", "Phone", "Company", "Tags", "Source")
                    + tuple(custom or ()))
    for i in range(n):
        last = f"{LAST_NAMES[i % len(LAST_NAMES)]}{i // len(LAST_NAMES) % 50 or ''}"
        writer.writerow((FIRST_NAMES[i % len(FIRST_NAMES)], last, f"p{i}@bench.example",
                         phone(i), f"Company {i % companies}" if companies else "",
                         "vip" if i % 10 == 0 else "regular", ("web", "fair", "phone")[i % 3])
                        + tuple(custom_value(kind, i) for kind in (custom or {}).values()))
    return out.getvalue().encode()


def import_contacts(session, base, n, companies, custom=None):
    if not n:
        return
    started = time.perf_counter()
    answer = session.post(base + "/imports", data={"on_duplicate": "create"}, timeout=600,
                          files={"file": ("bench.csv", contacts_csv(n, companies, custom))})
    answer.raise_for_status()
    job_id = answer.json()["id"]
    job = wait_for_import(lambda path: session.get(base + path, timeout=30), job_id, 0.5)
    print(f"  import of {n} contacts ({companies} companies): {job['status']} in "
          f"{time.perf_counter() - started:.1f} s", flush=True)


def parallel(func, items, workers=8):
    """func(session, item) for every item, in `workers` threads with a session each."""
    import requests
    local = threading.local()
    failures = []

    def run(item):
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(HEADERS)
        try:
            func(local.session, item)
        except Exception as exc:  # noqa: BLE001 - counted and shown
            failures.append(exc)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, items))
    if failures:
        print(f"    {len(failures)} failed, e.g. {failures[0]!r}")


def ok(answer):
    if answer.status_code >= 300:
        raise RuntimeError(f"{answer.status_code} {answer.text[:200]}")
    return answer.json()


HEADERS = {}


def load_data(platform, counts, custom=None):
    import requests
    base = platform.base_url + "/api/v1"
    session = requests.Session()
    session.headers.update(HEADERS)
    import_contacts(session, base, counts["contacts"], counts["companies"], custom)
    contact_ids = []
    cursor = None
    while counts["contacts"]:
        page = ok(session.get(base + "/contacts", params={"limit": 500, **(
            {"cursor": cursor} if cursor else {})}, timeout=60))
        contact_ids += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    pipeline = ok(session.post(base + "/pipelines", json={"name": "Bench", "stages": [
        {"name": "New", "probability": 10}, {"name": "Offer", "probability": 50},
        {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]}))
    now = utcnow()
    # what one write costs each process (the search service's share: its event handling)
    sample = min(100, max(counts["contacts"] // 10, 20))
    before = cpu_seconds(platform)
    parallel(lambda s, i: ok(s.post(base + "/contacts", params={"force": "true"}, json={
        "first_name": "Sample", "last_name": f"Create{i}", "emails": [f"s{i}@bench.example"],
        "phones": [phone(900000 + i)]}, timeout=60)), range(sample), workers=1)
    wait_quiet(platform, timeout=10)
    print(f"  POST /contacts x{sample}, 1 client: "
          f"{cpu_note(before, cpu_seconds(platform), sample)}", flush=True)
    started = time.perf_counter()
    parallel(lambda s, i: ok(s.post(base + "/deals", json={
        "title": f"Deal {i}", "amount": 1000 * (i % 500 + 1), "currency": "EUR",
        "pipeline_id": pipeline["id"], "stage_id": pipeline["stages"][i % 2]["id"],
        "contact_id": contact_ids[i % len(contact_ids)] if contact_ids else None},
        timeout=60)), range(counts["deals"]))
    parallel(lambda s, i: ok(s.post(base + "/tasks", json={
        "title": f"Task {i}", "kind": ("call", "meeting", "email", "todo")[i % 4],
        "due_at": to_iso(now + timedelta(hours=i % 400 - 200)),
        **({"contact_id": contact_ids[i % len(contact_ids)]} if contact_ids else {})},
        timeout=60)), range(counts["tasks"]))

    def call(s, i):  # one event: a call reported when it ended
        ok(s.post(base + "/telephony/events", json={
            "event_id": f"bench-{i}", "provider": "bench", "call_id": f"bench-{i}",
            "direction": "inbound", "from": phone(i % max(counts["contacts"], 1)),
            "to": "+390212345678", "state": "ended", "outcome": ("answered", "no_answer")[i % 2],
            "duration_s": i % 300, "occurred_at": to_iso(now - timedelta(minutes=i))},
            timeout=60))
    parallel(call, range(counts["calls"]))
    print(f"  {counts['deals']} deals, {counts['tasks']} tasks, {counts['calls']} calls through "
          f"the API in {time.perf_counter() - started:.1f} s", flush=True)
    return session


# what --api-max copies in the owners' databases: (service, collection)
COPIED = {"deals": ("deals", "deals"), "tasks": ("tasks", "tasks"), "calls": ("telephony", "calls")}


def insert_batched(collection, docs, size=5000):
    """Inserts the `docs` (any iterable) in unordered batches of `size`."""
    batch = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=False)


def copy_up(platform, counts):
    """Deals, tasks and calls beyond those made through the API: copies of them written into
    their owners' databases (the owner's own document shape; a new id, times 1 ms apart, unique
    keys kept unique), for the search index's rebuild to read. Loading 500,000 records
    through the API takes hours on this machine; the reads are what is measured."""
    from bson import ObjectId
    started = time.perf_counter()
    for name, (service, collection) in COPIED.items():
        target, docs = counts[name], platform.stack.db(service)[collection]
        seeds = list(docs.find({}))
        if not seeds or len(seeds) >= target:
            continue
        base = utcnow() - timedelta(milliseconds=target)

        def copies(seeds=seeds, base=base, name=name, target=target):
            for i in range(len(seeds), target):
                doc = dict(seeds[i % len(seeds)], _id=str(ObjectId()))
                at = base + timedelta(milliseconds=i)
                doc.update(created_at=at, updated_at=at)
                doc.pop("source_key", None)
                doc.pop("alarm_at", None)  # the tasks timer announces nothing for copies
                if name == "calls":
                    doc.update(call_id=f"copy-{i}", started_at=at)
                elif name == "deals":
                    doc["title"] = f"Deal {i}"
                else:
                    doc["title"] = f"Task {i}"
                yield doc
        insert_batched(docs, copies())
    print(f"  copied up to {', '.join(f'{counts[n]} {n}' for n in COPIED)} in the owners' "
          f"databases in {time.perf_counter() - started:.1f} s", flush=True)


def copy_contacts(platform, target, custom=None):
    """Contacts beyond those imported: copies of the imported ones written into the contacts
    database (the service's own shape, its derived keys from services/contacts/domain.py),
    each with the name, e-mail, phone, tag, source and custom values the import's row `i`
    would have had, 1 ms apart, for the search index's rebuild to read."""
    from bson import ObjectId
    from services.contacts.domain import normalize_phones, search_fields
    started = time.perf_counter()
    docs = platform.stack.db("contacts").contacts
    seeds = list(docs.find({"deleted_at": None}))
    if not seeds or len(seeds) >= target:
        return
    base = utcnow() - timedelta(milliseconds=target)

    def copies():
        for i in range(len(seeds), target):
            seed = seeds[i % len(seeds)]
            at = base + timedelta(milliseconds=i)
            doc = dict(seed, _id=str(ObjectId()), created_at=at, updated_at=at,
                       first_name=FIRST_NAMES[i % len(FIRST_NAMES)],
                       last_name=f"{LAST_NAMES[i % len(LAST_NAMES)]}{i // len(LAST_NAMES) % 50 or ''}",
                       emails=[dict(seed["emails"][0], email=f"p{i}@bench.example")],
                       phones=normalize_phones([{"number": phone(i)}], "IT"),
                       tags=["vip" if i % 10 == 0 else "regular"],
                       source=("web", "fair", "phone")[i % 3], possible_duplicates=[])
            doc.pop("import_id", None)   # (import_id, import_row) is unique: a copy is no row
            doc.pop("import_row", None)
            if custom:
                doc["custom"] = dict(seed.get("custom") or {}, **{
                    key: (float(custom_value(kind, i)) if kind == "number" else custom_value(kind, i))
                    for key, kind in custom.items()})
            doc.update(search_fields(doc))
            yield doc
    insert_batched(docs, copies())
    print(f"  copied up to {target} contacts in the contacts database in "
          f"{time.perf_counter() - started:.1f} s", flush=True)


def wait_quiet(platform, timeout=60, cores=0.3):
    """Until the stack's background work after the load (events, timers) has settled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(platform)
        time.sleep(1)
        after = cpu_seconds(platform)
        busy = sum(after.get(k, 0) - before.get(k, 0) for k in after if k != "load-client")
        if busy < cores:
            return busy
    return busy


def wait_indexed(platform, timeout=300):
    """Until the index holds what the owners hold (lists and totals read from it)."""
    stack = platform.stack
    wanted = {kind: stack.db(owner)[collection].estimated_document_count()
              for kind, owner, collection in (("contact", "contacts", "contacts"),
                                              ("deal", "deals", "deals"),
                                              ("task", "tasks", "tasks"),
                                              ("call", "telephony", "calls"))}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = {kind: len(platform.stack.rpc.call("search", "indexed", kind, timeout=60)["ids"])
                for kind in wanted}
        if all(held[k] >= wanted[k] for k in wanted):
            return held
        time.sleep(1)
    return held


# -- the reads ----------------------------------------------------------------------------

def reads(session, base, counts, custom=None):
    """(label, path, params) of every read measured; with `custom`, those by its fields."""
    not_since = to_iso(utcnow() - timedelta(days=1))
    out = [("contacts, first page (default sort)", "/contacts", {}),
           ("contacts sort=name", "/contacts", {"sort": "name"}),
           ("contacts sort=-updated_at", "/contacts", {"sort": "-updated_at"}),
           ("contacts q=ross (a word)", "/contacts", {"q": "ross"}),
           ("contacts q=Rossi12", "/contacts", {"q": "Rossi12"}),
           ("contacts q=3471000 (phone digits)", "/contacts", {"q": "3471000"}),
           ("contacts tag=vip", "/contacts", {"tag": "vip"}),
           ("contacts not_contacted_since", "/contacts", {"not_contacted_since": not_since}),
           ("contacts include_total=true", "/contacts", {"include_total": "true"}),
           ("companies, first page", "/companies", {}),
           ("deals status=open include_total", "/deals", {"status": "open",
                                                          "include_total": "true"}),
           ("tasks overdue=true", "/tasks", {"overdue": "true"}),
           ("tasks sort=due_at", "/tasks", {}),
           ("calls, first page", "/calls", {}),
           ("search q=rossi", "/search", {"q": "rossi"}),
           ("search q=mari (as typed)", "/search", {"q": "mari"})]
    # page 20 of the contacts, by its cursor
    cursor, params = None, {"limit": 50}
    for _ in range(19):
        page = ok(session.get(base + "/contacts", params=dict(params, **(
            {"cursor": cursor} if cursor else {})), timeout=60))
        cursor = page["next_cursor"]
        if not cursor:
            break
    if cursor:
        out.insert(1, ("contacts page 20 (cursor)", "/contacts", {"cursor": cursor}))
    return out + (CUSTOM_READS if custom else [])


def engine_alone(platform, read_list, seconds, custom=None, from_replica=False):
    """The same reads on Tantivy in this process: the owners' records (search_records
    windows, as the service's rebuild reads them) written into a fresh index, or with
    `from_replica` a copy of the search replica's own index folder; lists.page / the search
    query timed single-threaded. A sort by a field of `custom` gets its type as the gateway
    sends it (gateway/lists.py)."""
    from services.search import feed, lists
    from services.search.answers import hit
    from services.search.index import TantivyIndex
    from services.search.query import parse, search_query
    folder = tempfile.mkdtemp(prefix="bench-lists-")
    if from_replica:
        shutil.copytree(platform.stack.search_index_dir(0), folder, dirs_exist_ok=True)
    index = TantivyIndex(folder)
    started = time.perf_counter()
    for kind in () if from_replica else feed.ORDER:
        def fetch(**query):
            return platform.stack.rpc.call(feed.OWNERS[kind], "search_records", kind,
                                           timeout=120, **query)
        for items in changed_pages(fetch, EPOCH, utcnow() + timedelta(days=1), 1000):
            for record in items:
                feed.write(index, kind, record)
    index.commit()
    index.committed()
    print(f"  engine alone: {index.num_docs()} documents " + (
        "(a copy of the replica's index)" if from_replica else
        f"indexed in {time.perf_counter() - started:.1f} s (read from the owners included)"))
    kinds = {"/contacts": "contact", "/companies": "company", "/deals": "deal",
             "/tasks": "task", "/calls": "call"}
    figures = {}
    for label, path, params in read_list:
        if path == "/search":
            parsed = parse(params["q"])

            def run():
                query = search_query(index.schema, parsed)
                [hit(parsed, s, f) for s, f in index.hits(query, 20)]
                index.counts(query)
        else:
            if "cursor" in params:  # the service's cursors are not this index's: walk again
                cursor = None
                for _ in range(19):
                    cursor = lists.page(index, kinds[path], dict(
                        {"limit": 50}, **({"cursor": cursor} if cursor else {})),
                        None, "IT")["next_cursor"]
                params = {"cursor": cursor} if cursor else {}

            def run(kind=kinds[path], params=params, hints=sort_hints(params, custom)):
                return lists.page(index, kind, dict(params, limit=50), None, "IT", hints)
        latencies = []
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            run()
            latencies.append(time.perf_counter() - t0)
        figures[label] = percentiles(latencies)
    index.close()
    shutil.rmtree(folder, ignore_errors=True)
    return figures


def rebuild(platform, timeout):
    """A fresh search replica (empty folder) rebuilding from the owners: (seconds to ready,
    documents, {type: records read}, cpu note per 1,000 records), or None if not ready."""
    stack = platform.stack
    stack.stop_service("search", 0)
    shutil.rmtree(stack.search_index_dir(0), ignore_errors=True)
    before = cpu_seconds(platform)
    started = time.perf_counter()
    stack.start_service("search", 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            health = stack.rpc.call("search", "health", timeout=10)
        except Exception:  # noqa: BLE001 - starting
            continue
        if health["state"] == "ready":
            seconds = time.perf_counter() - started
            done = health["rebuild"]["done"]
            return (seconds, health["documents"], done,
                    cpu_note(before, cpu_seconds(platform), max(sum(done.values()), 1) / 1000))
    return None


# -- --custom-field: contacts with a typed number and select; reads filtered and sorted by
# them (from the index: gateway/lists.py sends a custom sort with its type) -----------------
CUSTOM_TYPES = {"bench_score": "number", "bench_tier": "select"}
TIERS = ("gold", "silver", "bronze")


CUSTOM_READS = [
    ("contacts sort=cf.bench_score", "/contacts", {"sort": "cf.bench_score"}),
    ("contacts cf.bench_tier=gold sort=-cf.bench_score", "/contacts",
     {"cf.bench_tier": "gold", "sort": "-cf.bench_score"}),
    ("contacts cf.bench_score.gte=500 sort=cf.bench_tier", "/contacts",
     {"cf.bench_score.gte": "500", "sort": "cf.bench_tier"}),
    ("contacts q=ross sort=cf.bench_score", "/contacts",
     {"q": "ross", "sort": "cf.bench_score"})]


def custom_value(kind, i):
    return (i * 7919) % 1000 if kind == "number" else TIERS[i % 3]


def define_custom_fields(platform):
    """Defines the contacts' custom fields; returns them ({key: type}) for the loader, the
    reads and the engine-alone figures."""
    import requests
    base = platform.base_url + "/api/v1"
    for key, kind in CUSTOM_TYPES.items():
        ok(requests.post(base + "/custom-fields", headers=HEADERS, timeout=30, json={
            "entity": "contact", "key": key, "label": key.replace("_", " ").title(),
            "type": kind, **({"options": list(TIERS)} if kind == "select" else {})}))
    return dict(CUSTOM_TYPES)


def sort_hints(params, custom):
    """lists.page's hints for a sort by a custom field: its type (None otherwise)."""
    sort = str(params.get("sort") or "").lstrip("-")
    if custom and sort.startswith("cf.") and sort[3:] in custom:
        return {"sort_type": custom[sort[3:]]}
    return None


def search_rss(platform):
    """(RSS, peak RSS) in MB of each search replica."""
    out = []
    for key, proc in platform.stack.processes.items():
        if key.startswith("search-"):
            fields = {}
            with open(f"/proc/{proc.pid}/status") as handle:
                for line in handle:
                    name, _, value = line.partition(":")
                    fields[name] = value.strip()
            out.append((key, int(fields["VmRSS"].split()[0]) // 1024,
                        int(fields["VmHWM"].split()[0]) // 1024))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=SMOKE_SCALE,
                        help=f"of the issue's sizes {FULL} (default {SMOKE_SCALE}: a smoke run)")
    for name in FULL:
        parser.add_argument(f"--{name}", type=int, help="overrides --scale for this one")
    parser.add_argument("--seconds", type=float, default=1.5, help="per figure")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--api-max", type=int, help="deals, tasks and calls made through the "
                        "API at most each; the rest are copies written into the owners' "
                        "databases, indexed by a fresh search replica's rebuild")
    parser.add_argument("--contacts-api-max", type=int, help="contacts imported at most (with "
                        "their companies); the rest are copies of them written into the "
                        "contacts database, indexed by a fresh search replica's rebuild; the "
                        "engine-alone figures then read a copy of that replica's index")
    parser.add_argument("--rebuild-timeout", type=float, default=3600,
                        help="seconds a fresh replica's rebuild may take (0: not measured)")
    parser.add_argument("--quiet-lock", metavar="FILE", help="before the reads, wait until the "
                        "machine's other jobs that share FILE have paused (bench.common.hold_quiet)")
    parser.add_argument("--custom-field", action="store_true",
                        help="contacts carry a number and a select custom field; add reads "
                             "filtered and sorted by them")
    args = parser.parse_args()
    counts = {name: getattr(args, name) if getattr(args, name) is not None
              else int(FULL[name] * args.scale) for name in FULL}
    clients = [int(c) for c in args.clients.split(",")]

    # a timeout's or a Ctrl-C's stop still stops the stack (finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    platform = Platform()
    try:
        HEADERS.update(platform.auth_headers())
        custom = define_custom_fields(platform) if args.custom_field else None
        base = platform.base_url + "/api/v1"
        print(f"lists benchmark: {counts}; {args.seconds} s per figure; {load_average()}",
              flush=True)
        through_api = dict(counts)
        if args.api_max is not None:
            through_api.update({n: min(counts[n], args.api_max) for n in COPIED})
        if args.contacts_api_max is not None:
            through_api["contacts"] = min(counts["contacts"], args.contacts_api_max)
        session = load_data(platform, through_api, custom)
        rebuilt = None
        if through_api != counts:
            copy_up(platform, counts)
            copy_contacts(platform, counts["contacts"], custom)
            rebuilt = rebuild(platform, args.rebuild_timeout or 3600)
            if rebuilt:
                print(f"  rebuilt in {rebuilt[0]:.1f} s: {rebuilt[1]} documents, read "
                      f"{rebuilt[2]}; cpu per 1,000 records: {rebuilt[3]}", flush=True)
        if args.quiet_lock:
            print(f"  waited {hold_quiet(args.quiet_lock):.0f} s for the machine's other jobs "
                  f"to pause", flush=True)
        print(f"  indexed: {wait_indexed(platform)}; stack busy "
              f"{wait_quiet(platform):.2f} cores before the reads", flush=True)
        read_list = reads(session, base, counts, custom)
        print(f"\n{'read':<40} " + " ".join(f"{c:>3} client(s) p50/p95 ms" for c in clients)
              + "   cpu ms per read (16 clients)")
        for label, path, params in read_list:
            cells, note = [], ""
            for n in clients:
                before = cpu_seconds(platform)
                latencies, statuses = load(platform.base_url, f"/api/v1{path}?{urlencode(params)}",
                                           n, args.seconds, HEADERS)
                after = cpu_seconds(platform)
                p50, p95 = percentiles(latencies)
                bad = {k: v for k, v in statuses.items() if k != 200}
                cells.append(f"{p50!s:>9} / {p95!s:<9}" + (f" {bad}" if bad else ""))
                if n == clients[-1] and latencies:
                    note = cpu_note(before, after, len(latencies))
            print(f"{label:<40} " + "  ".join(cells) + f"   {note}", flush=True)
        print("\nengine alone (Tantivy in this process, same records, 1 thread): p50 / p95 ms")
        for label, (p50, p95) in engine_alone(
                platform, read_list, args.seconds / 2, custom,
                from_replica=args.contacts_api_max is not None).items():
            print(f"  {label:<40} {p50} / {p95}")
        for key, rss, peak in search_rss(platform):
            print(f"\nsearch service {key}: RSS {rss} MB, peak RSS {peak} MB")
        if args.rebuild_timeout:
            print("\nrebuild of a fresh replica from the owners (the engine alone above read "
                  "and indexed the same records in this process)", flush=True)
            answer = rebuilt or rebuild(platform, args.rebuild_timeout)
            if answer is None:
                print(f"  not ready after {args.rebuild_timeout:.0f} s")
            else:
                seconds, documents, done, note = answer
                print(f"  ready in {seconds:.1f} s: {documents} documents, read {done}; "
                      f"cpu per 1,000 records: {note}")
                for key, rss, peak in search_rss(platform):
                    print(f"  search service {key} after the rebuild: RSS {rss} MB, "
                          f"peak RSS {peak} MB")
    finally:
        platform.close()


if __name__ == "__main__":
    main()
