"""marshmallow building blocks every service's schemas share."""
import re
from zoneinfo import available_timezones

from marshmallow import Schema, ValidationError, fields, validate

from crm_common.timeutil import as_utc, to_iso

# Python's whitespace (str.isspace, what strip() removes) as a character class body: patterns
# that go into the document spell it out, since \s and \d differ between Python and ECMA
WHITESPACE = r"\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# a MIME type with its parameters as one header line carries it (ASCII classes: \w is
# Unicode in Python, ASCII in ECMA); unanchored, for Pattern and for fullmatch alike
MIME_TYPE = (r'[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+'
             r'([ \t]*;[ \t]*[A-Za-z0-9_.+-]+=("[A-Za-z0-9_ .+-]*"|[A-Za-z0-9_.+-]+))*')


class Pattern(validate.Regexp):
    """validate.Regexp whose `$` ends the string, as the document's pattern does (ECMA-262):
    Python's `$` also matches before a final line break, so "abc\n" passed a pattern the
    document says it fails. The document keeps the pattern as written (`regex.pattern`)."""

    def __init__(self, regex, flags=0, error=None):
        super().__init__(regex, flags, error=error)
        self.strict = re.compile(re.sub(r"(?<!\\)\$", r"\\Z", self.regex.pattern), flags)

    def __call__(self, value):
        if self.strict.match(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# a key of a stored object: BSON cannot hold NUL in one (the driver refuses the document)
STORED_KEY = Pattern(r"^[^\x00]*$", error="A key cannot hold a NUL character.")
_CUSTOM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_CUSTOM_KEYS = 100
MAX_CUSTOM_TEXT = 2000


class UtcDateTime(fields.DateTime):
    """ISO 8601 in and out; a value without an offset is taken as UTC; out always ends in Z.
    In: years 1900-2999 (dates near year 1 or 9999 overflow the arithmetic done on them)."""

    default_error_messages = {"range": "Must be between 1900-01-01 and 2999-12-31 (UTC)."}

    def __init__(self, *args, metadata=None, **kwargs):
        # the year range, in the document too (a date-time format cannot bound it)
        super().__init__(*args, metadata={"pattern": r"^(19|2[0-9])[0-9][0-9]-", **(metadata or {})},
                         **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            value = as_utc(super()._deserialize(value, attr, data, **kwargs))
        except OverflowError:
            raise self.make_error("range")
        if not 1900 <= value.year <= 2999:
            raise self.make_error("range")
        return value

    def _serialize(self, value, attr, obj, **kwargs):
        return to_iso(value)


# a calendar date's year: 0001-9999, what Python's date holds; JSON Schema's `date` format
# (RFC 3339 full-date) admits year 0000, so the document says it with this pattern too
DATE_PATTERN = r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-"


class Date(fields.Date):
    """A calendar date YYYY-MM-DD, years 0001-9999 (in the document too: DATE_PATTERN)."""

    default_error_messages = {"invalid": "Not a valid date (YYYY-MM-DD, years 0001-9999)."}

    def __init__(self, *args, metadata=None, **kwargs):
        super().__init__(*args, metadata={"pattern": DATE_PATTERN, **(metadata or {})}, **kwargs)


class UserId(fields.String):
    """The id of a user a write names (an owner, assignee, agent, target's person): the
    gateway refuses one that is not an active user of its own, before any RPC
    (gateway/user_refs.py). Filters that name a user stay plain strings."""


class CustomFields(fields.Dict):
    """A flat JSON object of custom values: text, number, boolean, null, a list of text, or
    money {"amount", "currency"} (typed fields: crm_common/custom_fields.py).
    Keys are identifiers (no `$` or `.`, so they are safe as Mongo field names)."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(value) > MAX_CUSTOM_KEYS:
            raise ValidationError(f"At most {MAX_CUSTOM_KEYS} custom fields.")
        errors = {}
        for key, item in value.items():
            if not _CUSTOM_KEY.match(key):
                errors[key] = ["Key must be a letter or _ then letters, digits or _ (max 64)."]
            elif not _valid_custom_value(item):
                errors[key] = ["Value must be text, number, boolean, null, a list of text or "
                               "money {amount, currency}."]
        if errors:
            raise ValidationError(errors)
        return value


def _valid_custom_value(item):
    if item is None or isinstance(item, (bool, int, float)):
        return True
    if isinstance(item, str):
        return len(item) <= MAX_CUSTOM_TEXT
    if isinstance(item, list):
        return len(item) <= 100 and all(isinstance(x, str) and len(x) <= 200 for x in item)
    if isinstance(item, dict):  # money (a typed custom field): minor units + ISO currency
        amount, currency = item.get("amount"), item.get("currency")
        return (set(item) == {"amount", "currency"} and isinstance(amount, int)
                and not isinstance(amount, bool) and isinstance(currency, str)
                and len(currency) == 3)
    return False


def tags_field():
    return fields.List(fields.String(validate=validate.Length(1, 50)),
                       validate=validate.Length(max=50))


# what crm_common.cursors.sign_token makes: urlsafe base64 (unpadded) `.` urlsafe base64
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,480}\.[A-Za-z0-9_-]{1,40}$"


def cursor_field():
    """`?cursor=`: opaque, the `next_cursor` of the previous page, signed by the server (one
    that matches the pattern but was not made by this list is still a 422)."""
    return fields.String(validate=[validate.Length(max=500), Pattern(CURSOR_PATTERN)],
                         metadata={"description": "Opaque: the previous page's next_cursor"})


TIME_ZONES = tuple(sorted(available_timezones()))


def timezone_field(**kwargs):
    """An IANA time-zone name (the document lists them all)."""
    return fields.String(validate=validate.OneOf(
        TIME_ZONES, error="Unknown time zone (use an IANA name such as Europe/Rome)."),
        metadata={"description": "IANA time-zone name, e.g. Europe/Rome"}, **kwargs)


def list_limit_field():
    return fields.Integer(load_default=50, validate=validate.Range(1, 500))


class PageQuery(Schema):
    """What every list accepts: keyset cursor, page size, sort and an optional total."""
    limit = list_limit_field()
    cursor = cursor_field()
    sort = fields.String(validate=validate.Length(max=40))
    include_total = fields.Boolean(load_default=False)


def sort_field(*names):
    """`?sort=` of a list that sorts by these fields (`-` for descending)."""
    return fields.String(validate=validate.OneOf(
        [v for n in names for v in (n, "-" + n)], error="Sort by one of {choices}."))


class PageOf(Schema):
    next_cursor = fields.String(allow_none=True)
    total = fields.Integer()


def with_every_key(schema, out, doc_id, empty_dicts=False):
    """Every documented key is present in every answer: an unset list is [], an unset dict
    {} when `empty_dicts` else null, anything else null; and the record's `id`."""
    for name, field in schema.fields.items():
        if name not in out:
            if isinstance(field, fields.List):
                out[name] = []
            elif empty_dicts and isinstance(field, fields.Dict):
                out[name] = {}
            else:
                out[name] = None
    out["id"] = doc_id
    return out
