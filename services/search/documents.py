"""What the index holds of each record: its owner's record turned into search terms.

Every record becomes one `Entry`:
- `names`: the words of what the record is called (a person's name, a company's, a deal's
  or task's title), ranked above
- `words`: every other word worth finding it by (emails, company, position, tags, notes,
  and for a deal its contact's and company's names and emails);
- `digits`: every run of 4+ consecutive digits of its phone numbers, in E.164 and
  national form, so any fragment of a number typed in any form finds it;
- `emails`: its emails whole; `visible_to`: who may see it (SHARED: everyone);
- `filters`: `field=value` terms lists filter on (a contact's products bought: the sales
  service's purchases_recorded, feed.buy); numbers lists sort on;
- `numbers`: the custom fields' values ranges compare and lists sort on ({key: number}:
  numbers, money amounts, dates and date-times in microseconds; a text's first bytes as
  `<key>~0`..`<key>~3`, sort_numbers);
- `guarded`: the same words again as `<field>:<word>` (`custom:<word>` and
  `custom.<key>:<word>` for custom values), so a caller whose role hides some fields
  (gateway/field_access.py) matches only by the fields it reads (query.readable_query).
  A deal is also found by its amount ("1234.56", "1,234.56") and every record by the text
  of its custom fields.
Words are folded (accents off, case folded; Cyrillic, Hebrew, Greek... kept as letters)
and split on anything that is not a letter or a digit, the same way queries are."""
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from crm_common.text import fold as text_fold
from crm_common.timeutil import parse_iso

SHARED = "*"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_WORD = 40           # longer words are cut (a query word is cut the same way)
MIN_PHONE_DIGITS = 4
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DIGIT = re.compile(r"\d")

# the fields lists filter on, per type ("tags" gives one "tag=<t>" term per tag)
FILTERS = {
    "contact": ("owner_id", "company_id", "source", "status", "tags", "import_id"),  # + bought
    "company": ("owner_id", "tags"),
    "deal": ("owner_id", "pipeline_id", "stage_id", "status", "contact_id", "company_id",
             "source", "currency"),
    "task": ("assignee_id", "creator_id", "status", "kind", "contact_id", "deal_id"),
    "call": ("agent_id", "owner_id", "contact_id", "direction", "outcome", "missed",
             "called_back", "number"),
    "note": ("record_type", "author_id"),
}
# who may see a record (crm_common.context.Caller.owner_filter, as its owner applies it)
PEOPLE = {"contact": ("owner_id",), "company": (), "deal": ("owner_id",),
          "task": ("assignee_id", "creator_id"), "call": ("agent_id", "owner_id"),
          "note": ()}   # a note: whoever sees its record (_Describe.note)
SHARED_WHEN_UNOWNED = {"contact", "company"}
# the date of each type that lists sort on besides created/updated
WHEN = {"contact": "last_contacted_at", "company": None, "deal": "expected_close_date",
        "task": "due_at", "call": "started_at", "note": None}
# a task without a due date sorts after every dated one (as the tasks service's sort_due)
NO_DUE = {"task": 253402214400 * 1_000_000}   # 9999-12-31T00:00:00Z in microseconds


# Latin letters that carry their mark inside (no decomposition): as people type them
_LETTERS = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "ŀ": "l",
                          "æ": "ae", "œ": "oe", "þ": "th"})


def fold(text):
    """Accents off (NFKD, combining marks dropped), case folded; other scripts kept."""
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().translate(_LETTERS)


def words(*texts):
    """The folded words of texts, in order, each once."""
    out = {}
    for text in texts:
        for word in _WORD.findall(fold(text)):
            out.setdefault(word[:MAX_WORD], None)
    return list(out)


def digits_of(text):
    return "".join(_DIGIT.findall(str(text or "")))


def digit_grams(numbers):
    """Every run of MIN_PHONE_DIGITS or more consecutive digits of each number."""
    out = set()
    for number in numbers:
        digits = digits_of(number)
        for start in range(len(digits)):
            for end in range(start + MIN_PHONE_DIGITS, len(digits) + 1):
                out.add(digits[start:end])
    return out


