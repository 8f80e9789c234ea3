"""Funnel, sales and forecast reports over a large generated data set: each report's time
through the gateway (HTTP -> RPC -> deals -> database) beside the same database work run
directly with pymongo on the same server, and the index each one scans (explain).

    .venv/bin/python bench/bench_deals_reports.py [--deals 100000] [--per-deal 10] [--runs 3] [--exact]

Sales and forecast are read from the report summaries (services/deals/summaries.py): the
bench times the rebuild that computes them from the generated deals (what an existing
database runs once), then per report: the first run with every bucket dirty (`cold`: the
bench marks them all, so the run recomputes each bucket it needs from the deals), the warm
runs through the gateway, the same reads with pymongo (`new`: summaries.Summaries on a store
over pymongo) and the aggregation over the deals they replace (`old`: the definition, RPC
exact=True), whose numbers must be the same ("same numbers" / "DIFFERENT").

The funnel is read from its counters (services/deals/funnel.py): the bench generates the
history with the deals' funnel numbers, as the service writes it, then times the rebuild
that computes the counters from the history (what an existing database runs once). Its
pymongo column is the same counter reads (operations.funnel_counts on a store over pymongo).
--exact also times the funnel's definition, the aggregation over the whole history
(funnel_report exact=True, what the report ran before the counters), directly with pymongo,
and checks that both give the same numbers.

The issue's size is 100,000 deals and 1,000,000 history entries (the defaults). Data is
generated with insert_many in batches straight into the deals database of an isolated
stack (like the tests'), in the same shape the service writes. On a shared 2-core machine
with the embedded SecantusDB, generating 1.1M documents takes long: pass --deals to run a
smaller size; the script prints the size it ran.
"""
import argparse
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from services.deals import summaries  # noqa: E402
from services.deals.domain import DEFAULT_LEAD_SOURCES  # noqa: E402
from services.deals.operations import funnel_counts  # noqa: E402
from services.deals.store import DealsStore, reports  # noqa: E402
from tests.stack import Stack  # noqa: E402

OWNERS = [f"bench-user-{i}" for i in range(50)]


class BenchStack(Stack):
    """The test stack with timeouts long enough for reports over a big data set."""

    def env(self, **extra):
        return super().env(**{"CRM_RPC_TIMEOUT": 300, "GATEWAY_TIMEOUT": 600, **extra})


def iso(value):
    return value.isoformat().replace("+00:00", "Z")


def generate(db, pipeline, deals, per_deal, batch, now):
    """Deals created over the last two years, each with `per_deal` stage entries (a walk
    over the open stages, the last one won, lost or still open), numbered per owner in
    creation order."""
    rng = random.Random(42)
    opens = [s for s in pipeline["stages"] if s["kind"] == "open"]
    won = next(s for s in pipeline["stages"] if s["kind"] == "won")
    lost = next(s for s in pipeline["stages"] if s["kind"] == "lost")
    span = 730 * 86400
    deal_docs, history_docs = [], []
    inserted_deals = inserted_history = 0
    started = time.perf_counter()
    # creation times ascending with n: the service numbers an owner's deals in creation
    # order (funnel_no), so the numbers below follow time as they do in a real database
    offsets = sorted((rng.randrange(span) for _ in range(deals)), reverse=True)

    def flush(force=False):
        nonlocal deal_docs, history_docs, inserted_deals, inserted_history
        if deal_docs and (force or len(deal_docs) >= batch):
            db.deals.insert_many(deal_docs, ordered=False)
            inserted_deals += len(deal_docs)
            deal_docs = []
        if history_docs and (force or len(history_docs) >= batch):
            db.deal_history.insert_many(history_docs, ordered=False)
            inserted_history += len(history_docs)
            history_docs = []

    for n in range(deals):
        deal_id = f"bench{n:08d}"
        owner = OWNERS[n % len(OWNERS)]
        created = now - timedelta(seconds=offsets[n])
        end = rng.random()
        path = [opens[0]] + [rng.choice(opens) for _ in range(per_deal - 2)]
        path.append(won if end < 0.3 else lost if end < 0.6 else rng.choice(opens))
        when, previous = created, None
        number = n // len(OWNERS) + 1  # the deal's number in its owner's funnel counters
        for version, stage in enumerate(path, 1):
            if previous:
                when = min(when + timedelta(seconds=rng.randrange(3600, 5 * 86400)), now)
            history_docs.append({
                "_id": f"{deal_id}:{version}", "deal_id": deal_id, "pipeline_id": pipeline["id"],
                "owner_id": owner, "from_stage_id": previous[0]["id"] if previous else None,
                "to_stage_id": stage["id"], "to_kind": stage["kind"], "actor_id": owner, "at": when,
                "seconds_in_from_stage": int((when - previous[1]).total_seconds()) if previous else None,
                "lost_reason": "price" if stage["kind"] == "lost" else None, "lost_note": None,
                "funnel_no": number})
            previous = (stage, when)
        last = path[-1]
        close = created + timedelta(days=rng.randrange(10, 120))
        deal_docs.append({
            "_id": deal_id, "title": f"Bench deal {n}", "amount": rng.randrange(100, 100000) * 100,
            "currency": "EUR" if n % 5 else "USD", "pipeline_id": pipeline["id"],
            "stage_id": last["id"], "probability": last["probability"], "status": last["kind"],
            "contact_id": None, "company_id": None, "owner_id": owner,
            "source": DEFAULT_LEAD_SOURCES[n % len(DEFAULT_LEAD_SOURCES)],
            "expected_close_date": close.date().isoformat(),
            "lost_reason": "price" if last["kind"] == "lost" else None, "lost_note": None,
            "notes": None, "stage_entered_at": when,
            "closed_at": when if last["kind"] != "open" else None, "created_at": created,
            "updated_at": when, "deleted_at": None, "created_by": owner,
            "possible_duplicates": [], "version": len(path), "funnel_no": number})
        flush()
        if (n + 1) % 10000 == 0:
            elapsed = time.perf_counter() - started
            print(f"  generated {n + 1} deals, {inserted_history + len(history_docs)} history "
                  f"entries ({elapsed:.0f} s)", flush=True)
    flush(force=True)
    return inserted_deals, inserted_history, time.perf_counter() - started


