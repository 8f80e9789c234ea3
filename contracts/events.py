"""The event contract: one marshmallow schema per event, producers dump every event through
it (`dump_event`), consumers load it through it (`load_event`).

Every event is one envelope, `Envelope` below, whose `data` is the event's own schema. The
schemas live in the "Events" section of each `contracts/<source>.py` (`gateway` for
user_upserted), listed in its `EVENTS = {event type: schema}`; `registry()` gathers them
by (source, event type). docs/events.md is generated from them (`python -m contracts.catalog`).

What a schema promises:
- every field the producer sends is declared, with its exact JSON type: a producer that
  sends an undeclared field or a wrong type raises EventContractError (a programming error
  the tests catch), nothing is published;
- `required` marks what the event is about and what its consumers act on (the record or its
  id, the people it concerns): an event without it is parked in the consumer's dead-letter
  queue at once, never retried (EventRejected). The other fields are sent as their
  descriptions say, and a consumer copes without them (`data.get`);
- unknown fields are tolerated on load (INCLUDE, kept in `data`): a producer may add a field
  before its consumers know it, and what a consumer passes on (a webhook body, a timeline
  entry) keeps it. EXCLUDE would drop such fields silently from webhooks.
Values stay JSON on both sides: times are ISO 8601 strings (`IsoTime`), integers and
booleans are not coerced from strings, so a loaded `data` equals what was sent.
"""
import importlib

from marshmallow import INCLUDE, Schema, ValidationError, fields

from crm_common.timeutil import parse_iso, to_iso

# every publishing service; its schemas are in contracts/<source>.py
SOURCES = ("gateway", "contacts", "deals", "tasks", "telephony", "notifications",
           "notes", "conversations", "automation", "sales")


class EventRejected(ValueError):
    """An event body its schema refuses (a required field missing, a wrong type): the
    consumer parks it in its dead-letter queue with this message, it is never retried."""


class EventContractError(Exception):
    """A producer built an event its contract does not allow (no schema, an undeclared
    field, a wrong type): a programming error, raised before anything is stored."""


# --- field types: JSON values, checked exactly -------------------------------------------

class IsoTime(fields.String):
    """An ISO 8601 time, kept as the string sent (a datetime given to dump is written as
    ISO 8601 UTC, ending in Z)."""

    default_error_messages = {"iso": "Not an ISO 8601 time."}

    def _serialize(self, value, attr, obj, **kwargs):
        return to_iso(value) if value is not None and not isinstance(value, str) else value

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            parse_iso(value)
        except (TypeError, ValueError, OverflowError):
            raise self.make_error("iso")
        return value


class Bool(fields.Boolean):
    """true or false only (marshmallow's Boolean would also take "yes", 1, "on"...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Int(fields.Integer):
    """An integer only (not "5", not 5.0, not true)."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class Object(fields.Nested):
    """A JSON object checked against `schema` (its declared keys typed, others kept):
    passed on whole, so a record snapshot keeps every key the API gives it."""

    def _serialize(self, nested_obj, attr, obj, **kwargs):
        if nested_obj is None:
            return None
        if self.many:
            return [{**item, **self.schema.dump(item)} for item in nested_obj]
        return {**nested_obj, **self.schema.dump(nested_obj)}


class EventData(Schema):
    """Base of every event's `data` schema: unknown fields are kept (see the module)."""

    class Meta:
        unknown = INCLUDE


class Ref(EventData):
    type = fields.String(required=True, metadata={"description": "the record's kind"})
    id = fields.String(allow_none=True, metadata={"description": "its id"})


def ref_field(kind):
    return Object(Ref, metadata={"description": f'the record behind it: {{"type": "{kind}", "id"}}'})


def summary_field():
    return fields.String(metadata={"description": "one line for people (timelines, inboxes)"})


def actor_field():
    return fields.String(allow_none=True, metadata={
        "description": "the user who did it (null: the service itself)"})


class Envelope(Schema):
    """Every event on the wire, on the exchange `<source>.events` with routing key = type."""

    class Meta:
        unknown = INCLUDE

    event_id = fields.String(required=True, metadata={
        "description": "unique per event; a re-announcement of the same fact keeps it, and "
                       "consumers dedupe on it"})
    type = fields.String(required=True, metadata={"description": "the event type"})
    source = fields.String(required=True, metadata={"description": "the publishing service"})
    occurred_at = IsoTime(required=True, metadata={"description": "when it happened"})
    data = fields.Dict(required=True, metadata={"description": "the event's own fields"})