def phone_forms(phone):
    """The forms of a stored phone ({"e164", "raw"} or a string): E.164 (whose digits end
    with the national number, so its digit runs hold every national fragment too) and the
    raw input (a trunk 0, or a number that could not be parsed)."""
    if isinstance(phone, str):
        phone = {"raw": phone}
    if not isinstance(phone, dict):
        return []
    return [p for p in (phone.get("e164"), phone.get("raw"), phone.get("number")) if p]


def micros(value):
    """An ISO time (or date) as integer microseconds since the epoch; 0 when absent."""
    if not value:
        return 0
    try:
        when = parse_iso(value) if isinstance(value, str) else value
        if not isinstance(when, datetime):  # a date: its midnight, UTC
            when = datetime(when.year, when.month, when.day)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return (when - EPOCH) // timedelta(microseconds=1)   # exact (no float)
    except (TypeError, ValueError, AttributeError, OverflowError):
        return 0


def from_micros(value):
    return EPOCH + timedelta(microseconds=value)


# the fields (field-grant names, contracts/roles.py) whose words find a record: its name
# fields (`names`), the others (`words`), the one its digit runs and whole emails come from;
# a deal's contact's and company's words under `contact.<field>` / `company.<field>`
SEARCHED = {
    "contact": {"names": ("first_name", "last_name"), "digits": "phones", "emails": "emails",
                "words": ("emails", "company_name", "position", "tags", "source", "messengers")},
    "company": {"names": ("name",), "digits": "phones", "emails": "emails",
                "words": ("domain", "industry", "emails", "tags", "notes")},
    "deal": {"names": ("title",), "digits": "contact.phones", "emails": "contact.emails",
             "words": ("contact.first_name", "contact.last_name", "contact.emails",
                       "contact.company_name", "company.name", "notes", "source",
                       "lost_reason", "amount")},
    "task": {"names": ("title",), "digits": None, "emails": None,
             "words": ("description", "result", "kind")},
}
TEXT_SORT_NUMBERS = 4   # a text custom field sorts by its first 4 x 7 bytes (then the id)


def readable_tags(kind, hidden, custom_keys=None):
    """What of a `kind`'s words a caller may match by, whose role hides `hidden` (field
    grant names; `contact.<field>` / `company.<field>` for a deal's related words, `contact`
    / `company` for all of them; `custom` or `custom.<key>`): {"names": bool, "tags": [the
    guarded prefixes], "digits": bool, "emails": bool}. `custom_keys`: the kind's custom
    keys, needed when only some of them are hidden (else all custom words count or none)."""
    spec, hidden = SEARCHED[kind], set(hidden or ())

    def shown(name):
        head = name.split(".", 1)[0]
        return name not in hidden and not (name != head and head in hidden)

    tags = [n for n in spec["names"] + spec["words"] if shown(n)]
    if "custom" not in hidden:
        partial = {n for n in hidden if n.startswith("custom.")}
        tags += ([f"custom.{k}" for k in custom_keys or () if f"custom.{k}" not in partial]
                 if partial else ["custom"])
    return {"names": all(shown(n) for n in spec["names"]), "tags": tags,
            "digits": bool(spec["digits"]) and shown(spec["digits"]),
            "emails": bool(spec["emails"]) and shown(spec["emails"])}


def custom_texts(record):
    """{key: [texts]} of a record's custom values a search finds it by (texts, selects,
    numbers, money amounts, dates; not booleans)."""
    out = {}
    for key, value in (record.get("custom") or {}).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                item = item.get("amount")
            if isinstance(item, bool) or item in (None, ""):
                continue
            if isinstance(item, (int, float)):
                item = str(int(item)) if float(item).is_integer() else repr(float(item))
            if isinstance(item, str):
                out.setdefault(key, []).append(item)
    return out


