"""The search API, one source: the search service validates with these, the gateway
validates the same way before calling and generates the OpenAPI document from them.

The search service owns no record: it answers from an index of the records other services
own (contacts, companies, deals, tasks, calls, notes), fed by their events. Owners give it their
records through one RPC each, `search_records(kind, ids=None, after=None, limit, since=None,
until=None, cursor=None)` -> `RecordsPage`: the records as their API dumps them plus `deleted`
and `version`; by `ids`, or those whose window time (contacts, companies, deals, notes,
messages: `updated_at`; tasks: `created_at`; calls: `started_at`; purchases: their date) lies
in [since, until), paged by `cursor`, each with it as `window_at` (how a rebuild reads every
record: crm_common/changes.py), or (slow on the embedded database) the next by `_id` after
`after`."""
from marshmallow import Schema, ValidationError, fields, validate, validates

from crm_common.fields import Pattern

TYPES = ("contact", "company", "deal", "task", "call", "note")
# a query longer than this is cut (never refused): what is past it cannot change the ranking
MAX_QUERY_CHARS = 200
MAX_LIMIT = 50


def parse_types(text):
    """"contact,deal" -> ("contact", "deal"); empty -> every type. Raises ValueError."""
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    unknown = sorted({t for t in names if t not in TYPES})
    if unknown:
        raise ValueError(f"Unknown types: {', '.join(unknown)} (known: {', '.join(TYPES)}).")
    return tuple(dict.fromkeys(names)) or TYPES


class SearchQuery(Schema):
    q = fields.String(required=True, validate=validate.Length(min=1), metadata={
        "description": "what the user typed: any words of names, emails, titles, notes, "
                       "tags; any 4+ digits of a phone number in any typed form. Typos "
                       f"and a word being typed are allowed; only the first {MAX_QUERY_CHARS} "
                       "characters count, and query syntax has no meaning (it is text)"})
    types = fields.String(validate=[validate.Length(max=200), Pattern(
        rf"^ *(({'|'.join(TYPES)}) *)?(, *(({'|'.join(TYPES)}) *)?)*$",
        error="Comma-separated, of: " + ", ".join(TYPES) + ".")], metadata={
        "description": f"comma-separated, of: {', '.join(TYPES)} (default: all)"})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, MAX_LIMIT))

    @validates("types")
    def known_types(self, value, **kwargs):
        try:
            parse_types(value)
        except ValueError as exc:
            raise ValidationError(str(exc))


class Highlight(Schema):
    field = fields.String(metadata={"description": "title, subtitle, email or phone"})
    text = fields.String(metadata={"description": "that field's text, as stored"})
    ranges = fields.List(fields.List(fields.Integer()), metadata={
        "description": "[start, end) character offsets in `text` of what matched"})


class SearchHit(Schema):
    type = fields.String(metadata={"description": ", ".join(TYPES)})
    id = fields.String()
    title = fields.String()
    subtitle = fields.String(allow_none=True)
    score = fields.Float()
    highlight = fields.Nested(Highlight, allow_none=True)
    record = fields.Dict(metadata={"description": 'a note\'s: the record it is on {"type", "id"}'})


class SearchResults(Schema):
    items = fields.List(fields.Nested(SearchHit), metadata={
        "description": "best first, over every type asked for"})
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "how many records of each type match (those the caller may see)"})


class IndexState(Schema):
    """`health` of a search replica: the index and its rebuild."""
    service = fields.String()
    ok = fields.Boolean()
    replica = fields.String()
    state = fields.String(metadata={"description": "ready | rebuilding"})
    documents = fields.Integer()
    schema_version = fields.Integer()
    rebuild = fields.Dict(allow_none=True, metadata={
        "description": "the last or running rebuild: {started_at, finished_at, done: {type: n}}"})


class RecordsPage(Schema):
    """What an owner's `search_records` answers."""
    items = fields.List(fields.Dict(), metadata={
        "description": "records as the owner's API dumps them, plus `deleted` (bool) and "
                       "`version` (int or null)"})
    next_after = fields.String(allow_none=True, metadata={
        "description": "the `after` of the next page by id; null on the last one"})
    next_cursor = fields.String(allow_none=True, metadata={
        "description": "with `since`: the `cursor` of the next page of the same window; null "
                       "on its last one"})
