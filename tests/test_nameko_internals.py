"""Contract tests for the nameko (and kombu, py-amqp) internals that crm_common.messaging
overrides or relies on; crm_common/messaging/README.md lists each one, why, and what to
re-check on an upgrade. An upgrade that changes one of them fails here, loudly, before a
service misbehaves in production.

Unit level: no broker, no database. Services are built as real nameko containers (binding
extensions connects to nothing) and driven through nameko's own message-handling code with
fake messages; where a request or a reply would cross the broker, the test hands it over.
"""
import importlib.metadata
import inspect
import json
import os
import re
from types import SimpleNamespace
from unittest import mock

import amqp
import pytest
import yaml
from kombu import serialization
from nameko import constants, exceptions
from nameko.amqp.publish import Publisher
from nameko.containers import ServiceContainer
from nameko.events import SERVICE_POOL, EventHandler, get_event_exchange
from nameko.extensions import DependencyProvider, Entrypoint, SharedExtension
from nameko.messaging import Consumer, HeaderDecoder, HeaderEncoder, QueueConsumer
from nameko.rpc import (RPC_QUEUE_TEMPLATE, RPC_REPLY_QUEUE_TEMPLATE, Responder, Rpc,
                        RpcConsumer, get_rpc_exchange)
from nameko.timer import Timer

from crm_common import errors
from crm_common.health import HealthEntrypoints
from crm_common.messaging import events as crm_events
from crm_common.messaging import publish as crm_publish
from crm_common.messaging import rpc as crm_rpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AMQP_URI = "amqp://guest:guest@localhost:5672/"

# the versions crm_common/messaging/README.md was checked against
CHECKED = {"nameko": "2.14.1", "kombu": "5.7.0", "amqp": "5.4.2", "eventlet": "0.41.3"}


def names(func):
    return list(inspect.signature(func).parameters)


# --- versions ------------------------------------------------------------------------------

def test_installed_and_pinned_versions_are_the_ones_the_readme_was_checked_against():
    pins = {}
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as handle:
        for line in handle:
            match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    for package, version in CHECKED.items():
        assert pins.get(package) == version, (
            f"requirements.txt pins {package} {pins.get(package)}: re-check every item of "
            "crm_common/messaging/README.md against it, then update CHECKED here")
        assert importlib.metadata.version(package) == version, package


# --- signatures of what we override or call ------------------------------------------------

NAMEKO_SIGNATURES = [
    (RpcConsumer.setup, ["self"]),
    (RpcConsumer.stop, ["self"]),
    (RpcConsumer.kill, ["self"]),
    (RpcConsumer.handle_message, ["self", "body", "message"]),
    (RpcConsumer.handle_result, ["self", "message", "result", "exc_info"]),
    (RpcConsumer.get_provider_for_method, ["self", "routing_key"]),
    (Rpc.handle_message, ["self", "body", "message"]),
    (Rpc.handle_result, ["self", "message", "worker_ctx", "result", "exc_info"]),
    (Entrypoint.check_signature, ["self", "args", "kwargs"]),
    (Entrypoint.__init__, ["self", "expected_exceptions", "sensitive_arguments", "kwargs"]),
    (Responder.send_response, ["self", "result", "exc_info"]),
    (EventHandler.__init__, ["self", "source_service", "event_type", "handler_type",
                             "reliable_delivery", "requeue_on_error", "kwargs"]),
    (EventHandler.setup, ["self"]),
    (Consumer.handle_message, ["self", "body", "message"]),
    (Consumer.handle_result, ["self", "message", "worker_ctx", "result", "exc_info"]),
    (Consumer.handle_message_processed, ["self", "message", "result", "exc_info"]),
    (QueueConsumer.ack_message, ["self", "message"]),
    (QueueConsumer.requeue_message, ["self", "message"]),
    (Timer.__init__, ["self", "interval", "eager", "kwargs"]),
    (Timer.stop, ["self"]),
    (ServiceContainer.spawn_managed_thread, ["self", "fn", "identifier"]),
    (ServiceContainer.spawn_worker, ["self", "entrypoint", "args", "kwargs", "context_data",
                                     "handle_result"]),
    (DependencyProvider.get_dependency, ["self", "worker_ctx"]),
    (DependencyProvider.worker_setup, ["self", "worker_ctx"]),
    (DependencyProvider.worker_result, ["self", "worker_ctx", "result", "exc_info"]),
    (DependencyProvider.worker_teardown, ["self", "worker_ctx"]),
    (Publisher.publish, ["self", "payload", "kwargs"]),
    (HeaderDecoder.unpack_message_headers, ["self", "message"]),
    (HeaderEncoder.get_message_headers, ["self", "worker_ctx"]),
    (exceptions.serialize, ["exc"]),
    (exceptions.deserialize_to_instance, ["exc_type"]),
    (get_event_exchange, ["service_name", "config"]),
    (get_rpc_exchange, ["config"]),
]