def timed(func, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def index_names(plan):
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if "indexName" in node:
                found.add(f"{node.get('stage', 'IXSCAN')}:{node['indexName']}")
            if node.get("stage") == "COLLSCAN":
                found.add("COLLSCAN")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(plan)
    return ", ".join(sorted(found)) or "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deals", type=int, default=100000)
    parser.add_argument("--per-deal", type=int, default=10, help="history entries per deal")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-runs", type=int, default=1,
                        help="runs of the old aggregation over the deals (pymongo `old` column)")
    parser.add_argument("--exact", action="store_true",
                        help="also time the funnel's history aggregation and compare the numbers")
    args = parser.parse_args()

    stack = BenchStack()
    try:
        print("starting an isolated stack ...", flush=True)
        stack.start()
        api = stack.sign_in()
        pipeline = next(p for p in api.get("/pipelines").json()["items"] if p["is_default"])
        db = stack.db("deals")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        print(f"generating {args.deals} deals x {args.per_deal} history entries "
              f"(insert_many, batches of {args.batch}) ...", flush=True)
        n_deals, n_history, seconds = generate(db, pipeline, args.deals, args.per_deal,
                                               args.batch, now)
        print(f"data set: {n_deals} deals, {n_history} history entries, generated in "
              f"{seconds:.0f} s ({(n_deals + n_history) / seconds:.0f} docs/s)")
        started = time.perf_counter()
        rebuilt = stack.rpc.call("deals", "rebuild_funnel_counters", timeout=3600)
        print(f"funnel counters rebuilt from the history in {time.perf_counter() - started:.0f} s: "
              f"{rebuilt}", flush=True)
        started = time.perf_counter()
        rebuilt = stack.rpc.call("deals", "rebuild_report_summaries", timeout=3600)
        print(f"report summaries rebuilt from the deals in {time.perf_counter() - started:.0f} s: "
              f"{rebuilt}\n", flush=True)
        store = DealsStore(db, None)

        quarter = {"from": iso(now - timedelta(days=91)), "to": iso(now)}
        year = {"from": iso(now - timedelta(days=365)), "to": iso(now)}
        everything = {"from": iso(now - timedelta(days=800)), "to": iso(now + timedelta(days=1))}
        soon = {"from": (now + timedelta(days=10)).date().isoformat(),
                "to": (now + timedelta(days=75)).date().isoformat()}
        cases = [
            ("funnel, last quarter", "funnel", "funnel_report", {"pipeline_id": pipeline["id"], **quarter}),
            ("funnel, all history", "funnel", "funnel_report", {"pipeline_id": pipeline["id"], **everything}),
            ("funnel, one agent, all history", "funnel", "funnel_report",
             {"pipeline_id": pipeline["id"], "owner_id": OWNERS[0], **everything}),
            ("sales by owner, last year", "sales", "sales_report", {"group_by": "owner", **year}),
            ("sales by month, last year", "sales", "sales_report", {"group_by": "month", **year}),
            ("sales by source, last year", "sales", "sales_report", {"group_by": "source", **year}),
            ("sales by owner, one agent, last year", "sales", "sales_report",
             {"group_by": "owner", "owner_id": OWNERS[0], **year}),
            ("sales by month, all", "sales", "sales_report", {"group_by": "month", **everything}),
            ("forecast, all open deals", "forecast", "forecast_report", {}),
            ("forecast, closing in 10-75 days", "forecast", "forecast_report", soon),
            ("forecast, one agent", "forecast", "forecast_report", {"owner_id": OWNERS[0]}),
        ]
        print("gateway: HTTP -> RPC -> deals -> SecantusDB; pymongo new: the same reads in this "
              "process; pymongo old: the aggregation over the deals they replace (the definition).")
        print("cold: the first run after every summary bucket was marked dirty; "
              "p50 / min: the warm runs after it.")
        print(f"{'report':<38} {'cold':>7} {'gateway p50':>11} {'min':>6} {'pymongo new':>11} "
              f"{'old':>7}  numbers       index (explain)")
        reads = []
        for label, path, method, params in cases:
            def gateway():
                return _ok(api.get(f"/reports/{path}", params=params, timeout=900)).json()
            cold, old, same = None, None, ""
            if path != "funnel":
                db[summaries.COLLECTION].update_many({}, {"$inc": {"dirty": 1}})
                started = time.perf_counter()
                gateway()
                cold = time.perf_counter() - started
            http = timed(gateway, args.runs)
            if path == "funnel":
                direct = timed(lambda: _funnel_direct(store, params, pipeline["id"]), args.runs)
            else:
                direct = timed(lambda: _new_direct(store, path, params), args.runs)
                definition, index, _ = _direct(path, params, pipeline["id"])
                old = timed(lambda: list(db.deals.aggregate(definition, allowDiskUse=True)),
                            args.old_runs)
                fast = stack.rpc.call("deals", method, params, timeout=300)
                exact = stack.rpc.call("deals", method, params, exact=True, timeout=3600)
                same = "same numbers" if fast == exact else "DIFFERENT"
            plan = stack.rpc.call("deals", method, params, explain=True, timeout=300)
            if path != "funnel":
                reads.append((label, plan))
            print(f"{label:<38} {_secs(cold):>7} {http[0]:>9.2f} s {http[1]:>4.2f} s "
                  f"{direct[0]:>9.2f} s {_secs(old and old[0]):>7}  {same:<12}  {index_names(plan)}",
                  flush=True)
        print("\nthe reads of the summaries (explain per part: status read, rows' aggregation; "
              "partial days from the deals):")
        for label, plan in reads:
            for read in plan.get("reads", []):
                names = [index_names(read.get(k)) for k in ("status", "plan") if read.get(k)]
                print(f"  {label:<38} {read['collection']:<17} {' '.join(map(str, read['part'])):<44} "
                      f"{' | '.join(names)}")
        if args.exact:
            print("\nfunnel's definition (the aggregation over the history: RPC exact=True, one run), "
                  "numbers compared with the counters':")
            for label, path, method, params in cases:
                if path != "funnel":
                    continue
                started = time.perf_counter()
                exact = stack.rpc.call("deals", method, params, exact=True, timeout=3600)
                took = time.perf_counter() - started
                same = exact == stack.rpc.call("deals", method, params, timeout=300)
                print(f"{label:<40} {took:>10.2f} s  {'same numbers' if same else 'DIFFERENT'}",
                      flush=True)
        print("\ntarget (issue): each report under 2 s on the embedded MongoDB")
    finally:
        stack.close()


