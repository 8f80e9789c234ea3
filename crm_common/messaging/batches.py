"""Event handlers that take what their queue delivered as batches: one worker for the events
gathered while the previous batch ran, instead of one per event.

nameko spawns a worker per message (a greenthread, every dependency provider's
`get_dependency` / `worker_setup` / `worker_result` / `worker_teardown`), and the prefetch
(the container's `max_workers`, 16) bounds how many events a group commit can gather. For a
service whose per-event work is small and whose writes are per batch (automation's intake),
that overhead and the small batches were most of its cost per event.

`demand_bound_batch_handler(source, event_types, always)` (crm_common.messaging.bindings'
demand-bound source queue) decorates `handle(self, batch)`; `batch` is a list of
`Delivery(event, context)`: the event loaded through its contract, and the context its
message carried (what a worker of that one event would have had as `context_data`,
without the worker's own call id). What does not change, per message:
- the queue, its bindings, its dead-letter queue and the wire format (ReliableEventHandler);
- a message that comes back `redelivered`, or whose body its contract rejects, is retried
  or parked alone before it joins a batch;
- a message is acked once the batch holding it was handled;
- a batch that fails is handled again one event at a time (each in a batch of one), so a
  failure counts only against the message that causes it: that message is retried with
  `x-crm-attempts`, then parked in `dead.<queue>` (an event may so be handled twice: the
  handlers are idempotent, delivery is at least once anyway).
The batch handlers consume on a connection of their own (`BatchQueueConsumer`) with a
prefetch of PREFETCH messages; at most `workers` batches of one queue run at once, each of
at most `max_batch` events."""
import logging
from collections import namedtuple
from functools import partial

import eventlet
from nameko.events import EventHandler
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import QueueConsumer

from crm_common.messaging.bindings import DemandBoundHandler

log = logging.getLogger(__name__)

PREFETCH = 400

Delivery = namedtuple("Delivery", "event context")


class BatchQueueConsumer(QueueConsumer):
    """nameko's QueueConsumer, a separate one (a SharedExtension is shared by its type: the
    batch handlers of a container share this one, on its own connection) with a prefetch
    of its own instead of the container's `max_workers`."""

    @property
    def prefetch_count(self):
        return PREFETCH


class _Gathering(EventHandler):
    """Sits after ReliableEventHandler in the handler's method order: its checks run first
    (redelivered, contract), then the message joins the pending batch here instead of
    getting a worker of its own."""

    queue_consumer = BatchQueueConsumer()

    def __init__(self, *args, workers=2, max_batch=200, **kwargs):
        self.workers = workers
        self.max_batch = max_batch
        super().__init__(*args, **kwargs)

    def setup(self):
        super().setup()
        self.pending = []    # [(Delivery, message, alone)]
        self.running = 0

    def stop(self):
        """Nothing more is delivered (nameko's: the consumer cancelled), then the events
        gathered already are handled before the container stops its workers (left unacked
        they would come back `redelivered`, an attempt counted against each)."""
        super().stop()
        while self.pending or self.running:
            eventlet.sleep(0.05)

    def handle_message(self, body, message):
        context = self.unpack_message_headers(message)
        self.pending.append((Delivery(body, context), message, False))
        self._start_batches()

    def _start_batches(self):
        while self.pending and self.running < self.workers:
            if self.pending[0][2]:   # a failed batch's events: one at a time
                batch, self.pending = self.pending[:1], self.pending[1:]
            else:
                size = next((i for i, entry in enumerate(self.pending[:self.max_batch])
                             if entry[2]), min(len(self.pending), self.max_batch))
                batch, self.pending = self.pending[:size], self.pending[size:]
            self.running += 1
            try:
                self.container.spawn_worker(
                    self, ([delivery for delivery, _, _ in batch],), {}, context_data={},
                    handle_result=partial(self.handle_batch_result, batch))
            except ContainerBeingKilled:
                self.running -= 1
                for _, message, _ in batch:
                    self.queue_consumer.requeue_message(message)
                for _, message, _ in self.pending:
                    self.queue_consumer.requeue_message(message)
                self.pending = []
                return

    def handle_batch_result(self, batch, worker_ctx, result=None, exc_info=None):
        self.running -= 1
        if exc_info is None or len(batch) == 1:
            for _, message, _ in batch:
                self.handle_message_processed(message, result, exc_info)
        else:
            log.warning("a batch of %d events of %s failed (%s): each is handled alone",
                        len(batch), self.queue.name, exc_info[1])
            self.pending[:0] = [(delivery, message, True) for delivery, message, _ in batch]
        # the next batch from a thread of its own: this worker leaves the pool first (a
        # worker waiting for a free slot of a full pool would hold its own)
        if self.pending:
            self.container.spawn_managed_thread(self._start_batches)
        return result, exc_info


class DemandBoundBatchHandler(DemandBoundHandler, _Gathering):
    """crm_common.messaging.bindings.DemandBoundHandler whose method takes batches."""


demand_bound_batch_handler = DemandBoundBatchHandler.decorator
