"""RPC with a deadline: a pool of long-lived clients speaking nameko's AMQP RPC protocol
over py-amqp, used by the gateway (RpcPool) and by services calling each other (ServiceRpc).

Why not nameko's ClusterRpcProxy / RpcProxy: the first costs several times a raw round trip
per call (far more when made per request); neither bounds a call whose reply never comes. After a broker restart such a
call waits forever and holds a worker, and a service whose workers are all held stops
answering (seen in bench/soak.py). Each client here owns one connection, one channel and one exclusive reply queue,
is used by one thread at a time, and:
- publishes with `mandatory` so a service with no queue at all fails at once (503);
- gives every request a TTL equal to its timeout, so a stopped service never executes a
  request after the caller has been told 504;
- is discarded on any connection error; the pool builds a fresh one on the next checkout.
"""
import inspect
import logging
import queue
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager

import amqp
import kombu
from kombu import serialization
from kombu.utils.json import dumps as json_dumps, loads as json_loads
from eventlet.patcher import original
from nameko.constants import (AMQP_SSL_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT,
                              PERSISTENT)
from nameko.exceptions import IncorrectSignature, UnserializableValueError, serialize
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc, RpcConsumer, get_rpc_exchange
from kombu.exceptions import OperationalError
from amqp.exceptions import ConnectionError as AmqpConnectionError

from crm_common.errors import BY_PATH, CrmError, Timeout, Unavailable

log = logging.getLogger(__name__)
# the real select, also under eventlet's monkey-patching: a zero-timeout poll of a socket
# must not go through the hub
_real_select = original("select")

CONNECTION_ERRORS = (OSError, AmqpConnectionError, OperationalError,
                     ConnectionError)
# what makes a pooled client unusable: the connection, or its channel (closed by the broker
# after a channel error; the client is replaced)
AMQP_ERRORS = CONNECTION_ERRORS + (amqp.exceptions.AMQPError,)


class _QuietConnection(amqp.Connection):
    """py-amqp's connection without the connection.blocked capability. With it, py-amqp reads
    the socket (timeout 0) before every publish, for a notification nothing here handles:
    30 us of CPU per publish, 40-60% of a reply's publish (measured with plain py-amqp).
    A broker under a resource alarm still stops reading, so a publish waits as before."""
    negotiate_capabilities = {name: on for name, on in amqp.Connection.negotiate_capabilities.items()
                              if name != "connection.blocked"}


def connect(amqp_uri, connect_timeout=2.0, ssl=None, login_method=None):
    """A py-amqp connection for an AMQP URI (kombu parses it), no heartbeats."""
    info = kombu.Connection(amqp_uri, ssl=ssl, login_method=login_method).info()
    connection = _QuietConnection(
        host=f"{info['hostname']}:{info['port']}", userid=info["userid"],
        password=info["password"], virtual_host=info["virtual_host"], ssl=info["ssl"],
        login_method=info["login_method"], connect_timeout=connect_timeout, heartbeat=0)
    try:
        connection.connect()
    except BaseException:
        close_quietly(connection)
        raise
    return connection


def readable(connection):
    """Whether the connection's socket has something to read now (zero-timeout poll with
    the real select, also under eventlet: it must not go through the hub)."""
    ready, _, _ = _real_select.select([connection.sock], [], [], 0)
    return bool(ready)


def encode(payload, serializer):
    """(content_type, content_encoding, body bytes) of a payload, as kombu encodes it."""
    content_type, encoding, body = serialization.dumps(payload, serializer)
    return content_type, encoding, body.encode(encoding) if isinstance(body, str) else body


def close_quietly(connection, timeout=1.0):
    """Close politely if the broker still answers within `timeout`, else just drop it."""
    try:
        if connection.transport is not None:
            with connection.transport.having_timeout(timeout):
                connection.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
        pass
    finally:
        connection.collect()


class RemoteError(CrmError):
    code, status = "internal_error", 500