def _ok(response):
    if response.status_code != 200:
        raise SystemExit(f"report failed: {response.status_code} {response.text[:300]}")
    return response


def _when(params, key):
    return datetime.fromisoformat(params[key].replace("Z", "+00:00"))


def _funnel_direct(store, params, pipeline_id):
    """The funnel's counter reads and folding, without RPC and HTTP (admin: no owner scope)."""
    scope = [params["owner_id"]] if params.get("owner_id") else None
    return funnel_counts(store, pipeline_id, _when(params, "from"), _when(params, "to"), scope)


def _secs(value):
    return "-" if value is None else f"{value:.2f} s"


def _new_direct(store, path, params):
    """The summaries' reads and folding, without RPC and HTTP (admin: no owner scope)."""
    reader = summaries.Summaries(store)
    scope = [params["owner_id"]] if params.get("owner_id") else None
    if path == "sales":
        return summaries.sales_answer_rows(reader.sales_rows(
            params["group_by"], _when(params, "from"), _when(params, "to"), {}, scope))
    day = (lambda key: datetime.fromisoformat(params[key]).date() if params.get(key) else None)
    return reader.forecast_rows({}, day("from"), day("to"), scope)


def _direct(path, params, pipeline_id):
    """The aggregation the service runs for these parameters (admin: no owner scope)."""
    def when(key):
        return datetime.fromisoformat(params[key].replace("Z", "+00:00"))
    scope = [params["owner_id"]] if params.get("owner_id") else None
    if path == "funnel":
        pipeline, hint = reports.funnel(pipeline_id, when("from"), when("to"), scope)
        return pipeline, hint, "deal_history"
    if path == "sales":
        pipeline, hint = reports.sales(params["group_by"], when("from"), when("to"), {}, scope)
        return pipeline, hint, "deals"
    pipeline, hint = reports.forecast({}, params.get("from"), params.get("to"), scope)
    return pipeline, hint, "deals"


if __name__ == "__main__":
    main()