def amount_texts(amount):
    """A deal's amount (minor units) as people type it: "1234.56" and "1,234.56"."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        return []
    return [f"{amount / 100:.2f}", f"{amount / 100:,.2f}"]


def sort_numbers(key, value):
    """A text custom value's place in a sort: its first bytes (UTF-8, as MongoDB orders
    text) as TEXT_SORT_NUMBERS numbers of 7 bytes under `<key>~0`..; {} for other values."""
    if not isinstance(value, str):
        return {}
    raw = value.encode()[:7 * TEXT_SORT_NUMBERS].ljust(7 * TEXT_SORT_NUMBERS, b"\0")
    return {f"{key}~{i}": int.from_bytes(raw[7 * i:7 * i + 7], "big")
            for i in range(TEXT_SORT_NUMBERS)}


@dataclass
class Entry:
    type: str
    id: str
    live: bool
    updated: int                       # microseconds: the version guard, and a sort
    version: int
    created: int = 0
    when: int = 0
    closed: int = 0                    # deals: closed_at (microseconds; 0 while open)
    names: list = field(default_factory=list)
    words: list = field(default_factory=list)
    digits: set = field(default_factory=set)
    emails: list = field(default_factory=list)
    visible_to: list = field(default_factory=list)
    filters: list = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    guarded: list = field(default_factory=list)
    card: dict = field(default_factory=dict)
    sort_name: str = ""                # contacts: as the contacts service sorts by name

    @property
    def key(self):
        return f"{self.type}:{self.id}"

    @property
    def stamp(self):
        """What orders two states of one record: the later write wins."""
        return (self.updated, self.version)


def filter_term(name, value):
    """The `field=value` term of a list filter (tags folded; booleans true/false)."""
    if name == "tag":
        return f"tag={fold(value)}"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"{name}={value}"


def bought_terms(purchases):
    """A contact's purchases ({product id: ["YYYY-MM-DD", ...]}, kept by feed.buy) as the
    terms of the "bought product X (in a period)" filter: `bought=<id>`, and one per
    year, month and day bought (`bought=<id>@2026`, `@2026-03`, `@2026-03-15`)."""
    out = set()
    for product_id, days in (purchases or {}).items():
        out.add(filter_term("bought", product_id))
        for day in days:
            out |= {filter_term("bought", f"{product_id}@{day[:n]}") for n in (4, 7, 10)}
    return sorted(out)


def period_cover(low, high):
    """The fewest year, month and day prefixes ("2026", "2026-03", "2026-03-15") that cover
    the days low..high (dates, inclusive): at most ~80 for any period of the years bought in."""
    out, day = [], low
    while day <= high:
        year_end = date(day.year, 12, 31)
        month_end = (date(day.year + (day.month == 12), day.month % 12 + 1, 1) - timedelta(days=1))
        if (day.month, day.day) == (1, 1) and year_end <= high:
            out.append(f"{day.year:04d}")
            day = year_end + timedelta(days=1)
        elif day.day == 1 and month_end <= high:
            out.append(day.isoformat()[:7])
            day = month_end + timedelta(days=1)
        else:
            out.append(day.isoformat())
            day += timedelta(days=1)
    return out


def custom_term(key, value):
    """The `cf.<key>=value` term of a custom field's value (numbers and booleans in one
    form, so the text of a URL parameter finds them: custom_url_value)."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(int(value)) if float(value).is_integer() else repr(float(value))
    return f"cf.{key}={str(value).strip()}"


def custom_url_value(raw):
    """A `cf.<key>=` parameter's text as the value custom_term reads."""
    text = str(raw).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def custom_terms(record):
    """One term per custom field value (a list: each; money: its amount)."""
    out = []
    for key, value in (record.get("custom") or {}).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                item = item.get("amount")
            if isinstance(item, (str, int, float, bool)) and item != "":
                out.append(custom_term(key, item))
    return out


ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?$")


def range_number(value):
    """A custom value (or a range bound) as the number ranges compare, or None. Always a
    float: Tantivy keeps a JSON path's integers and floats in columns of their own type per
    segment, and a sort or range over a path typed differently in two segments skipped the
    records of one (5 and 12 stored as integers, -1.5 as a float)."""
    if isinstance(value, dict):
        value = value.get("amount")
    if isinstance(value, str) and ISO_DATE.match(value.strip()):
        value = micros(value.strip()) or None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) else None


def name_sort_key(record):
    """The contacts service's sort_name: "last first", accents off, case folded."""
    return text_fold(f"{record.get('last_name') or ''} {record.get('first_name') or ''}").strip()


