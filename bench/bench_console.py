"""The console's speed in Debian's headless chromium at size: the first contact list page
with 100,000 contacts (cold: a fresh browser profile, nothing cached; warm: a reload), and
search as you type (from the last keystroke to the table showing only the matches), each
beside the API call it waits for, timed directly in the same run, and the CPU each process
spent (the browser's too).

    flock /tmp/bench.lock .venv/bin/python bench/bench_console.py            # 100,000 contacts
    flock /tmp/bench.lock .venv/bin/python bench/bench_console.py --contacts 2000   # smoke

Needs web/dist (`cd web && npm run build`) and chromium (`./crm test` installs both).
Contacts are written into the contacts database directly, then the search service's index
is rebuilt from it (its own path when an index is missing): loading 100,000 through the API
would measure the import, which bench_import does. Starts an isolated stack (tests/stack.py).
"""
import argparse
import os
import shutil
import signal
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from bench.bench_lists import FIRST_NAMES, LAST_NAMES  # noqa: E402
from bench.bench_telephony import contact_doc  # noqa: E402
from bench.common import Platform, cpu_note, cpu_seconds, load_average, proc_stats  # noqa: E402
from services.contacts.domain import search_fields  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "dist")
ROWS = '[data-testid="contacts-table"] tbody tr'
# set before the console's scripts run: when the first contact row appears, and when the
# search box last changed (performance.now(), ms since the navigation started)
PROBE = """
window.__firstRow = null; window.__lastInput = null;
new MutationObserver((_, observer) => {
  if (document.querySelector('%s')) { window.__firstRow = performance.now(); observer.disconnect(); }
}).observe(document, {childList: true, subtree: true});
document.addEventListener('input', () => { window.__lastInput = performance.now(); }, true);
""" % ROWS


def seed(platform, count, owner_id):
    """`count` contacts written as the contacts service stores them, then the search index
    rebuilt from the owners (the search service restarted without its index)."""
    stack = platform.stack
    started = time.perf_counter()
    stack.stop_service("search")
    db = stack.db("contacts")
    now = datetime.now(timezone.utc)
    batch = []
    for i in range(count):
        # each written at its own time, as contacts are (1 ms apart): a rebuild reads
        # windows of updated_at, and 100,000 changes in one instant fit no window
        doc = contact_doc(FIRST_NAMES[i % len(FIRST_NAMES)], f"+39347{i:07d}", owner_id,
                          "bench-console", now - timedelta(milliseconds=count - i))
        doc["last_name"] = f"{LAST_NAMES[i % len(LAST_NAMES)]}{i // len(LAST_NAMES) % 500 or ''}"
        doc["emails"] = [{"email": f"p{i}@bench.example", "type": "work"}]
        doc.update(search_fields(doc))
        batch.append(doc)
        if len(batch) == 5000:
            db.contacts.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.contacts.insert_many(batch, ordered=False)
    inserted = time.perf_counter() - started
    shutil.rmtree(stack.search_index_dir(0), ignore_errors=True)
    stack.start_service("search")
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        try:
            health = stack.rpc.call("search", "health", timeout=5)
            if health.get("state") == "ready":
                break
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(2)
    print(f"  {count} contacts written in {inserted:.1f} s; index rebuilt in "
          f"{time.perf_counter() - started - inserted:.1f} s ({health.get('rebuild')})", flush=True)


def browser_cpu():
    """CPU seconds of this process's descendants that are chromium (exited children of a
    live one included), and of the Playwright driver."""
    tick, read = os.sysconf("SC_CLK_TCK"), proc_stats()
    stats = {pid: (command, sum(int(v) for v in fields[11:15]))
             for pid, (command, fields) in read.items()}
    parents = {pid: int(fields[1]) for pid, (_, fields) in read.items()}
    mine, used = {os.getpid()}, {}
    for pid in sorted(parents):  # descendants: walk up until this process or the root
        chain, at = [], pid
        while at in parents and at not in mine and at > 1:
            chain.append(at)
            at = parents[at]
        if at in mine:
            mine.update(chain)
    for pid in mine - {os.getpid()}:
        comm, ticks = stats[pid]
        part = "chromium" if "chrom" in comm else "playwright-driver" if comm == "node" else None
        if part:
            used[part] = used.get(part, 0.0) + ticks / tick
    return used


def summary(values):
    values = sorted(values)
    return (f"median {statistics.median(values):.0f} ms, min {values[0]:.0f}, "
            f"max {values[-1]:.0f} (n={len(values)})")


def api_time(session, url, params, runs):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = session.get(url, params=params, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return times


def new_page(browser, stack, login):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US",
                                  bypass_csp=True)  # the probes below are evaluated scripts
    context.add_init_script(
        "localStorage.setItem('crm.token', %r); localStorage.setItem('crm.user', %r);"
        % (login["access_token"], __import__("json").dumps(login["user"])))
    context.add_init_script(PROBE)
    page = context.new_page()
    page.set_default_timeout(60000)
    return context, page


