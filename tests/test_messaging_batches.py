"""crm_common.messaging.batches: events gathered into batches, one worker per batch, acked
per message after it; a failed batch handled again one event at a time, so only the
message that fails is retried and parked. Unit level (a real nameko container whose
extensions connect to nothing; workers run when the test says)."""
from types import SimpleNamespace
from unittest import mock

import pytest
from nameko import constants
from nameko.containers import ServiceContainer
from nameko.events import EventHandler
from nameko.messaging import QueueConsumer

from crm_common.messaging import batches
from crm_common.messaging import events as crm_events
from crm_common.messaging.bindings import DemandBoundHandler

AMQP_URI = "amqp://guest:guest@localhost:5672/"


class Probe:
    name = "probe"

    @batches.demand_bound_batch_handler("src", ["made", "gone"], ["made"], workers=2, max_batch=3)
    def on_src_events(self, batch):
        return batch

    @crm_events.reliable_handler("src", "made")
    def on_made(self, event):
        return event


@pytest.fixture
def container():
    return ServiceContainer(Probe, {constants.AMQP_URI_CONFIG_KEY: AMQP_URI})


@pytest.fixture
def handler(container):
    ext = next(e for e in container.entrypoints if e.method_name == "on_src_events")
    with mock.patch.object(crm_events, "declare_dead_letter_queue"):
        ext.setup()
    ext.publisher = mock.Mock()
    return ext


def message(n, redelivered=False):
    return SimpleNamespace(headers={"nameko.request_id": f"r{n}", "nameko.automation_depth": n},
                           delivery_info={"redelivered": redelivered}, payload=f"p{n}".encode(),
                           n=n)


class Workers:
    """container.spawn_worker / spawn_managed_thread held until the test runs them."""

    def __init__(self, container):
        self.waiting, self.threads = [], []
        self.patches = [mock.patch.object(container, "spawn_worker", self.spawn),
                        mock.patch.object(container, "spawn_managed_thread", self.thread)]

    def spawn(self, entrypoint, args, kwargs, context_data=None, handle_result=None):
        self.waiting.append((args[0], handle_result))

    def thread(self, fn, identifier=None):
        self.threads.append(fn)

    def finish(self, i=0, exc_info=None):
        batch, handle_result = self.waiting.pop(i)
        handle_result(SimpleNamespace(), None, exc_info)
        while self.threads:
            self.threads.pop(0)()
        return batch

    def __enter__(self):
        for p in self.patches:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in self.patches:
            p.stop()


@pytest.fixture
def taking(container, handler):
    """The handler taking messages: its workers held (`.workers`), the contract load
    skipped, the acks recorded (`.acked`); `.deliver(n)` hands it messages 0..n-1 (events
    e0..) and returns them."""
    acked = []

    def deliver(n):
        msgs = [message(i) for i in range(n)]
        for m in msgs:
            handler.handle_message({"event_id": f"e{m.n}"}, m)
        return msgs

    with Workers(container) as workers, \
            mock.patch.object(crm_events, "load_event", lambda s, t, body: body), \
            mock.patch.object(handler.queue_consumer, "ack_message", acked.append):
        yield SimpleNamespace(workers=workers, acked=acked, deliver=deliver)


def test_a_batch_handler_keeps_the_queue_and_takes_a_consumer_of_its_own(container, handler):
    assert isinstance(handler, DemandBoundHandler) and isinstance(handler, EventHandler)
    assert handler.queue.name == "evt-src-events--probe.on_src_events"
    assert {b.routing_key for b in handler.queue.bindings} == {"made"}
    assert handler.queue.queue_arguments["x-dead-letter-exchange"] == crm_events.DEAD_LETTER_EXCHANGE
    single = next(e for e in container.entrypoints if e.method_name == "on_made")
    # its own consumer (a connection of its own) with its own prefetch
    assert isinstance(handler.queue_consumer, batches.BatchQueueConsumer)
    assert type(single.queue_consumer) is QueueConsumer
    assert handler.queue_consumer.prefetch_count == batches.PREFETCH


def test_events_gathered_while_batches_run_make_the_next_batch(handler, taking):
    workers, acked = taking.workers, taking.acked
    msgs = taking.deliver(7)
    # two batches at once (workers=2): the first two events each had a free worker
    assert [[d.event["event_id"] for d in b] for b, _ in workers.waiting] == [["e0"], ["e1"]]
    first = workers.finish()
    assert [d.event["event_id"] for d in first] == ["e0"]
    assert first[0].context["request_id"] == "r0" and first[0].context["automation_depth"] == 0
    assert acked == [msgs[0]]
    # what came meanwhile, at most max_batch=3 a batch
    assert [d.event["event_id"] for d in workers.waiting[-1][0]] == ["e2", "e3", "e4"]
    workers.finish(0)
    workers.finish(0)
    workers.finish(0)
    assert acked == [msgs[0], msgs[1], msgs[2], msgs[3], msgs[4], msgs[5], msgs[6]]
    assert not workers.waiting and handler.running == 0 and not handler.pending


def test_a_failed_batch_is_handled_again_one_event_at_a_time(handler, taking):
    workers, acked = taking.workers, taking.acked
    failure = (ValueError, ValueError("bad e2"), None)
    msgs = taking.deliver(5)
    workers.finish(0)                      # e0
    workers.finish(0)                      # e1
    batch = workers.finish(0, failure)     # e2 e3 e4 failed together: nothing acked
    assert [d.event["event_id"] for d in batch] == ["e2", "e3", "e4"]
    assert acked == [msgs[0], msgs[1]] and not handler.publisher.publish.called
    # each alone now; only e2 fails again: retried with its attempt counted, e3 e4 acked
    assert [[d.event["event_id"] for d in b] for b, _ in workers.waiting] == [["e2"], ["e3"]]
    workers.finish(0, failure)
    workers.finish(0)
    workers.finish(0)
    assert acked == msgs[:2] + [msgs[2], msgs[3], msgs[4]]
    (payload,), kwargs = handler.publisher.publish.call_args
    assert payload == b"p2" and kwargs["routing_key"] == handler.queue.name
    assert kwargs["headers"][crm_events.ATTEMPTS_HEADER] == 1
    assert handler.publisher.publish.call_count == 1


def test_redelivered_and_rejected_messages_never_join_a_batch(handler, taking):
    handler.handle_message({"event_id": "e9"}, message(9, redelivered=True))
    assert not taking.workers.waiting and handler.publisher.publish.call_count == 1


def test_a_stopping_handler_handles_what_it_gathered_before_it_returns(handler, taking):
    with mock.patch.object(handler.queue_consumer, "unregister_provider") as unregister, \
            mock.patch.object(batches.eventlet, "sleep", lambda s: taking.workers.finish(0)):
        msgs = taking.deliver(6)
        handler.stop()
    unregister.assert_called_once_with(handler)
    assert taking.acked == msgs
