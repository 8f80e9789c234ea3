"""What every benchmark shares: a platform to measure (an isolated stack, or --url of a
running one), a multi-process HTTP load generator, and latency summaries."""
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def summarize(latencies, seconds):
    latencies = sorted(latencies)
    n = len(latencies)
    if not n:
        return {"n": 0, "rps": 0, "p50_ms": None, "p99_ms": None}
    return {"n": n, "rps": round(n / seconds, 1),
            "p50_ms": round(latencies[n // 2] * 1000, 2),
            "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 2)}


def row(label, result, note=""):
    print(f"  {label:<44} {result['rps']:>9} /s   p50 {result['p50_ms']!s:>7} ms   "
          f"p99 {result['p99_ms']!s:>7} ms   n={result['n']} {note}", flush=True)


def _http_worker(args):
    base_url, threads, seconds, make_request, headers, seed = args
    parsed = urlparse(base_url)
    latencies, statuses = [], {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop(index):
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        mine, counter = [], 0
        while time.monotonic() < stop_at:
            method, path, body = make_request(seed, index, counter)
            counter += 1
            payload = json.dumps(body) if body is not None else None
            hdrs = dict(headers, **({"Content-Type": "application/json"} if payload else {}))
            start = time.perf_counter()
            try:
                conn.request(method, path, body=payload, headers=hdrs)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                status = "error"
            mine.append(time.perf_counter() - start)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies, statuses


def http_load(base_url, make_request, concurrency, seconds, headers=None):
    """`concurrency` keep-alive clients spread over up to 4 processes for `seconds`.
    make_request(seed, thread_index, counter) -> (method, path, json body or None);
    it must be a module-level function (it is sent to the worker processes)."""
    processes = min(4, concurrency)
    per_process = [concurrency // processes + (1 if i < concurrency % processes else 0)
                   for i in range(processes)]
    jobs = [(base_url, n, seconds, make_request, headers or {}, f"{os.getpid()}-{i}-{time.time_ns()}")
            for i, n in enumerate(per_process)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(_http_worker, jobs)
    latencies, statuses = [], {}
    for lat, st in results:
        latencies += lat
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    return summarize(latencies, seconds), statuses


def thread_load(func, concurrency, seconds):
    """Run func(thread_index, counter) in `concurrency` threads for `seconds`."""
    latencies, lock = [], threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop(index):
        mine, counter = [], 0
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            func(index, counter)
            mine.append(time.perf_counter() - start)
            counter += 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return summarize(latencies, seconds)


class Platform:
    """An isolated stack (like the tests') unless a running gateway is given."""

    def __init__(self, url=None, amqp_uri=None, mongo_url=None, db_prefix="crm_"):
        self.stack = None
        if url:
            self.base_url, self.amqp_uri, self.mongo_url, self.db_prefix = url, amqp_uri, mongo_url, db_prefix
        else:
            from tests.stack import Stack
            self.stack = Stack()
            self.stack.start()
            self.base_url, self.amqp_uri = self.stack.base_url, self.stack.amqp_uri
            self.mongo_url, self.db_prefix = self.stack.mongo_url, self.stack.db_prefix

    def auth_headers(self):
        """Sign in as the stack's admin when the gateway asks for it (no-op before auth)."""
        import requests
        email, password = os.environ.get("CRM_ADMIN_EMAIL"), os.environ.get("CRM_ADMIN_PASSWORD")
        if self.stack is not None:
            env = self.stack.env()
            email, password = env.get("CRM_ADMIN_EMAIL", email), env.get("CRM_ADMIN_PASSWORD", password)
        if not email:
            return {}
        answer = requests.post(self.base_url + "/api/v1/auth/login",
                               json={"email": email, "password": password}, timeout=10)
        if answer.status_code != 200:
            return {}
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def close(self):
        if self.stack:
            self.stack.close()