def _emails(record):
    out = []
    for item in record.get("emails") or []:
        email = item.get("email") if isinstance(item, dict) else item
        if email:
            out.append(str(email).strip().lower())
    return out


def _phones(record):
    return [form for phone in record.get("phones") or [] for form in phone_forms(phone)]


def _display_phones(record):
    out = []
    for phone in record.get("phones") or []:
        forms = phone_forms(phone)
        if forms:
            out.append(forms[0])
    return out


def person_name(record):
    return " ".join(x for x in (record.get("first_name"), record.get("last_name")) if x).strip()


def _joined(*parts):
    return " · ".join(str(p) for p in parts if p not in (None, "")) or None


def describe(kind, record, related=None):
    """The Entry of an owner's record. `related`: {"contact": record, "company": record}
    whose names, emails and phones a deal is also found by, or a note's {"parent": the
    record it is on} (from this index)."""
    related = related or {}
    entry = Entry(type=kind, id=str(record["id"]), live=not record.get("deleted"),
                  updated=micros(record.get("updated_at")), version=int(record.get("version") or 0),
                  created=micros(record.get("created_at")),
                  when=micros(record.get(WHEN[kind])) if WHEN[kind] else 0,
                  closed=micros(record.get("closed_at")) if kind == "deal" else 0)
    if not entry.when:
        entry.when = NO_DUE.get(kind, 0)
    for name in FILTERS[kind]:
        value = record.get(name)
        if name == "tags":
            entry.filters += [filter_term("tag", t) for t in value or []]
        elif value not in (None, ""):
            entry.filters.append(filter_term(name, value))
    entry.filters += custom_terms(record)
    entry.numbers = {k: n for k, v in (record.get("custom") or {}).items()
                     if (n := range_number(v)) is not None}
    for key, value in (record.get("custom") or {}).items():
        if key not in entry.numbers:
            entry.numbers.update(sort_numbers(key, value))
    if kind == "contact":
        entry.filters += bought_terms(record.get("purchases"))
    people = [record.get(p) for p in PEOPLE[kind] if record.get(p)]
    entry.visible_to = sorted(set(people))
    if kind in SHARED_WHEN_UNOWNED and not people:
        entry.visible_to = [SHARED]
    getattr(_Describe, kind)(entry, record, related)
    if kind in SEARCHED:
        custom = custom_texts(record)
        entry.words = words(*entry.words, *(t for texts in custom.values() for t in texts))
        tokens = {}
        for key, texts in custom.items():
            for word in words(*texts):
                tokens[f"custom.{key}:{word}"] = tokens[f"custom:{word}"] = None
        entry.guarded = [*entry.guarded, *tokens]
    return entry


def _guard(entry, parts):
    """Adds the words of {field: [texts]} to the entry's guarded tokens."""
    entry.guarded += [f"{name}:{word}" for name, texts in parts.items()
                      for word in words(*texts)]


