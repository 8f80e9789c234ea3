"""One reliable queue per source service instead of one per event type: this service listens
to some 25 event types (crm_common.messaging.events.SourceEventHandler)."""
from crm_common.messaging.events import SourceEventHandler, source_handler  # noqa: F401
