"""Import and export speed through the gateway, beside raw pymongo on the same server.

    .venv/bin/python bench/bench_import.py [--rows 50000] [--base 5000] [--export 100000]

Starts an isolated stack (tests/stack.py), then:
0. the index cost of this server (--floor N contacts, --floor-only for just this): the same
   documents inserted with pymongo with no secondary index, with the key indexes only, and
   with every contacts index; what an index entry costs bounds any import;
1. seeds a base of --base contacts (an import through the platform);
2. imports a CSV of --rows rows through POST /api/v1/imports (on_duplicate=skip): 10% of
   the rows repeat a contact of the base, 10% repeat an earlier row of the file; prints
   rows/s, wall time (upload to job done) and the contacts service's peak RSS (/proc);
3. inserts contacts of the same shape straight into the contacts collection with pymongo
   insert_many (every index of the service in place): the raw reference rate;
4. streams GET /api/v1/contacts/export (CSV, then XLSX) over the --export contacts now in
   the base: rows/s and the gateway's peak RSS, beside a raw pymongo read of them.
"""
import argparse
import csv
import io
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (Platform, cpu_seconds, load_average, print_slow_operations,  # noqa: E402
                          profile_databases, wait_for_import)
from crm_common.ids import new_id  # noqa: E402
from crm_common.timeutil import utcnow  # noqa: E402
from services.contacts.domain import normalize_emails, normalize_phones, search_fields  # noqa: E402
from services.contacts.store import ContactsStore  # noqa: E402


def rss_mb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


class PeakRss:
    """Samples the RSS of some processes every 0.2 s; .peak in MB."""

    def __init__(self, pids_of):
        self.pids_of = pids_of
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pids_of()))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def person(n, tag):
    return [f"Name{n}", f"Surname{n} {tag}", f"p{n}.{tag}@bench.example",
            f"+39 3{n % 100:02d} {n:07d}"[:17], f"Company {n % 500} {tag}", f"bench;{tag}"]


HEADER = ["First name", "Last name", "Email", "Phone", "Company", "Tags"]


