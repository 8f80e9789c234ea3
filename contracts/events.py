"""The event contract's entry points: producers dump every event through `dump_event`,
consumers load it through `load_event`.

(Stub: the per-event schemas are being written; both pass the body through unchanged.)"""


class EventRejected(ValueError):
    """An event body its schema refuses (a required field missing, a wrong type): the
    consumer parks it in its dead-letter queue with this message, it is never retried."""


def dump_event(source, event_type, body):
    """The envelope as it goes on the wire, its `data` dumped through the event's schema."""
    return body


def load_event(source, event_type, body):
    """The envelope as a consumer sees it, its `data` loaded through the event's schema
    (unknown fields tolerated); raises EventRejected."""
    return body