@pytest.mark.parametrize("func, expected", NAMEKO_SIGNATURES,
                         ids=[f.__qualname__ for f, _ in NAMEKO_SIGNATURES])
def test_nameko_signatures(func, expected):
    assert names(func) == expected


def test_defaults_we_depend_on():
    handler = inspect.signature(EventHandler.__init__).parameters
    assert handler["handler_type"].default == SERVICE_POOL
    assert handler["reliable_delivery"].default is True
    assert handler["requeue_on_error"].default is False
    assert inspect.signature(Timer.__init__).parameters["eager"].default is False
    publisher = inspect.signature(Publisher.__init__).parameters
    assert {"amqp_uri", "use_confirms", "serializer", "delivery_mode"} <= set(publisher)


def test_our_overrides_keep_nameko_signatures():
    consumer = type(crm_rpc.ResilientRpc.rpc_consumer)
    assert issubclass(consumer, RpcConsumer) and consumer is not RpcConsumer
    assert issubclass(crm_rpc.ResilientRpc, Rpc)
    assert issubclass(crm_events.ReliableEventHandler, EventHandler)
    pairs = [
        (consumer.setup, RpcConsumer.setup),
        (consumer.stop, RpcConsumer.stop),
        (consumer.kill, RpcConsumer.kill),
        (consumer.get_provider_for_method, RpcConsumer.get_provider_for_method),
        (consumer.handle_result, RpcConsumer.handle_result),
        (crm_rpc.ResilientRpc.check_signature, Rpc.check_signature),
        (crm_rpc.ResilientRpc.handle_result, Rpc.handle_result),
        (crm_events.ReliableEventHandler.setup, EventHandler.setup),
        (crm_events.ReliableEventHandler.handle_message, EventHandler.handle_message),
        (crm_events.ReliableEventHandler.handle_message_processed,
         EventHandler.handle_message_processed),
    ]
    for ours, theirs in pairs:
        assert names(ours) == names(theirs), ours.__qualname__
    assert names(crm_events.ReliableEventHandler.__init__)[:3] == ["self", "source_service",
                                                                  "event_type"]


# --- constants, names, headers -------------------------------------------------------------

def test_constants():
    assert (constants.PERSISTENT, constants.NON_PERSISTENT) == (2, 1)
    assert constants.HEADER_PREFIX == "nameko"
    assert constants.AMQP_URI_CONFIG_KEY == "AMQP_URI"
    assert constants.AMQP_SSL_CONFIG_KEY == "AMQP_SSL"
    assert constants.LOGIN_METHOD_CONFIG_KEY == "LOGIN_METHOD"
    assert constants.RPC_EXCHANGE_CONFIG_KEY == "rpc_exchange"
    assert constants.SERIALIZER_CONFIG_KEY == "serializer"
    assert constants.MAX_WORKERS_CONFIG_KEY == "max_workers"
    assert constants.PARENT_CALLS_CONFIG_KEY == "parent_calls_tracked"
    assert constants.DEFAULT_SERIALIZER == "json"