class RpcClient:
    """One connection, one channel, one exclusive reply queue; one thread at a time.

    Requests and replies go through py-amqp directly (kombu only parses the URI):
    kombu's Connection, Producer and Consumer layers (entity declaration checks, serializer
    registry, message objects, transport wrappers) were about a third of this client's
    CPU per call in a profile of the gateway."""

    def __init__(self, amqp_uri, exchange="nameko-rpc", name="gateway", connect_timeout=2.0):
        self.connection = connect(amqp_uri, connect_timeout)  # py-amqp
        self.broken = False
        self._waiting_for = None
        self._reply = None
        self._returned = False
        self.exchange = exchange
        self.reply_to = f"rpc.reply-{name}-{uuid.uuid4()}"
        try:
            channel = self._channel = self.connection.channel()
            channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
            channel.queue_declare(self.reply_to, exclusive=True, auto_delete=True)
            channel.queue_bind(self.reply_to, exchange, routing_key=self.reply_to)
            channel.basic_consume(self.reply_to, no_ack=True, callback=self._on_reply)
            channel.events["basic_return"].add(self._on_return)
        except AMQP_ERRORS:
            self.close()
            raise

    def _on_reply(self, message):
        if message.properties.get("correlation_id") != self._waiting_for:
            return  # a reply to a call that already timed out; dropped
        if message.properties.get("content_type") != "application/json":
            log.error("reply with content type %r dropped", message.properties.get("content_type"))
            return
        self._reply = json_loads(message.body)

    def _on_return(self, exception, exchange, routing_key, message):
        if message.properties.get("correlation_id") == self._waiting_for:
            self._returned = True

    def healthy(self):
        """An idle connection has nothing to read except late replies; anything else
        readable (EOF, connection.close from a restarted broker) means it is dead."""
        if self.broken:
            return False
        try:
            if readable(self.connection):
                self.connection.drain_events(timeout=0.001)
        except socket.timeout:
            pass
        except Exception:  # noqa: BLE001 - any failure here means: do not reuse
            self.broken = True
        return not self.broken

    def call(self, service, method, args=(), kwargs=None, context=None, timeout=5.0):
        correlation_id = uuid.uuid4().hex
        self._waiting_for, self._reply, self._returned = correlation_id, None, False
        headers = {f"nameko.{k}": v for k, v in (context or {}).items() if v is not None}
        deadline = time.monotonic() + timeout
        try:
            # what kombu's Producer sent: JSON, transient, a TTL equal to the timeout (ms),
            # mandatory so a service with no queue is returned at once (503)
            message = amqp.Message(
                json_dumps({"args": list(args), "kwargs": kwargs or {}}).encode(),
                content_type="application/json", content_encoding="utf-8",
                reply_to=self.reply_to, correlation_id=correlation_id,
                application_headers=headers, delivery_mode=1,
                expiration=str(int(timeout * 1000)))
            self._channel.basic_publish(message, exchange=self.exchange,
                                        routing_key=f"{service}.{method}", mandatory=True)
            while self._reply is None:
                if self._returned:
                    raise Unavailable(f"The {service} service is not running",
                                      {"service": service})
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                self.connection.drain_events(timeout=remaining)
        except socket.timeout:
            raise Timeout(f"The {service} service did not answer in time",
                          {"service": service, "timeout_s": timeout})
        except AMQP_ERRORS as exc:
            self.broken = True
            raise Unavailable("The message broker is unavailable", {"reason": str(exc)})
        finally:
            self._waiting_for = None
        return _unpack(self._reply)

    def close(self):
        close_quietly(self.connection)


def _unpack(reply):
    error = reply.get("error")
    if not error:
        return reply.get("result")
    cls = BY_PATH.get(error.get("exc_path"))
    if cls is not None:
        raise cls(*error.get("exc_args", []))
    log.error("remote error %s: %s", error.get("exc_type"), error.get("value"))
    raise RemoteError("Internal error in a service", {"type": error.get("exc_type")})


class RpcPool:
    """Clients checked out one thread at a time; broken ones are dropped and rebuilt."""

    def __init__(self, amqp_uri, size=16, timeout=5.0, name="gateway"):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self.name = name
        self._idle = queue.LifoQueue(maxsize=size)
        self._lock = threading.Lock()

    def _new_client(self):
        try:
            return RpcClient(self.amqp_uri, name=self.name)
        except AMQP_ERRORS as exc:
            raise Unavailable("The message broker is unavailable", {"reason": str(exc)})

    @contextmanager
    def client(self):
        client = None
        while client is None:
            try:
                candidate = self._idle.get_nowait()
            except queue.Empty:
                candidate = self._new_client()
            if candidate.healthy():
                client = candidate
            else:
                candidate.close()
        try:
            yield client
        finally:
            if client.broken:
                client.close()
            else:
                try:
                    self._idle.put_nowait(client)
                except queue.Full:
                    client.close()

    def call(self, service, method, *args, context=None, timeout=None, **kwargs):
        with self.client() as client:
            return client.call(service, method, args, kwargs, context,
                               timeout or self.timeout)

    def proxy(self, service, context=None, timeout=None):
        return ServiceProxy(self, service, context, timeout)

    def close(self):
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class ServiceProxy:
    """`proxy.method(*args, **kwargs)` calls `service.method` through the pool."""

    def __init__(self, pool, service, context=None, timeout=None):
        self._pool, self._service, self._context, self._timeout = pool, service, context, timeout

    def __getattr__(self, method):
        def call(*args, **kwargs):
            return self._pool.call(self._service, method, *args, context=self._context,
                                   timeout=self._timeout, **kwargs)
        return call


