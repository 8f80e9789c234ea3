"""What every benchmark shares: a platform to measure (an isolated stack, or --url of a
running one), a multi-process HTTP load generator, and latency summaries."""
import http.client
import json
import multiprocessing
import os
import socket
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


class KeepAliveClient:
    """HTTP/1.1 over one keep-alive socket, lean on purpose: the load generator shares the
    2 cores with the stack it measures, and http.client (header parsing through the email
    package, response objects) cost 0.4-0.5 ms of CPU per request, more than the database
    spends on a read. The figures printed as "load-client" show what is left."""

    def __init__(self, host, port, timeout=30):
        self.address, self.timeout = (host, port), timeout
        self.host_header = f"Host: {host}:{port}\r\n"
        self.sock, self.buffer = None, b""

    def request(self, method, path, body=None, headers=None):
        """Send one request and read the whole answer; returns (status, body bytes)."""
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        lines = [f"{method} {path} HTTP/1.1\r\n", self.host_header]
        lines += [f"{name}: {value}\r\n" for name, value in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        self.sock.sendall("".join(lines).encode("latin-1") + (body or b""))
        head = self._read_until(b"\r\n\r\n")
        status = int(head[9:12])
        fields = head.lower() + b"\r\n"  # every header line ends with CRLF
        at = fields.find(b"\r\ncontent-length:")
        if at >= 0:
            length = int(fields[at + 17:fields.index(b"\r\n", at + 2)])
            content = self._read_exactly(length)
        elif b"\r\ntransfer-encoding: chunked" in fields:
            content = self._read_chunks()
        else:
            raise http.client.HTTPException("answer without a length")
        if b"\r\nconnection: close" in fields:
            self.close()
        return status, content

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise http.client.HTTPException("connection closed by the server")
        self.buffer += data

    def _read_until(self, marker):
        while (at := self.buffer.find(marker)) < 0:
            self._recv()
        line, self.buffer = self.buffer[:at], self.buffer[at + len(marker):]
        return line

    def _read_exactly(self, length):
        while len(self.buffer) < length:
            self._recv()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        return data

    def _read_chunks(self):
        parts = []
        while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
            parts.append(self._read_exactly(size))
            self._read_exactly(2)
        self._read_until(b"\r\n")  # no trailers are sent
        return b"".join(parts)

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def _http_worker(args):
    base_url, threads, seconds, make_request, headers, seed = args
    parsed = urlparse(base_url)
    latencies, statuses = [], {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop(index):
        client = KeepAliveClient(parsed.hostname, parsed.port)
        mine, counter = [], 0
        while time.monotonic() < stop_at:
            method, path, body = make_request(seed, index, counter)
            counter += 1
            payload = json.dumps(body).encode() if body is not None else None
            hdrs = dict(headers, **({"Content-Type": "application/json"} if payload else {}))
            start = time.perf_counter()
            try:
                status, _ = client.request(method, path, payload, hdrs)
            except (OSError, ValueError, http.client.HTTPException):
                client.close()
                status = "error"
            mine.append(time.perf_counter() - start)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        client.close()
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
    latencies, statuses = http_latencies(base_url, make_request, concurrency, seconds, headers)
    return summarize(latencies, seconds), statuses


def _http_worker_to(writer, job):
    writer.send(_http_worker(job))
    writer.close()


def http_latencies(base_url, make_request, concurrency, seconds, headers=None):
    """http_load's (every latency in seconds, {status: count}), for other percentiles."""
    processes = min(4, concurrency)
    per_process = [concurrency // processes + (1 if i < concurrency % processes else 0)
                   for i in range(processes)]
    jobs = [(base_url, n, seconds, make_request, headers or {}, f"{os.getpid()}-{i}-{time.time_ns()}")
            for i, n in enumerate(per_process)]
    # one process and one pipe per job, no Pool: a Pool's workers share its queue's lock,
    # and one forked while another thread held it hung the bench at the pool's terminate
    context = multiprocessing.get_context("fork")
    running = []
    for job in jobs:
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_http_worker_to, args=(writer, job), daemon=True)
        process.start()
        writer.close()
        running.append((process, reader))
    results = []
    for process, reader in running:
        results.append(reader.recv() if reader.poll(seconds + 120) else ([], {"lost": 1}))
        process.join(10)
        if process.is_alive():
            process.kill()
    latencies, statuses = [], {}
    for lat, st in results:
        latencies += lat
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    return latencies, statuses


def wait_for_import(get, job_id, poll_s):
    """The import job once done or failed; get(path) -> response. On a busy machine a 504
    or a 429 is asked again."""
    while True:
        answer = get(f"/imports/{job_id}")
        if answer.status_code != 200:
            print(f"  GET /imports/{job_id}: {answer.status_code} {answer.text[:120]}")
            time.sleep(1)
            continue
        job = answer.json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(poll_s)


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


# where each part of the stack spends CPU and which server operations are slow: every
# bench prints these beside its figures
def hold_quiet(path):
    """On a shared machine: wait until no other job holds `path` (they take it shared, after
    passing `path`.gate), keep both taken until this process ends, so the figures that follow
    are measured with those jobs paused. Returns the seconds waited."""
    import fcntl
    started = time.monotonic()
    for name in (path + ".gate", path):
        handle = open(name, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD.append(handle)
    return time.monotonic() - started


_HELD = []


def load_average():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def proc_stats():
    """{pid: (command name, the fields of /proc/<pid>/stat after it)} of every process that
    could be read (fields[1] is the parent, [3] the session, [11:15] the CPU ticks)."""
    stats = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                head, _, tail = f.read().rpartition(")")
        except OSError:
            continue
        stats[int(name)] = (head.partition("(")[2], tail.split())
    return stats


def cpu_seconds(platform):
    """CPU seconds used so far by each part of the isolated stack (Linux /proc): a service's
    processes share its session (gunicorn's workers too); the database is one process."""
    stack = platform.stack
    if stack is None:
        return {}
    parts = {proc.pid: key.rsplit("-", 1)[0] for key, proc in stack.processes.items()}
    database = stack.mongo_proc.pid if stack.mongo_proc else None
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid, (command, fields) in proc_stats().items():
        session = int(fields[3])
        part = "database" if pid == database else parts.get(session)
        if part is None and command == "beam.smp":
            part = "rabbitmq"  # the machine's broker (shared with whatever else runs)
        if part is None and os.getpid() in (pid, int(fields[1])):
            part = "load-client"  # this benchmark and its load processes
        if part:
            ticks = int(fields[11]) + int(fields[12])
            if pid == os.getpid():
                ticks += int(fields[13]) + int(fields[14])  # its load processes that ended
            used[part] = used.get(part, 0.0) + ticks / tick
    return used


def cpu_note(before, after, events):
    """CPU ms per event of each part, and of the whole stack."""
    spent = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    parts = " ".join(f"{k}={v * 1000 / events:.1f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1])
                     if v * 1000 / events >= 0.1)
    return f"cpu ms/event: total={sum(spent.values()) * 1000 / events:.1f} {parts}"


def profile_databases(client, prefix, slowms, reset=False):
    """The server's profiler on every database of the platform: operations slower than
    slowms are kept in system.profile (mongod and SecantusDB both do); reset: forget what
    was recorded so far (the next print covers one phase)."""
    for name in client.list_database_names():
        if name.startswith(prefix):
            if reset:
                client[name].command("profile", 0)
                client[name]["system.profile"].drop()
            client[name].command("profile", 1, slowms=slowms)


def profile_shapes(client, prefix, stop=False):
    """{(namespace, verb, filter keys): (count, total ms)} of what the server's profiler
    recorded in the databases named with `prefix`; `stop` turns the profiler off after."""
    shapes = {}
    for name in client.list_database_names():
        if not name.startswith(prefix):
            continue
        for entry in client[name]["system.profile"].find():
            command = entry.get("command") or {}
            verb = next(iter(command), entry.get("op"))
            spec = (command.get("filter") or command.get("query")
                    or ((command.get("updates") or command.get("deletes") or [{}])[0].get("q"))
                    or {})
            key = (entry.get("ns"), verb, ",".join(sorted(spec)) if isinstance(spec, dict) else "")
            count, total = shapes.get(key, (0, 0))
            shapes[key] = (count + 1, total + entry.get("millis", 0))
        if stop:
            client[name].command("profile", 0)
    return shapes


def print_slow_operations(client, prefix, top=12):
    shapes = profile_shapes(client, prefix)
    print("\nslowest operation shapes (server profiler), total ms:")
    for (ns, verb, spec), (count, total) in sorted(shapes.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {total:>8} ms  n={count:<6} {ns} {verb} {{{spec}}}")


class Platform:
    """An isolated stack (like the tests') unless a running gateway is given."""

    def __init__(self, url=None, amqp_uri=None, mongo_url=None, db_prefix="crm_",
                 stream_url="http://127.0.0.1:8001"):
        self.stack = None
        if url:
            self.base_url, self.amqp_uri, self.mongo_url, self.db_prefix = url, amqp_uri, mongo_url, db_prefix
            self.stream_url = stream_url
        else:
            from tests.stack import Stack
            self.stack = Stack()
            self.stack.start()
            self.base_url, self.amqp_uri = self.stack.base_url, self.stack.amqp_uri
            self.mongo_url, self.db_prefix = self.stack.mongo_url, self.stack.db_prefix
            self.stream_url = self.stack.stream_url

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