def make_csv(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


def run_import(api, data, name, peak_pids, on_duplicate="skip"):
    with PeakRss(peak_pids) as peak:
        start = time.perf_counter()
        response = api.post("/imports", files={"file": (name, data)},
                            data={"on_duplicate": on_duplicate}, timeout=300)
        assert response.status_code == 202, response.text
        accepted = time.perf_counter() - start
        job_id = response.json()["id"]
        job = wait_for_import(api.get, job_id, 0.25)
        wall = time.perf_counter() - start
    return job, wall, accepted, peak.peak


def raw_docs(n, tag):
    """Contact documents of the shape the import writes, with their derived search keys."""
    docs = []
    for i in range(n):
        doc = {"_id": new_id(), "first_name": f"Raw{i}", "last_name": f"Insert{i} {tag}",
               "emails": normalize_emails([{"email": f"raw{i}.{tag}@bench.example"}]),
               "phones": normalize_phones([{"number": f"+39 34{i % 10} {i:07d}"}], "IT"),
               "tags": ["raw"], "custom": {}, "status": "lead", "do_not_contact": False,
               "source": "raw", "owner_id": None, "company_id": None, "company_name": None,
               "created_at": utcnow(), "updated_at": utcnow(), "deleted_at": None,
               "last_contacted_at": None, "version": 1}
        doc.update(search_fields(doc))
        docs.append(doc)
    return docs


def insert_rate(collection, docs):
    """insert_many in batches of 1000; seconds taken."""
    start = time.perf_counter()
    for i in range(0, len(docs), 1000):
        collection.insert_many(docs[i:i + 1000], ordered=False)
    return time.perf_counter() - start


def raw_insert(stack, n, tag):
    """The same contact documents, insert_many in batches of 1000, straight to the server."""
    return insert_rate(stack.db("contacts")["contacts"], raw_docs(n, tag))


def index_floor(stack, n):
    """What the server's index maintenance costs per contact: the same documents inserted
    with pymongo into scratch collections with no secondary index, with only the email and
    phone key indexes, and with every index of the contacts service (its ensure_indexes).
    The difference per index entry bounds any import on this server."""
    db = stack.db("bench_floor")
    docs = raw_docs(n, "floor")
    keys = len(docs[0]["phone_keys"]) + len(docs[0]["email_keys"])
    plain = insert_rate(db["plain"], [dict(d) for d in docs])
    for field in ("email_keys", "phone_keys"):
        db["keys"].create_index(field)
    keyed = insert_rate(db["keys"], [dict(d) for d in docs])
    store = ContactsStore(db, None)
    store.ensure_indexes()
    indexes = len(db["contacts"].index_information())
    full = insert_rate(db["contacts"], [dict(d) for d in docs])
    per_entry = (keyed - plain) / n / (len(docs[0]["phone_keys"]) + len(docs[0]["email_keys"]))
    # one entry per plain index (tags: one tag), one per key of the key arrays
    entries = indexes - 1 - 3 + keys + len(docs[0]["handle_keys"])
    print(f"index cost on this server ({n} contact documents, pymongo insert_many):")
    print(f"  no secondary index {n / plain:8.0f} docs/s")
    print(f"  email + phone keys {n / keyed:8.0f} docs/s  -> {per_entry * 1e6:.0f} us per index entry")
    print(f"  every contacts index ({indexes}, ~{entries} entries per contact) "
          f"{n / full:8.0f} docs/s")
    print(f"  -> 50,000 contacts need {50000 * full / n:.0f} s of raw inserts here")
    stack.mongo.drop_database(db.name)


def stream_export(api, fmt, peak_pids):
    with PeakRss(peak_pids) as peak:
        start = time.perf_counter()
        response = api.get("/contacts/export", params={"format": fmt}, stream=True, timeout=600)
        assert response.status_code == 200, response.text
        size, newlines = 0, 0
        for chunk in response.iter_content(1 << 16):
            size += len(chunk)
            newlines += chunk.count(b"\n")
        seconds = time.perf_counter() - start
    return seconds, size, newlines, peak.peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--base", type=int, default=5000)
    parser.add_argument("--export", type=int, default=100000,
                        help="contacts to export (filled up with pymongo); 0: no export")
    parser.add_argument("--skip-xlsx", action="store_true")
    parser.add_argument("--floor", type=int, default=5000,
                        help="contacts for the index-cost step (0: skip it)")
    parser.add_argument("--profile-slow-ms", type=int, default=0,
                        help="list the server's operations slower than this during the import")
    parser.add_argument("--floor-only", action="store_true",
                        help="only the index-cost step (no import, no export)")
    args = parser.parse_args()

    # a stop (Ctrl-C, kill) still closes the stack it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    platform = Platform()
    stack = platform.stack
    try:
        api = stack.sign_in()
        contacts_pid = stack.processes["contacts-0"].pid
        gateway_pid = stack.processes["gateway"].pid

        def contacts_pids():
            return [contacts_pid]

        def gateway_pids():
            return [gateway_pid] + children(gateway_pid)

        if args.floor:
            index_floor(stack, args.floor)
        if args.floor_only:
            return
        print(f"contacts service RSS at start: {rss_mb(contacts_pids()):.0f} MB; "
              f"gateway (master + workers): {rss_mb(gateway_pids()):.0f} MB")
        base_rows = [person(n, "base") for n in range(args.base)]
        job, wall, _, _ = run_import(api, make_csv(base_rows), "base.csv", contacts_pids)
        print(f"seed: {job['counts']['created']} contacts imported in {wall:.1f} s")

        # the file: 80% new rows, 10% repeating the base, 10% repeating earlier rows
        n_base, n_inner = args.rows // 10, args.rows // 10
        fresh = [person(args.base + n, "file") for n in range(args.rows - n_base - n_inner)]
        rows = list(fresh)
        rows += [person(n % args.base, "base") for n in range(n_base)]
        rows += [fresh[n * 7 % len(fresh)] for n in range(n_inner)]
        data = make_csv(rows)
        print(f"import file: {len(rows)} rows, {len(data) / 1e6:.1f} MB")
        load, cpu = load_average(), cpu_seconds(platform)
        if args.profile_slow_ms:
            profile_databases(stack.mongo, stack.db_prefix, args.profile_slow_ms)
        job, wall, accepted, peak = run_import(api, data, "bench.csv", contacts_pids)
        if args.profile_slow_ms:
            print_slow_operations(stack.mongo, stack.db_prefix)
            profile_databases(stack.mongo, stack.db_prefix, 0)
        spent = {k: v - cpu.get(k, 0.0) for k, v in cpu_seconds(platform).items()}
        counts = job["counts"]
        print(f"import through the gateway: {counts}")
        print(f"  accepted (202) in {accepted:.2f} s; wall time to done {wall:.1f} s; "
              f"{counts['rows'] / wall:.0f} rows/s; contacts service peak RSS {peak:.0f} MB")
        print(f"  CPU seconds by part during the import ({load} before): " + " ".join(
            f"{k}={v:.1f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.1))

        # the raw insert floor: as many contacts as the import created, same shape, same
        # indexes, same server
        raw_n = max(counts["created"], 1000)
        cpu = cpu_seconds(platform)
        seconds = raw_insert(stack, raw_n, "raw")
        database = cpu_seconds(platform).get("database", 0.0) - cpu.get("database", 0.0)
        print(f"pymongo insert_many, same documents and indexes: {raw_n} in {seconds:.1f} s = "
              f"{raw_n / seconds:.0f} docs/s, database CPU {database:.1f} s (reference for the "
              f"{counts['created']} created)")
        if not args.export:
            return
        more = args.export - stack.db("contacts")["contacts"].estimated_document_count()
        if more > 0:
            raw_insert(stack, more, "fill")
        total = stack.db("contacts")["contacts"].count_documents({"deleted_at": None})
        seconds, size, lines, peak = stream_export(api, "csv", gateway_pids)
        print(f"export CSV: {lines - 1} rows ({size / 1e6:.1f} MB) in {seconds:.1f} s = "
              f"{(lines - 1) / seconds:.0f} rows/s; gateway peak RSS {peak:.0f} MB "
              f"(base has {total})")
        start = time.perf_counter()
        out = io.StringIO()
        writer = csv.writer(out)
        n = 0
        for doc in stack.db("contacts")["contacts"].find({"deleted_at": None}):
            writer.writerow([doc["_id"], doc.get("first_name"), doc.get("last_name")])
            n += 1
            if n % 5000 == 0:
                out.seek(0)
                out.truncate()
        seconds = time.perf_counter() - start
        print(f"pymongo find over the same contacts (one cursor, CSV of 3 columns): {n} in "
              f"{seconds:.1f} s = {n / seconds:.0f} rows/s")
        if not args.skip_xlsx:
            seconds, size, _, peak = stream_export(api, "xlsx", gateway_pids)
            print(f"export XLSX: {size / 1e6:.1f} MB in {seconds:.1f} s = {total / seconds:.0f} "
                  f"rows/s; gateway peak RSS {peak:.0f} MB")
    finally:
        platform.close()


if __name__ == "__main__":
    main()