class _Describe:
    """One function per type: names, words, digits, emails and the card shown in results."""

    @staticmethod
    def contact(entry, record, related):
        name = person_name(record)
        emails, phones = _emails(record), _phones(record)
        entry.names = words(record.get("first_name"), record.get("last_name"))
        entry.sort_name = name_sort_key(record)
        parts = {"emails": emails, "company_name": [record.get("company_name")],
                 "position": [record.get("position")], "tags": record.get("tags") or [],
                 "source": [record.get("source")],
                 "messengers": [m.get("handle") for m in record.get("messengers") or []
                                if isinstance(m, dict)]}
        entry.words = words(*(t for texts in parts.values() for t in texts))
        _guard(entry, {"first_name": [record.get("first_name")],
                       "last_name": [record.get("last_name")], **parts})
        entry.digits = digit_grams(phones)
        entry.emails = emails
        entry.card = {"title": name or (emails[:1] or _display_phones(record)[:1] or ["?"])[0],
                      "subtitle": _joined(record.get("company_name"), record.get("position")),
                      "emails": emails, "phones": _display_phones(record)}

    @staticmethod
    def company(entry, record, related):
        emails = _emails(record)
        entry.names = words(record.get("name"))
        parts = {"domain": [record.get("domain")], "industry": [record.get("industry")],
                 "emails": emails, "tags": record.get("tags") or [],
                 "notes": [record.get("notes")]}
        entry.words = words(*(t for texts in parts.values() for t in texts))
        _guard(entry, {"name": [record.get("name")], **parts})
        entry.digits = digit_grams(_phones(record))
        entry.emails = emails
        entry.card = {"title": record.get("name") or "?",
                      "subtitle": _joined(record.get("industry"), record.get("domain")),
                      "emails": emails, "phones": _display_phones(record)}

    @staticmethod
    def deal(entry, record, related):
        contact = related.get("contact") or {}
        company = related.get("company") or {}
        contact_name = person_name(contact)
        emails = _emails(contact)
        entry.names = words(record.get("title"))
        amount = record.get("amount")
        parts = {"contact.first_name": [contact.get("first_name")],
                 "contact.last_name": [contact.get("last_name")], "contact.emails": emails,
                 "contact.company_name": [contact.get("company_name")],
                 "company.name": [company.get("name")], "notes": [record.get("notes")],
                 "source": [record.get("source")], "lost_reason": [record.get("lost_reason")],
                 "amount": amount_texts(amount)}
        entry.words = words(*(t for texts in parts.values() for t in texts))
        _guard(entry, {"title": [record.get("title")], **parts})
        entry.digits = digit_grams(_phones(contact))
        entry.emails = emails
        money = (f"{amount / 100:,.2f} {record.get('currency') or ''}".strip()
                 if isinstance(amount, int) else None)
        entry.card = {"title": record.get("title") or "?",
                      "subtitle": _joined(contact_name or company.get("name"), money,
                                          record.get("status")),
                      "emails": emails, "phones": _display_phones(contact)}

    @staticmethod
    def task(entry, record, related):
        entry.names = words(record.get("title"))
        parts = {"description": [record.get("description")], "result": [record.get("result")],
                 "kind": [record.get("kind")]}
        entry.words = words(*(t for texts in parts.values() for t in texts))
        _guard(entry, {"title": [record.get("title")], **parts})
        entry.card = {"title": record.get("title") or "?",
                      "subtitle": _joined(record.get("kind"), record.get("status"),
                                          (record.get("due_at") or "")[:16].replace("T", " ")),
                      "emails": [], "phones": []}

    @staticmethod
    def note(entry, record, related):
        """Found by its text, seen by whoever sees its record (while the index does not
        hold that record yet: admins only), gone with it."""
        parent, kind = related.get("parent"), record.get("record_type")
        if parent is not None and kind in PEOPLE:
            people = sorted({parent.get(p) for p in PEOPLE[kind] if parent.get(p)})
            entry.visible_to = people or ([SHARED] if kind in SHARED_WHEN_UNOWNED else [])
            entry.live = entry.live and not parent.get("deleted")
        entry.filters.append(filter_term("record", f"{kind}:{record.get('record_id')}"))
        text = " ".join(str(record.get("text") or "").split())
        entry.words = words(text)
        parent = parent or {}
        entry.card = {"title": text[:80] or "?",
                      "subtitle": parent.get("title") or parent.get("name")
                      or person_name(parent) or None,
                      "emails": [], "phones": [],
                      "record": {"type": kind, "id": record.get("record_id")}}

    @staticmethod
    def call(entry, record, related):
        numbers = [record.get("number")]
        for side in ("from", "to"):
            value = record.get(side)
            numbers += phone_forms(value) if isinstance(value, dict) else [value]
        numbers = [n for n in numbers if n]
        entry.names = words(record.get("contact_name"))
        entry.words = words(record.get("direction"), record.get("outcome"), record.get("provider"))
        entry.digits = digit_grams(numbers)
        shown = record.get("number") or (numbers[:1] or [None])[0]
        entry.card = {"title": record.get("contact_name") or shown or "call",
                      "subtitle": _joined(record.get("direction"), record.get("outcome"),
                                          (record.get("started_at") or "")[:16].replace("T", " ")),
                      "emails": [], "phones": [shown] if shown else []}
