"""Service-level tests: one service in the test process, in a nameko container
(`container_factory`), against the real RabbitMQ (a vhost of this session's own) and a real
SecantusDB daemon; other services' RPC proxies replaced (`replace_dependencies`).

nameko's containers run on eventlet: the process must be monkey-patched before anything
else is imported, as `nameko test` does (nameko's pytest plugin no longer patches). The
end-to-end suite runs unpatched (gunicorn, threads, subprocesses), and a patch applied in
the middle of a session leaves its locks, threads and cached choices wrong. So in an
unpatched session (`./crm test`, `pytest tests/...`) this folder's selected tests become one
item that runs them with `nameko test` in a process of their own, its report shown when it
fails (and with -rA). `PYTHONPATH=. .venv/bin/nameko test tests/services` runs them directly.
"""
import os
import subprocess
import uuid

import pymongo
import pytest
import yaml
from eventlet import patcher

from tests.stack import BIN, ROOT, Vhost, event_recorders, start_secantus, stop_secantus

HERE = os.path.dirname(os.path.abspath(__file__))


def patched():
    return patcher.is_monkey_patched("socket") and patcher.is_monkey_patched("thread")


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected
def pytest_collection_modifyitems(session, config, items):
    mine = [item for item in items if str(item.path).startswith(HERE + os.sep)]
    if not mine or patched():
        return
    folder = mine[0].parent
    while str(folder.path) != HERE:
        folder = folder.parent
    runner = InOwnProcess.from_parent(folder, name="nameko test",
                                      nodeids=[item.nodeid for item in mine])
    items[:] = [item for item in items if item not in mine] + [runner]


class InOwnProcess(pytest.Item):
    """This folder's selected tests, run by `nameko test` (pytest in a process patched first)."""

    def __init__(self, *, nodeids, **kwargs):
        super().__init__(**kwargs)
        self.nodeids = nodeids

    def runtest(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
        done = subprocess.run([os.path.join(BIN, "nameko"), "test", "-p", "no:cacheprovider",
                               *self.nodeids], cwd=ROOT, env=env, capture_output=True, text=True)
        # pytest's report; what went to stderr (import warnings...) only if pytest itself failed
        report = done.stdout if done.returncode in (0, 1) else done.stdout + done.stderr
        if done.returncode != 0:
            raise ChildFailed(report)
        self.add_report_section("call", "nameko test", report)  # shown with -rA / -rP

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ChildFailed):
            return f"nameko test {' '.join(self.nodeids)}\n\n{excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"nameko test: {len(self.nodeids)} service-level tests"


class ChildFailed(Exception):
    pass


def nameko_config(amqp_uri):
    """deploy/nameko.yaml (what every service runs with), its ${VAR:default} read the way
    `nameko run` reads them, with this session's broker."""
    # nameko's modules are imported where used, in the patched process only
    from nameko.cli.main import IMPLICIT_ENV_VAR_MATCHER, env_var_constructor

    class Loader(yaml.SafeLoader):  # nameko's resolver on a loader of our own only
        pass

    Loader.add_constructor("!env_var", env_var_constructor)
    Loader.add_implicit_resolver("!env_var", IMPLICIT_ENV_VAR_MATCHER, None)
    with open(os.path.join(ROOT, "deploy", "nameko.yaml")) as handle:
        config = yaml.load(handle, Loader=Loader)
    config.pop("LOGGING", None)  # pytest captures the logs
    config["AMQP_URI"] = amqp_uri
    return config


def forget_settings():
    """The process's settings (crm_common.config.get_settings) are read once: again at the
    next use, from the environment as it is now."""
    from crm_common import config
    config._settings = None


class Platform:
    """This session's broker vhost and database; services read them from the environment
    (crm_common.config), as under `nameko run`."""

    ENV = ("AMQP_URI", "MONGO_URL", "CRM_DB_PREFIX", "CRM_EVENT_MAX_ATTEMPTS")

    def __init__(self):
        self.vhost = Vhost()
        self.amqp_uri = self.vhost.uri
        self.db_prefix = f"s{uuid.uuid4().hex[:8]}_"
        self.mongo_proc = self.storage = None
        self.mongo_url = os.environ.get("TEST_MONGO_URL")
        if not self.mongo_url:
            log_dir = os.path.join(ROOT, ".logs", "tests")
            os.makedirs(log_dir, exist_ok=True)
            self.mongo_proc, self.storage, self.mongo_url = start_secantus(
                os.path.join(log_dir, "services-mongo.log"))
        self.saved_env = {name: os.environ.get(name) for name in self.ENV}
        os.environ.update({"AMQP_URI": self.amqp_uri, "MONGO_URL": self.mongo_url,
                           "CRM_DB_PREFIX": self.db_prefix, "CRM_EVENT_MAX_ATTEMPTS": "3"})
        forget_settings()
        self.mongo = pymongo.MongoClient(self.mongo_url, tz_aware=True)

    def db(self, service):
        return self.mongo[f"{self.db_prefix}{service}"]

    def close(self):
        self.mongo.close()
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        forget_settings()
        if self.mongo_proc:
            stop_secantus(self.mongo_proc, self.storage)
        self.vhost.delete(wait=False)


@pytest.fixture(scope="session")
def platform():
    platform = Platform()
    try:
        yield platform
    finally:
        platform.close()


@pytest.fixture
def rabbit_config(platform):
    """nameko's fixture of this name makes a vhost per test through the management API;
    here every test shares the session's vhost (made with rabbitmqctl, as tests/stack.py)."""
    return nameko_config(platform.amqp_uri)


@pytest.fixture
def start_service(container_factory, rabbit_config, monkeypatch):
    """start_service(ServiceClass, *replaced) -> (started container, {name: MagicMock});
    `replaced` names dependencies (e.g. another service's RPC proxy) to stand in for."""
    from kombu.mixins import ConsumerMixin
    from nameko.messaging import QueueConsumer
    from nameko.testing.services import replace_dependencies
    from prometheus_client import CollectorRegistry

    from crm_common import observability
    # each container registers its outbox gauge once per process: a registry per test
    monkeypatch.setattr(observability, "REGISTRY", CollectorRegistry())
    # a killed container waits for its consumer's drain_events to time out (kombu's
    # safety interval, 1 s); 0.1 s makes each test's teardown about a second shorter
    monkeypatch.setattr(QueueConsumer, "run",
                        lambda self: ConsumerMixin.run(self, safety_interval=0.1))

    def start(service_cls, *replaced):
        container = container_factory(service_cls, rabbit_config)
        mocks = {}
        if replaced:
            found = replace_dependencies(container, *replaced)
            found = found if len(replaced) > 1 else (found,)
            mocks = dict(zip(replaced, found))
        container.start()
        return container, mocks

    return start


@pytest.fixture
def record_events(platform):
    """The suite's record_events (tests/conftest.py) on this session's broker:
    record_events(service, routing_key="#") -> an EventRecorder bound before the test acts."""
    with event_recorders(platform.amqp_uri) as make:
        yield make


@pytest.fixture
def publish(platform):
    """publish(source, event_type, data) -> the envelope, published as the source service
    publishes it (same exchange and routing key)."""
    from crm_common.messaging.publish import publish_event

    def send(source, event_type, data, event_id=None):
        return publish_event(platform.amqp_uri, source, event_type, data, event_id)

    return send