def forwarded_context(worker_ctx):
    """The worker's context as its RPC calls carry it (request id, user): None and values
    that are not scalars or lists dropped."""
    return {k: v for k, v in worker_ctx.context_data.items()
            if v is not None and isinstance(v, (str, int, float, bool, list))}


class ServiceRpc(DependencyProvider):
    """Drop-in for nameko's RpcProxy(service) with a deadline: `self.contacts_rpc.get_contact(id)`
    raises crm_common.errors.Timeout after CRM_RPC_TIMEOUT (or `timeout`) seconds instead of
    waiting forever, and Unavailable at once when the service has no queue. The caller's
    context (request id, user) is forwarded. Typed errors arrive as their own class."""

    def __init__(self, service, timeout=None):
        self.service = service
        self.timeout = timeout

    def setup(self):
        from crm_common.config import load_settings
        settings = load_settings()
        self.pool = RpcPool(self.container.config["AMQP_URI"], size=32,
                            timeout=self.timeout or settings.rpc_timeout,
                            name=self.container.service_name)

    def stop(self):
        self.pool.close()

    def get_dependency(self, worker_ctx):
        return self.pool.proxy(self.service, forwarded_context(worker_ctx))


class Calls:
    """What an ActingRpc gives a worker."""

    def __init__(self, pool, context):
        self.pool = pool
        self.context = context

    def call(self, service, method, *args, context=None, **kwargs):
        """`service.method(*args, **kwargs)` as the caller, or as the user whose `context`
        is given (crm_common.context.user_context)."""
        return self.pool.call(service, method, *args,
                              context=self.context if context is None else context, **kwargs)

    def as_user(self, context):
        """`call(service, method, *args)` made as the user whose `context` is given."""
        return lambda service, method, *args, **kwargs: self.call(
            service, method, *args, context=context, **kwargs)


class ActingRpc(DependencyProvider):
    """Calls to any service, as the caller or as another user (their role, team and
    visibility): for what a service checks or does on someone's behalf, e.g. whether a
    mentioned user sees a record, or the reports a scheduled digest's subscriber may see.
    `self.acting.call(service, method, *args, context=None)`, `self.acting.as_user(context)`.
    Same deadlines and typed errors as ServiceRpc."""

    def __init__(self, size=16, timeout=None):
        self.size = size
        self.timeout = timeout

    def setup(self):
        from crm_common.config import load_settings
        settings = load_settings()
        self.pool = RpcPool(self.container.config["AMQP_URI"], size=self.size,
                            timeout=self.timeout or settings.rpc_timeout,
                            name=self.container.service_name)

    def stop(self):
        self.pool.close()

    def kill(self):
        self.pool.close()

    def get_dependency(self, worker_ctx):
        return Calls(self.pool, forwarded_context(worker_ctx))


class PublishChannel:
    """One connection and channel of this process for publishing, through py-amqp directly,
    one greenthread at a time. nameko's Responder and Publisher built a Publisher, a kombu
    Connection, a pooled Producer and a retry wrapper for every message: for RPC replies that
    was a fifth of the contacts service's CPU per GET /contacts/{id}, for events 11% of the
    telephony service's CPU per ringing event (py-spy --gil).

    confirms=False (RPC replies): transient and unconfirmed; the caller's deadline already
    covers a reply the broker loses (it gets 504, as for a reply lost in a broker restart).
    confirms=True (events from the outbox): each publish waits for the broker's confirm, at
    most confirm_timeout, and raises if it does not come, so the record stays for the relay.

    Nothing is ever left to read on this connection (no heartbeats, not mandatory, each
    confirm read before the next publish), so anything readable is the broker closing it:
    the channel is rebuilt before the publish instead of the message going into a dead
    socket. A failed publish is tried once more on a fresh connection."""

    def __init__(self, amqp_uri, ssl=None, login_method=None, connect_timeout=2.0,
                 confirms=False, confirm_timeout=5.0):
        self._open = lambda: connect(amqp_uri, connect_timeout, ssl, login_method)
        self.confirms, self.confirm_timeout = confirms, confirm_timeout
        self._lock = threading.Lock()  # a green lock under `nameko run` (monkey-patched)
        self._connection = self._channel = None
        self._declared = set()

    def publish(self, exchange, routing_key, body, content_type, content_encoding,
                correlation_id=None, headers=None, persistent=False, declare=None):
        """`declare`: a kombu Exchange declared once per connection before publishing."""
        message = amqp.Message(body, content_type=content_type,
                               content_encoding=content_encoding, correlation_id=correlation_id,
                               application_headers=headers or {},
                               delivery_mode=PERSISTENT if persistent else NON_PERSISTENT)
        with self._lock:
            for attempt in (1, 2):  # once more on a fresh connection after a broker restart
                try:
                    channel = self._usable_channel()
                    if declare is not None and declare.name not in self._declared:
                        channel.exchange_declare(declare.name, declare.type,
                                                 durable=declare.durable,
                                                 auto_delete=declare.auto_delete)
                        self._declared.add(declare.name)
                    if self.confirms:
                        channel.basic_publish_confirm(message, exchange=exchange,
                                                      routing_key=routing_key,
                                                      confirm_timeout=self.confirm_timeout)
                    else:
                        channel.basic_publish(message, exchange=exchange,
                                              routing_key=routing_key)
                    return
                except AMQP_ERRORS:  # a confirm that did not come in time is a socket.timeout
                    self.close()
                    if attempt == 2:
                        raise

    def _usable_channel(self):
        if self._channel is not None and readable(self._connection):
            self.close()
        if self._channel is None:
            self._connection = self._open()
            self._channel = self._connection.channel()
        return self._channel

    def close(self):
        connection, self._connection, self._channel = self._connection, None, None
        self._declared = set()
        if connection is not None:
            close_quietly(connection)


