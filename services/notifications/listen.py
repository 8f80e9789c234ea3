"""One reliable queue per source instead of one per event type: this service listens to
some 25 event types (crm_common.messaging.events.SourceEventHandler). Each queue is bound
to the types a person may be told about, and to the others only once an active webhook
subscribes to them (crm_common.messaging.bindings)."""
from crm_common.messaging.events import SourceEventHandler, source_handler  # noqa: F401