def first_page(page, url):
    page.goto(url)
    page.wait_for_function("window.__firstRow !== null", polling="raf")
    return page.evaluate("""() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const paint = performance.getEntriesByType('paint').find((p) => p.name === 'first-contentful-paint');
      const resources = performance.getEntriesByType('resource');
      const list = resources.filter((r) => r.name.includes('/api/v1/contacts?')).pop();
      const js = resources.filter((r) => r.name.endsWith('.js'));
      return {row: window.__firstRow, fcp: paint ? paint.startTime : null,
              dom: nav.domContentLoadedEventEnd, api: list ? list.duration : null,
              jsBytes: js.reduce((n, r) => n + r.transferSize, 0), jsFiles: js.length};
    }""")


def search_once(page, term, first):
    """ms from the last keystroke to the table showing the answer to `term` (its first row
    is `first`, the e-mail of the API's first match; the unfiltered page does not start so)."""
    box = page.get_by_test_id("contact-search")
    box.fill("")
    page.wait_for_function(f"!new URLSearchParams(location.search).get('q') && "
                           f"document.querySelectorAll('{ROWS}').length >= 50", polling="raf")
    box.press_sequentially(term, delay=90)  # a quick typist
    shown = page.wait_for_function(
        """([term, first]) => {
          const row = document.querySelector('%s');
          return new URLSearchParams(location.search).get('q') === term && row
            && row.innerText.includes(first) && performance.now();
        }""" % ROWS, arg=[term, first], polling="raf").json_value()
    return shown - page.evaluate("window.__lastInput")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="per figure")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(DIST, "index.html")):
        sys.exit("web/dist is missing: cd web && npm ci && npm run build")
    from playwright.sync_api import sync_playwright

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    platform = Platform()
    try:
        stack = platform.stack
        login = requests.post(platform.base_url + "/api/v1/auth/login", timeout=10, json={
            "email": stack.admin_email, "password": stack.admin_password}).json()
        print(f"console benchmark: {args.contacts} contacts, {args.runs} runs per figure; "
              f"{load_average()}", flush=True)
        seed(platform, args.contacts, login["user"]["id"])
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {login['access_token']}"
        base = platform.base_url + "/api/v1"
        api_time(session, base + "/contacts", {"limit": 50}, 3)  # warm the path
        url = stack.stream_url + "/contacts"
        terms = {}  # a name as typed, a phone fragment -> the e-mail of the first match
        for term in (f"{LAST_NAMES[7]}{min(123, args.contacts // 24)}", "3470001"):
            found = session.get(base + "/contacts", params={"q": term, "limit": 50}, timeout=30).json()["items"]
            terms[term] = found[0]["emails"][0]["email"]
            print(f"  q={term}: {len(found)} on the first page, the first {terms[term]}", flush=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
            cpu_before, browser_before = cpu_seconds(platform), browser_cpu()
            cold, warm = [], []
            for _ in range(args.runs):
                context, page = new_page(browser, stack, login)
                cold.append(first_page(page, url))
                page.reload()
                warm.append(first_page(page, url))
                context.close()
            cpu_after, browser_after = cpu_seconds(platform), browser_cpu()
            context, page = new_page(browser, stack, login)
            first_page(page, url)
            typed = {term: [] for term in terms}
            search_before, search_browser_before = cpu_seconds(platform), browser_cpu()
            for _ in range(args.runs):
                for term in terms:
                    typed[term].append(search_once(page, term, terms[term]))
            search_after, search_browser_after = cpu_seconds(platform), browser_cpu()
            page.screenshot(path="/tmp/bench_console_search.png")
            context.close()
            browser.close()

        print("\nfirst contact list page (navigation start to the first row shown):")
        for label, runs in (("cold (fresh profile)", cold), ("warm (reload, cached files)", warm)):
            print(f"  {label:<30} {summary([r['row'] for r in runs])}; first paint "
                  f"{summary([r['fcp'] for r in runs if r['fcp']])}; its GET /contacts in the browser "
                  f"{summary([r['api'] for r in runs if r['api']])}")
        print(f"  JavaScript fetched cold: {cold[0]['jsBytes'] / 1024:.0f} KB in {cold[0]['jsFiles']} files "
              f"(transfer size, gzip)")
        print(f"  reference, GET /api/v1/contacts?limit=50 from Python: "
              f"{summary(api_time(session, base + '/contacts', {'limit': 50}, args.runs * 4))}")
        before = dict(cpu_before, **browser_before)
        print(f"  {cpu_note(before, dict(cpu_after, **browser_after), len(cold) + len(warm))} (per page load)")

        print("\nsearch as you type (last keystroke to a table of matches only):")
        for term in terms:
            print(f"  q={term:<12} {summary(typed[term])}; reference GET /api/v1/contacts?q= from Python "
                  f"{summary(api_time(session, base + '/contacts', {'q': term, 'limit': 50}, args.runs * 2))}")
        print(f"  {cpu_note(dict(search_before, **search_browser_before), dict(search_after, **search_browser_after), args.runs * len(terms))} (per search typed)")
        print(f"\n{load_average()}")
    finally:
        platform.close()


if __name__ == "__main__":
    main()