def test_deploy_config_uses_only_keys_nameko_knows_and_keeps_the_default_rpc_exchange():
    with open(os.path.join(ROOT, "deploy", "nameko.yaml"), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    known = {constants.AMQP_URI_CONFIG_KEY, constants.MAX_WORKERS_CONFIG_KEY,
             constants.PARENT_CALLS_CONFIG_KEY, constants.SERIALIZER_CONFIG_KEY, "LOGGING"}
    assert set(config) <= known
    # RpcClient names the exchange itself: a configured rpc_exchange would split the bus
    assert constants.RPC_EXCHANGE_CONFIG_KEY not in config
    assert config[constants.SERIALIZER_CONFIG_KEY] == "json"


def test_rpc_exchange_and_queue_names():
    exchange = get_rpc_exchange({})
    assert (exchange.name, exchange.type, exchange.durable) == ("nameko-rpc", "topic", True)
    assert inspect.signature(crm_rpc.RpcClient.__init__).parameters["exchange"].default == exchange.name
    assert RPC_QUEUE_TEMPLATE.format("contacts") == "rpc-contacts"
    assert RPC_REPLY_QUEUE_TEMPLATE.format("gateway", "u") == "rpc.reply-gateway-u"


def test_event_exchange():
    exchange = get_event_exchange("deals", {})
    assert (exchange.name, exchange.type, exchange.durable) == ("deals.events", "topic", True)
    assert exchange.delivery_mode == constants.PERSISTENT
    assert not exchange.auto_delete and not exchange.no_declare
    configured = get_event_exchange("deals", {"AUTO_DELETE_EVENT_EXCHANGES": True,
                                              "DECLARE_EVENT_EXCHANGES": False})
    assert configured.auto_delete and configured.no_declare


def test_publish_event_uses_the_event_exchange_nameko_handlers_bind_to():
    sent = {}

    class FakeProducer:
        def __init__(self, channel, exchange, serializer):
            sent.update(exchange=exchange, serializer=serializer)

        def publish(self, body, **kwargs):
            sent.update(body=body, **kwargs)

    with mock.patch.object(crm_publish, "Producer", FakeProducer):
        crm_publish.publish_event(AMQP_URI, "gateway", "user_upserted", {"user": {"id": "u1"}},
                                  context={"request_id": "r1", "user_id": None},
                                  connection=mock.MagicMock())
    nameko_exchange = get_event_exchange("gateway", {})
    assert (sent["exchange"].name, sent["exchange"].type, sent["exchange"].durable) == (
        nameko_exchange.name, nameko_exchange.type, nameko_exchange.durable)
    assert sent["routing_key"] == "user_upserted"
    assert sent["serializer"] == constants.DEFAULT_SERIALIZER
    assert sent["delivery_mode"] == constants.PERSISTENT
    assert sent["headers"] == {"nameko.request_id": "r1"}


def test_context_headers():
    worker_ctx = SimpleNamespace(context_data={"request_id": "r1", "user_role": "agent"})
    assert HeaderEncoder().get_message_headers(worker_ctx) == {
        "nameko.request_id": "r1", "nameko.user_role": "agent"}
    message = SimpleNamespace(headers={"nameko.request_id": "r1", "x-crm-attempts": 2})
    assert HeaderDecoder().unpack_message_headers(message) == {
        "request_id": "r1", "x-crm-attempts": 2}


def test_error_serialization_and_typed_errors():
    error = exceptions.serialize(errors.NotFound("no such contact", {"id": "c1"}))
    assert set(error) == {"exc_type", "exc_path", "exc_args", "value"}
    assert error["exc_path"] == "crm_common.errors.NotFound"
    assert error["exc_args"] == ["no such contact", {"id": "c1"}]
    for path, cls in errors.BY_PATH.items():
        assert exceptions.get_module_path(cls) == path
        assert exceptions.registry[path] is cls  # deserialize_to_instance
    assert isinstance(exceptions.deserialize(error), errors.NotFound)


def test_kombu_and_py_amqp_pieces():
    assert serialization.registry.type_to_name["application/json"] == "json"
    content_type, encoding, body = serialization.dumps({"a": 1}, "json")
    assert (content_type, encoding, json.loads(body)) == ("application/json", "utf-8", {"a": 1})
    assert "connection.blocked" in amqp.Connection.negotiate_capabilities
    assert "connection.blocked" not in crm_rpc._QuietConnection.negotiate_capabilities
    assert "confirm_timeout" in inspect.getsource(amqp.Channel.basic_publish_confirm)
    assert "basic_return" in inspect.getsource(amqp.Channel)
    assert names(amqp.Connection.drain_events) == ["self", "timeout"]
    assert callable(amqp.Connection.collect)
    from amqp.transport import _AbstractTransport
    assert callable(_AbstractTransport.having_timeout)
    from eventlet.patcher import original
    assert callable(original("select").select)


# --- a real container, driven through nameko's own message handling -------------------------

class Probe(HealthEntrypoints):
    name = "probe"

    @crm_rpc.rpc(expected_exceptions=errors.EXPECTED)
    def echo(self, value, times=1):
        return [value] * times

    @crm_events.reliable_handler("src", "thing_happened")
    def on_thing(self, event):
        return event


@pytest.fixture
def container():
    return ServiceContainer(Probe, {constants.AMQP_URI_CONFIG_KEY: AMQP_URI})


def entrypoint(container, method_name, cls=Entrypoint):
    return next(ext for ext in container.entrypoints
                if ext.method_name == method_name and isinstance(ext, cls))


def test_health_entrypoints_reach_a_service_by_inheritance(container):
    found = {ext.method_name for ext in container.entrypoints}
    assert {"ping", "health", "list_dead_letters", "replay_dead_letters", "heartbeat"} <= found
    heartbeat = entrypoint(container, "heartbeat", Timer)
    assert heartbeat.eager is True


def test_one_rpc_consumer_per_container_with_the_rpc_queue(container):
    rpcs = [ext for ext in container.entrypoints if isinstance(ext, Rpc)]
    assert rpcs and all(isinstance(ext, crm_rpc.ResilientRpc) for ext in rpcs)
    consumers = {id(ext.rpc_consumer) for ext in rpcs}
    assert len(consumers) == 1  # a SharedExtension, shared by its type
    consumer = rpcs[0].rpc_consumer
    assert isinstance(consumer, SharedExtension) and consumer.sharing_key is type(consumer)
    consumer.setup()
    try:
        assert consumer.queue.name == "rpc-probe"
        assert consumer.queue.routing_key == "probe.*"
        assert consumer.queue.exchange.name == "nameko-rpc" and consumer.queue.durable
    finally:
        consumer._replies.close()


def test_method_lookup_and_signature_check(container):
    echo = entrypoint(container, "echo", Rpc)
    consumer = echo.rpc_consumer
    for ext in container.entrypoints:
        if isinstance(ext, Rpc):
            ext.setup()  # registers the provider (nameko's ProviderCollector)
    assert echo in consumer._providers
    assert consumer.get_provider_for_method("probe.echo") is echo
    with pytest.raises(exceptions.MethodNotFound):
        consumer.get_provider_for_method("probe.nope")
    echo.check_signature([1], {"times": 2})
    for args, kwargs in (([], {}), ([1, 2, 3], {}), ([1], {"nope": 1})):
        with pytest.raises(exceptions.IncorrectSignature):
            echo.check_signature(args, kwargs)
        with pytest.raises(exceptions.IncorrectSignature):
            Entrypoint.check_signature(echo, args, kwargs)  # nameko's agrees


class Broker:
    """Hands a request published by RpcClient to nameko's RpcConsumer, and the reply our
    consumer publishes back to the client, as RabbitMQ would."""

    def __init__(self, container, run):
        self.container, self.run = container, run
        self.consumer = entrypoint(container, "echo", Rpc).rpc_consumer
        for ext in container.entrypoints:
            if isinstance(ext, Rpc):
                ext.setup()
        self.consumer._exchange = get_rpc_exchange(container.config).name
        self.consumer._replies = mock.Mock(publish=self._reply)
        self.acked, self.published, self.replies, self.spawned = [], [], [], []
        self.client = object.__new__(crm_rpc.RpcClient)
        self.client.exchange, self.client.reply_to = "nameko-rpc", "rpc.reply-gateway-test"
        self.client.broken = False
        self.client._channel = mock.Mock(basic_publish=self._request)
        self.client.connection = mock.Mock(drain_events=self._deliver)

    def _request(self, message, exchange, routing_key, mandatory):
        self.published.append(SimpleNamespace(message=message, exchange=exchange,
                                              routing_key=routing_key, mandatory=mandatory))

    def _deliver(self, timeout=None):
        if self.published:  # the request reaches the service
            sent = self.published.pop(0)
            props = sent.message.properties
            message = SimpleNamespace(
                headers=props["application_headers"], delivery_info={"routing_key": sent.routing_key},
                properties={k: props[k] for k in ("content_type", "reply_to", "correlation_id")})
            body = json.loads(sent.message.body)
            with mock.patch.object(self.container, "spawn_worker", self._spawn), \
                    mock.patch.object(self.consumer.queue_consumer, "ack_message", self.acked.append):
                self.consumer.handle_message(body, message)
        if self.replies:  # the reply reaches the client
            self.client._on_reply(self.replies.pop(0))

    def _spawn(self, entrypoint_, args, kwargs, context_data=None, handle_result=None):
        self.spawned.append((entrypoint_.method_name, args, kwargs, context_data))
        result, exc_info = self.run(args, kwargs)
        handle_result(SimpleNamespace(call_id="probe.echo.1"), result, exc_info)

    def _reply(self, exchange, routing_key, body, content_type, content_encoding,
               correlation_id=None, **_):
        assert exchange == "nameko-rpc" and routing_key == self.client.reply_to
        self.replies.append(SimpleNamespace(
            body=body, properties={"correlation_id": correlation_id, "content_type": content_type}))


def test_our_client_and_nameko_consumer_speak_one_protocol(container):
    broker = Broker(container, lambda args, kwargs: (Probe.echo(None, *args, **kwargs), None))
    result = broker.client.call("probe", "echo", (5,), {"times": 2},
                                context={"request_id": "r1", "user_id": None}, timeout=1.5)
    assert result == [5, 5]
    assert broker.spawned == [("echo", [5], {"times": 2}, {"request_id": "r1"})]
    assert len(broker.acked) == 1


def test_request_message_properties(container):
    broker = Broker(container, lambda args, kwargs: ("ok", None))
    seen = []
    original = broker._request

    def record(message, exchange, routing_key, mandatory):
        seen.append((message, exchange, routing_key, mandatory))
        original(message, exchange, routing_key, mandatory)

    broker.client._channel.basic_publish = record
    assert broker.client.call("probe", "echo", ("x",), {}, context={}, timeout=2) == "ok"
    message, exchange, routing_key, mandatory = seen[0]
    assert (exchange, routing_key, mandatory) == ("nameko-rpc", "probe.echo", True)
    assert message.properties["expiration"] == "2000"
    assert message.properties["delivery_mode"] == constants.NON_PERSISTENT
    assert json.loads(message.body) == {"args": ["x"], "kwargs": {}}


def test_typed_errors_and_unknown_methods_come_back_through_the_protocol(container):
    def fail(args, kwargs):
        exc = errors.NotFound("no such thing", {"id": "t1"})
        return None, (type(exc), exc, None)

    broker = Broker(container, fail)
    with pytest.raises(errors.NotFound) as raised:
        broker.client.call("probe", "echo", (1,), {}, timeout=1)
    assert raised.value.details == {"id": "t1"}
    # nameko's RpcConsumer.handle_message answers a missing method through handle_result(3 args)
    with pytest.raises(crm_rpc.RemoteError) as remote:
        broker.client.call("probe", "nope", (), {}, timeout=1)
    assert remote.value.details == {"type": "MethodNotFound"}


@pytest.mark.parametrize("case", ["result", "error", "unserializable"])
def test_our_reply_is_what_nameko_responder_sends(container, case):
    exc = errors.Conflict("taken", {"existing_ids": ["c1"]})
    result = {"result": ({"id": "c1", "n": [1, 2]}, None),
              "error": (None, (type(exc), exc, None)),
              "unserializable": (object(), None)}[case]
    message = SimpleNamespace(properties={"content_type": "application/json",
                                          "reply_to": "rpc.reply-x-1", "correlation_id": "k1"})
    nameko_sent = {}

    class CapturingPublisher:
        def __init__(self, *args, **kwargs):
            pass

        def publish(self, payload, **kwargs):
            nameko_sent.update(payload=payload, **kwargs)

    responder = Responder(AMQP_URI, get_rpc_exchange({}), "json", message)
    responder.publisher_cls = CapturingPublisher
    nameko_out = responder.send_response(*result)

    consumer = entrypoint(container, "echo", Rpc).rpc_consumer
    consumer._exchange = get_rpc_exchange(container.config).name
    ours_sent = {}
    consumer._replies = mock.Mock(publish=lambda exchange, routing_key, body, content_type,
                                  content_encoding, correlation_id=None, **_: ours_sent.update(
                                      exchange=exchange, routing_key=routing_key,
                                      body=json.loads(body), correlation_id=correlation_id))
    acked = []
    with mock.patch.object(consumer.queue_consumer, "ack_message", acked.append):
        ours_out = consumer.handle_result(message, *result)

    assert ours_sent["body"] == nameko_sent["payload"]
    assert ours_sent["routing_key"] == nameko_sent["routing_key"] == "rpc.reply-x-1"
    assert ours_sent["correlation_id"] == nameko_sent["correlation_id"] == "k1"
    assert ours_sent["exchange"] == nameko_sent["exchange"].name
    assert acked == [message]
    assert ours_out[0] == nameko_out[0]
    assert (ours_out[1] is None) == (nameko_out[1] is None)
    if case == "unserializable":
        assert ours_sent["body"]["error"]["exc_type"] == "UnserializableValueError"


def test_a_reply_the_broker_refuses_does_not_kill_the_service(container):
    echo = entrypoint(container, "echo", Rpc)
    with mock.patch.object(type(echo.rpc_consumer), "handle_result",
                           side_effect=OSError("connection reset")):
        out = echo.handle_result(SimpleNamespace(), SimpleNamespace(call_id="c"), "r", None)
    assert out == ("r", None)


# --- the reliable event handler on nameko's EventHandler -----------------------------------

@pytest.fixture
def handler(container):
    ext = entrypoint(container, "on_thing", EventHandler)
    with mock.patch.object(crm_events, "declare_dead_letter_queue") as declare:
        ext.setup()
    declare.assert_called_once_with(AMQP_URI, ext.queue.name)
    return ext


def test_handler_queue_name_exchange_and_dead_letter_arguments(handler):
    queue = handler.queue
    assert queue.name == "evt-src-thing_happened--probe.on_thing"
    assert (queue.exchange.name, queue.routing_key) == ("src.events", "thing_happened")
    assert queue.exchange.name == get_event_exchange("src", {}).name
    assert queue.durable and not queue.auto_delete and not queue.exclusive
    assert queue.queue_arguments == {"x-dead-letter-exchange": crm_events.DEAD_LETTER_EXCHANGE,
                                     "x-dead-letter-routing-key": queue.name}
    assert (handler.source_service, handler.event_type) == ("src", "thing_happened")
    assert handler.requeue_on_error is True
    assert handler.handler_type == SERVICE_POOL
    assert isinstance(handler.publisher, Publisher)
    assert handler.publisher.use_confirms is True
    assert handler.publisher.delivery_mode == constants.PERSISTENT


def _event_message(redelivered=False, headers=None):
    return SimpleNamespace(headers={"nameko.request_id": "r1", **(headers or {})},
                           delivery_info={"redelivered": redelivered},
                           payload=b'{"event_id": "e1"}')


def test_handler_flow_success_acks(container, handler):
    spawned, acked = [], []

    def spawn(entrypoint_, args, kwargs, context_data=None, handle_result=None):
        spawned.append((args, context_data))
        handle_result(SimpleNamespace(), None, None)  # nameko's Consumer.handle_result

    message = _event_message()
    with mock.patch.object(container, "spawn_worker", spawn), \
            mock.patch.object(crm_events, "load_event", lambda source, type_, body: body), \
            mock.patch.object(handler.queue_consumer, "ack_message", acked.append):
        handler.handle_message({"event_id": "e1"}, message)
    assert spawned == [(({"event_id": "e1"},), {"request_id": "r1"})]
    assert acked == [message]


def test_handler_flow_failure_is_republished_with_its_attempts(container, handler):
    acked = []
    failure = (ValueError, ValueError("bad"), None)

    def spawn(entrypoint_, args, kwargs, context_data=None, handle_result=None):
        handle_result(SimpleNamespace(), None, failure)

    message = _event_message(headers={crm_events.ATTEMPTS_HEADER: 1})
    handler.publisher = mock.Mock()
    with mock.patch.object(container, "spawn_worker", spawn), \
            mock.patch.object(crm_events, "load_event", lambda source, type_, body: body), \
            mock.patch.object(handler.queue_consumer, "ack_message", acked.append):
        handler.handle_message({"event_id": "e1"}, message)
    (payload,), kwargs = handler.publisher.publish.call_args
    assert payload == message.payload
    assert kwargs["exchange"] == "" and kwargs["routing_key"] == handler.queue.name
    assert kwargs["headers"][crm_events.ATTEMPTS_HEADER] == 2
    assert "ValueError: bad" in kwargs["headers"][crm_events.ERROR_HEADER]
    assert acked == [message]


def test_handler_requeues_when_it_cannot_republish(container, handler):
    requeued = []
    handler.publisher = mock.Mock(publish=mock.Mock(side_effect=OSError("broker gone")))
    message = _event_message()
    with mock.patch.object(handler.queue_consumer, "requeue_message", requeued.append):
        handler.handle_message_processed(message, None, (ValueError, ValueError("x"), None))
    assert requeued == [message]


def test_one_queue_per_source_with_a_binding_per_type():
    from crm_common.messaging.events import source_handler

    class Listener:
        name = "listener"

        @source_handler("deals", {"deal_won", "deal_lost"})
        def on_deals_events(self, event):
            pass

    container = ServiceContainer(Listener, {constants.AMQP_URI_CONFIG_KEY: AMQP_URI})
    ext = entrypoint(container, "on_deals_events", EventHandler)
    with mock.patch.object(crm_events, "declare_dead_letter_queue"):
        ext.setup()
    assert ext.queue.name == "evt-deals-events--listener.on_deals_events"
    assert {(b.exchange.name, b.routing_key) for b in ext.queue.bindings} == {
        ("deals.events", "deal_won"), ("deals.events", "deal_lost")}