class _RpcConsumer(RpcConsumer):
    """nameko's RpcConsumer with replies through a PublishChannel (above) and the method found
    by a dict lookup instead of a scan formatting a key for every RPC method of the service."""

    def setup(self):
        super().setup()
        config = self.container.config
        self._replies = PublishChannel(config["AMQP_URI"], ssl=config.get(AMQP_SSL_CONFIG_KEY),
                                       login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        self._exchange = get_rpc_exchange(config).name

    def stop(self):
        super().stop()
        self._replies.close()

    def kill(self):
        super().kill()
        self._replies.close()

    def get_provider_for_method(self, routing_key):
        by_key = getattr(self, "_by_key", None)
        if by_key is None or len(by_key) != len(self._providers):
            service = self.container.service_name
            by_key = self._by_key = {f"{service}.{p.method_name}": p for p in self._providers}
        provider = by_key.get(routing_key)
        if provider is None:
            return super().get_provider_for_method(routing_key)  # raises MethodNotFound
        return provider

    def handle_result(self, message, result, exc_info):
        """What nameko's Responder.send_response does, serializing once: the reply is encoded
        like the request, and a result that cannot be encoded becomes an
        UnserializableValueError reply instead of killing the container."""
        error = serialize(exc_info[1]) if exc_info is not None else None
        content_type = message.properties["content_type"]
        serializer = serialization.registry.type_to_name[content_type]
        try:
            content_type, encoding, body = encode({"result": result, "error": error}, serializer)
        except Exception:  # noqa: BLE001 - any encoding failure becomes an error reply
            exc_info = sys.exc_info()
            error, result = serialize(UnserializableValueError(result)), None
            content_type, encoding, body = encode({"result": None, "error": error}, serializer)
        self._replies.publish(self._exchange, message.properties["reply_to"], body,
                              content_type, encoding, message.properties.get("correlation_id"))
        self.queue_consumer.ack_message(message)
        return result, exc_info


class ResilientRpc(Rpc):
    """nameko's RPC entrypoint, except that a reply (or ack) the broker cannot take is logged
    and dropped instead of killing the whole service: nameko stops the container when
    publishing a reply fails, so a broker restart under load took services down for good
    (bench/soak.py). The caller's deadline turns the lost reply into a 504; the request
    itself, published transient, does not survive the broker restart to run twice.
    Replies go through a PublishChannel (unconfirmed, transient)."""

    rpc_consumer = _RpcConsumer()

    def check_signature(self, args, kwargs):
        """nameko's check with the method's signature computed once: inspect.getcallargs
        rebuilt it on every call (3% of the contacts service's CPU per read)."""
        signature = self.__dict__.get("_signature")
        if signature is None:
            signature = self._signature = inspect.signature(
                getattr(self.container.service_cls, self.method_name))
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(str(exc))

    def handle_result(self, message, worker_ctx, result, exc_info):
        try:
            return super().handle_result(message, worker_ctx, result, exc_info)
        except AMQP_ERRORS as exc:
            log.warning("reply of %s lost, the broker is unavailable: %s", worker_ctx.call_id, exc)
            return result, exc_info


# use this instead of nameko.rpc.rpc in every service
rpc = ResilientRpc.decorator
