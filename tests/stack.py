"""The real platform for tests: an isolated RabbitMQ vhost, a SecantusDB daemon on a free
port with its own storage, each service started with the same command its image runs, and
the gateway under gunicorn. Set TEST_MONGO_URL to run against a real mongod instead."""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from contextlib import contextmanager
from urllib.parse import quote

import pymongo
import requests
from kombu import Connection, Consumer, Exchange, Queue

from crm_common.messaging.rpc import RpcPool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SERVICES = ("contacts", "deals", "tasks", "notifications", "telephony", "search",
            "notes", "conversations", "automation", "sales")
BASE_AMQP = os.environ.get("TEST_AMQP_URI", "amqp://guest:guest@localhost:5672/")


def _die_with_parent():
    """A test's processes end when the test run ends, even when it is killed (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def start_secantus(log_path, wait=True):
    """A SecantusDB daemon on a free port with storage of its own -> (process, storage
    directory, mongo URL); stop it with stop_secantus. wait=False: returned while it boots
    (wait_port on the URL's port before use)."""
    port = free_port()
    storage = tempfile.mkdtemp(prefix="crm-secantus-")
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        # secantusd-py with its TTL sweeper off (see that file: a sweep pins a snapshot)
        [sys.executable, os.path.join(ROOT, "tests", "secantusd_no_ttl_sweep.py"),
         "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", storage, "--log-level", "WARNING"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    if wait:
        wait_port(port)
    # retryWrites=false: SecantusDB keeps one record per retryable write (mongod one per
    # session) and walks them all on every write; see docs/developing.md
    return proc, storage, f"mongodb://127.0.0.1:{port}/?retryWrites=false"


def stop_secantus(proc, storage, timeout=20):
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(storage, ignore_errors=True)


def service_command(service):
    """Exactly what the service's image runs (the Dockerfile; checked by tests/test_deploy.py)."""
    return [os.path.join(BIN, "nameko"), "run", "--config", "deploy/nameko.yaml",
            f"services.{service}.service:{service.capitalize()}Service"]


def gateway_command():
    return [os.path.join(BIN, "gunicorn"), "-c", "gateway/gunicorn.conf.py", "gateway.wsgi:app"]


def stream_command():
    """The stream process (gateway/stream/), as its image runs it."""
    return [sys.executable, "-m", "gateway.stream"]


def _ctl(*command, timeout=15, tries=2):
    """rabbitmqctl, bounded: a CLI node that cannot start (its Erlang name taken by another
    CLI running at the same moment) is retried; a hung one is killed."""
    for attempt in range(tries):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # kill the CLI's whole group (su, sh, its Erlang node), or hung CLI nodes pile up
            # and take every port of the CLI's distribution range
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            continue
        if "Distribution failed" not in err:
            return out
        time.sleep(0.5 + attempt)
    return None


class Vhost:
    """A RabbitMQ vhost of its own per test run, so runs never see each other's queues."""

    def __init__(self):
        self.name = f"crm-test-{uuid.uuid4().hex[:8]}"
        self.created = False
        rabbitmqctl = shutil.which("rabbitmqctl")
        if rabbitmqctl and not os.environ.get("TEST_AMQP_URI"):
            # rabbitmqctl sometimes never returns when several runs add vhosts at once, though
            # the vhost was made: bound each call and check the result instead of the exit.
            # each CLI call boots an Erlang node (1-4 s): the list is asked only when a call
            # did not answer
            added = _ctl(rabbitmqctl, "add_vhost", self.name) is not None
            allowed = _ctl(rabbitmqctl, "set_permissions", "-p", self.name,
                           "guest", ".*", ".*", ".*") is not None
            self.created = (added and allowed) or self.name in (
                _ctl(rabbitmqctl, "list_vhosts", "--quiet") or "").split()
        if self.created:
            self.uri = BASE_AMQP.rstrip("/") + "/" + quote(self.name, safe="")
        else:
            # no CLI, or it does not answer (it needs epmd to know the broker node): run in
            # the default vhost; fine alone (CI), but concurrent runs may then see each other
            warnings.warn(f"no RabbitMQ vhost of its own for this run: using {BASE_AMQP}")
            self.uri = BASE_AMQP

    def delete(self, wait=True):
        """wait=False: the CLI is started and left to finish on its own (nothing waits for
        a vhost's removal; a run's vhost names never repeat)."""
        if not self.created:
            return
        if wait:
            _ctl("rabbitmqctl", "delete_vhost", self.name, timeout=60)
        else:
            # retried like _ctl's calls: a CLI node may fail to start beside another CLI
            subprocess.Popen(["sh", "-c", 'for i in 1 2 3; do rabbitmqctl delete_vhost "$0" '
                              '&& exit 0; sleep 2; done', self.name], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)


class Stack:
    def __init__(self, amqp_uri=None):
        """amqp_uri: a broker of the caller's (e.g. tests.faults.PrivateBroker); else a vhost
        of its own on the machine's broker."""
        self.log_dir = os.path.join(ROOT, ".logs", "tests")
        os.makedirs(self.log_dir, exist_ok=True)
        self.mongo_proc = None
        self.storage = None
        self.search_root = None
        # the database boots while the vhost is made (each takes seconds)
        self.mongo_url = os.environ.get("TEST_MONGO_URL") or self._start_mongo()
        self.vhost = None if amqp_uri else Vhost()
        self.amqp_uri = amqp_uri or self.vhost.uri
        self.db_prefix = f"t{uuid.uuid4().hex[:8]}_"
        if self.mongo_proc:
            wait_port(int(self.mongo_url.split(":")[2].split("/")[0]))
        self.processes = {}
        self.gateway_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.gateway_port}"
        # the stream process; it forwards everything else to the gateway (one origin)
        self.stream_port = free_port()
        self.stream_url = f"http://127.0.0.1:{self.stream_port}"
        self.rpc = RpcPool(self.amqp_uri, size=8, timeout=10, name="tests")
        # the first admin and token secret the gateway starts with (tests sign in as it)
        self.admin_email = "admin@crm.test"
        self.admin_password = uuid.uuid4().hex
        self.jwt_secret = uuid.uuid4().hex + uuid.uuid4().hex
        self.mongo = pymongo.MongoClient(self.mongo_url, tz_aware=True)

    def _start_mongo(self):
        self.mongo_proc, self.storage, url = start_secantus(os.path.join(self.log_dir, "mongo.log"),
                                                            wait=False)
        return url

    def env(self, **extra):
        env = dict(os.environ)
        env.update({"AMQP_URI": self.amqp_uri, "MONGO_URL": self.mongo_url,
                    "CRM_DB_PREFIX": self.db_prefix, "CRM_RPC_TIMEOUT": "3",
                    "CRM_EVENT_MAX_ATTEMPTS": "3", "PYTHONPATH": ROOT,
                    "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
                    # the gateway's first admin and token secret (tests sign in as it)
                    "CRM_ADMIN_EMAIL": self.admin_email, "CRM_ADMIN_PASSWORD": self.admin_password,
                    "CRM_JWT_SECRET": self.jwt_secret, "CRM_JWT_TTL_S": str(8 * 3600),
                    # one admin runs the whole suite; limits are tested per user / API key
                    "CRM_RATE_LIMIT_PER_MINUTE": "1000000", "CRM_LOGIN_PER_IP_PER_MINUTE": "100000",
                    "CRM_LOGIN_GLOBAL_PER_MINUTE": "1000000",
                    "CRM_CORS_ORIGINS": "http://localhost:3000",
                    # a cheap argon2id: the suite's hundreds of sign-ins and user creations
                    # cost ~0.2 s of CPU each at the production cost (docs/auth.md)
                    "CRM_PASSWORD_HASH_TIME_COST": "1", "CRM_PASSWORD_HASH_MEMORY_KIB": "1024",
                    "CRM_PASSWORD_HASH_PARALLELISM": "1"})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def log_path(self, key):
        """This run's log of a process: key is e.g. "contacts-0" or "gateway"."""
        return os.path.join(self.log_dir, f"{self.db_prefix}{key}.log")

    def _spawn(self, key, command, env):
        log = open(self.log_path(key), "ab")
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
        self.processes[key] = proc
        return proc

    def heartbeat_file(self, service, replica=0):
        return os.path.join(self.log_dir, f"{self.db_prefix}{service}-{replica}.heartbeat")

    def search_index_dir(self, replica=0):
        """A search replica's own index folder (removed with the stack)."""
        if self.search_root is None:
            self.search_root = tempfile.mkdtemp(prefix="crm-search-")
        return os.path.join(self.search_root, f"replica-{replica}")

    def start_service(self, service, replica=0, **env):
        env.setdefault("CRM_HEARTBEAT_FILE", self.heartbeat_file(service, replica))
        if service == "search":
            env.setdefault("CRM_SEARCH_INDEX_DIR", self.search_index_dir(replica))
        return self._spawn(f"{service}-{replica}", service_command(service), self.env(**env))

    def stop_service(self, service, replica=0, sig=signal.SIGTERM, timeout=20):
        proc = self.processes.pop(f"{service}-{replica}", None)
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait_service(self, service, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                return self.rpc.call(service, "health", timeout=2)
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def start_gateway(self, **env):
        self._spawn("gateway", gateway_command(),
                    self.env(GATEWAY_BIND=f"127.0.0.1:{self.gateway_port}", GATEWAY_WORKERS=2,
                             GATEWAY_THREADS=8, **env))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.base_url + "/readyz", timeout=3).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("gateway never became ready: " + self.base_url)

    def start_stream(self, **env):
        self._spawn("stream", stream_command(),
                    self.env(STREAM_BIND=f"127.0.0.1:{self.stream_port}",
                             CRM_STREAM_UPSTREAM=self.base_url, **env))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.stream_url + "/api/v1/stream/readyz",
                                timeout=3).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("stream never became ready: " + self.stream_url)

    def start(self):
        for service in SERVICES:
            self.start_service(service)
        self.start_stream()
        for service in SERVICES:
            self.wait_service(service)
        self.start_gateway()

    def db(self, service):
        return self.mongo[f"{self.db_prefix}{service}"]

    def add_user(self, user_id, active=True, **fields):
        """A user of the gateway with this id, stored directly (no password: it cannot sign
        in; no hashing, no event): cheap, for tests that name an owner or assignee that
        must exist (gateway/user_refs.py). Services learn of it only if the test announces
        it. Returns the id."""
        from datetime import datetime, timezone
        now = datetime.now(timezone.utc)
        self.db("gateway")["users"].update_one({"_id": user_id}, {"$set": {
            "created_at": now, "updated_at": now, "last_login_at": None,
            "email": f"{user_id}@users.test".lower(), "name": user_id, "role": "agent",
            "team": None, "manager_id": None, "token_version": 0, **fields,
            "active": active}}, upsert=True)
        return user_id

    def sign_in(self, email=None, password=None):
        """An Api signed in (Bearer token) as this user; the first admin by default."""
        client = Api(self.base_url)
        client.login(email or self.admin_email, password or self.admin_password)
        return client

    def close(self, grace_s=1):
        """Every process asked to stop (SIGTERM), those still running after `grace_s`
        killed with their process group; the vhost removed in the background. Nothing of a
        closed stack is read again, so its shutdown need not be graceful (a nameko service
        or gunicorn may take 10-20 s to drain)."""
        self.rpc.close()
        for proc in list(self.processes.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + grace_s
        for proc in list(self.processes.values()):
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: pgid == pid
                except OSError:
                    proc.kill()
                proc.wait()
        self.mongo.close()
        if self.mongo_proc:
            stop_secantus(self.mongo_proc, self.storage, timeout=grace_s)
        if self.search_root:
            shutil.rmtree(self.search_root, ignore_errors=True)
        if self.vhost:
            self.vhost.delete(wait=False)


class Api:
    """requests against the gateway, with JSON helpers: api.post("/contacts", json=...)."""

    def __init__(self, base_url, prefix="/api/v1"):
        self.base_url = base_url
        self.prefix = prefix
        self.session = requests.Session()
        self.headers = {}
        self.user = None

    def login(self, email, password):
        response = self.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        self.headers["Authorization"] = "Bearer " + response.json()["access_token"]
        self.user = response.json()["user"]
        return self

    def url(self, path):
        return self.base_url + (path if path.startswith("/healthz") or path.startswith("/readyz")
                                or path.startswith("/metrics") or path.startswith("/api/")
                                else self.prefix + path)

    def request(self, method, path, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.url(path), headers=headers, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@contextmanager
def event_recorders(amqp_uri):
    """make(service, routing_key="#") -> an EventRecorder bound now; all closed on exit
    (the suite's and the service tests' record_events fixtures)."""
    recorders = []

    def make(service, routing_key="#"):
        recorder = EventRecorder(amqp_uri, service, routing_key)
        recorders.append(recorder)
        return recorder

    try:
        yield make
    finally:
        for recorder in recorders:
            recorder.close()


class EventRecorder:
    """Binds its own queue to a service's events exchange and collects what is published."""

    def __init__(self, amqp_uri, service, routing_key="#"):
        self.connection = Connection(amqp_uri)
        exchange = Exchange(f"{service}.events", type="topic", durable=True)
        self.queue = Queue(f"test-recorder-{uuid.uuid4().hex[:8]}", exchange,
                           routing_key=routing_key, exclusive=True, auto_delete=True)
        self.events = []
        self.consumer = Consumer(self.connection.channel(), [self.queue],
                                 callbacks=[self._on_message], accept=["json"])
        self.consumer.consume()

    def _on_message(self, body, message):
        self.events.append(body if isinstance(body, dict) else json.loads(body))
        message.ack()

    def wait_for(self, predicate, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [e for e in self.events if predicate(e)]
            if found:
                return found
            try:
                self.connection.drain_events(timeout=0.2)
            except socket.timeout:
                pass
        return []

    def drain(self, seconds=0.5):
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                self.connection.drain_events(timeout=0.1)
            except socket.timeout:
                pass
        return self.events

    def close(self):
        self.connection.release()