ENVELOPE = Envelope()


# --- the registry -------------------------------------------------------------------------

_REGISTRY = None


def registry():
    """{(source, event type): schema instance} of every event the platform publishes."""
    global _REGISTRY
    if _REGISTRY is None:
        found = {}
        for source in SOURCES:
            module = importlib.import_module(f"contracts.{source}")
            for event_type, schema in module.EVENTS.items():
                found[(source, event_type)] = schema()
        _REGISTRY = found
    return _REGISTRY


def schema_for(source, event_type):
    return registry().get((source, event_type))


def wire_fields(schema):
    """{the key on the wire: field} of a schema (`from` is the field `from_`)."""
    return {field.data_key or name: field for name, field in schema.fields.items()}


def _messages(error):
    return "; ".join(f"{k}: {v}" for k, v in sorted(_flat(error.normalized_messages())))


def _flat(messages, prefix=""):
    for key, value in messages.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flat(value, f"{path}.")
        else:
            yield path, " ".join(value) if isinstance(value, list) else value


# --- producers ----------------------------------------------------------------------------

def dump_data(source, event_type, data):
    """An event's `data` checked and dumped through its schema; raises EventContractError."""
    schema = schema_for(source, event_type)
    if schema is None:
        raise EventContractError(f"{source}.{event_type} has no schema in contracts/{source}.py")
    if not isinstance(data, dict):
        raise EventContractError(f"{source}.{event_type}: data is not an object")
    by_key = wire_fields(schema)
    undeclared = sorted(set(data) - set(by_key))
    if undeclared:
        raise EventContractError(f"{source}.{event_type}: fields not in its schema: "
                                 f"{', '.join(undeclared)}")
    # validated as a consumer will load it: what goes out is what consumers accept
    errors = schema.validate(_as_json(by_key, data))
    if errors:
        raise EventContractError(f"{source}.{event_type}: "
                                 f"{_messages(ValidationError(errors))}")
    return schema.dump(data)


def _as_json(by_key, data):
    """Datetimes a producer hands over as such are checked as the ISO strings they become."""
    return {k: (to_iso(v) if isinstance(by_key[k], IsoTime) and v is not None
                and not isinstance(v, str) else v) for k, v in data.items()}


def dump_event(source, event_type, body):
    """The envelope as it goes on the wire, its `data` dumped through the event's schema.
    Raises EventContractError (a programming error) for an event its contract refuses."""
    errors = ENVELOPE.validate(body) if isinstance(body, dict) else {"_schema": ["not an object"]}
    if errors:
        raise EventContractError(f"{source}.{event_type}: envelope: "
                                 f"{_messages(ValidationError(errors))}")
    if body["source"] != source or body["type"] != event_type:
        raise EventContractError(f"{source}.{event_type}: the envelope says "
                                 f"{body['source']}.{body['type']}")
    return {**body, "data": dump_data(source, event_type, body["data"])}


# --- consumers ----------------------------------------------------------------------------

def load_event(source, event_type, body):
    """The envelope as a consumer sees it, its `data` loaded through the event's schema
    (unknown fields kept). `source` is the exchange it came from, `event_type` what the
    handler subscribed to (a handler bound to several types names no single one: then the
    envelope's type decides). Raises EventRejected with what is wrong."""
    if not isinstance(body, dict):
        raise EventRejected("the body is not a JSON object")
    try:
        envelope = ENVELOPE.load(body)
    except ValidationError as error:
        raise EventRejected(f"envelope: {_messages(error)}")
    kind = envelope["type"]
    if kind != event_type and (source, event_type) in registry():
        raise EventRejected(f"a {kind} event on the {event_type} routing key")
    schema = schema_for(source, kind)
    if schema is None:
        raise EventRejected(f"{source}.{kind} has no schema")
    try:
        data = schema.load(envelope["data"])
    except ValidationError as error:
        raise EventRejected(f"{source}.{kind} {envelope['event_id']}: {_messages(error)}")
    return {**envelope, "data": data}
