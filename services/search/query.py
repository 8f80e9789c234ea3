"""A user's text as an index query, built term by term: nothing the user types is ever
parsed as query syntax (`*`, `"`, `:`, `(`, regex metacharacters are just characters that
are not letters or digits), and the work is bounded (at most MAX_WORDS words of at most
MAX_WORD characters, from the first MAX_QUERY_CHARS characters).

Each word must match (in any field); a word matches
- exactly, in the record's names (ranked first) or its other words;
- as the start of a word, for the last word while it is being typed;
- with a typo: 1 edit from 4 letters on, 2 from 8 (ranked below exact matches);
- for 4+ digits: any part of a phone number.
A text that reads as a phone number ("+39 333 123 4567", "0039 333-1234") also matches
the number as a whole, in its E.164, national and typed forms.
The caller's visibility and the types asked for are filters of the same query, and so are
a custom role's hidden fields (`access`): for a type with some, each word must match a
field the caller reads (readable_query: exactly or as typed, by its guarded
`<field>:<word>` terms; typo tolerance only in names the caller reads)."""
from dataclasses import dataclass, field

import tantivy

from contracts.search import MAX_QUERY_CHARS
from crm_common.phones import looks_like_phone, normalize_phone
from services.search.documents import (MAX_WORD, MIN_PHONE_DIGITS, SHARED, digits_of,
                                       readable_tags, words)

MAX_WORDS = 8
MAX_PHONE_DIGITS = 20
Occur = tantivy.Occur


@dataclass
class Parsed:
    words: list = field(default_factory=list)
    prefix: bool = False              # the last word is still being typed
    numbers: list = field(default_factory=list)   # digit strings the whole text may be
    email: str = None

    @property
    def empty(self):
        return not self.words and not self.numbers and not self.email


def parse(text, region=None):
    text = str(text or "")[:MAX_QUERY_CHARS]
    parsed = Parsed(words=[w[:MAX_WORD] for w in words(text)][:MAX_WORDS])
    stripped = text.rstrip()
    parsed.prefix = bool(parsed.words) and stripped == text and stripped[-1:].isalnum()
    if "@" in text and len(text.split()) == 1:
        parsed.email = text.strip().lower()
    if looks_like_phone(text):
        parsed.numbers = phone_numbers(text, region)
    return parsed


def phone_numbers(text, region):
    """The digit strings a typed phone number may be stored as: as typed, read as
    international (00 / +), as E.164 and its national digits, without a trunk 0."""
    typed = digits_of(text)
    found = {typed}
    if typed.startswith("00"):
        found.add(typed[2:])
    if typed.startswith("0"):
        found.add(typed.lstrip("0"))
    parsed = normalize_phone(text, region)
    if parsed.get("e164"):
        found.add(digits_of(parsed["e164"]))
        found.add(parsed["national"])
    return sorted(d[:MAX_PHONE_DIGITS] for d in found if len(d) >= MIN_PHONE_DIGITS)


def fuzzy_distance(word):
    if word.isdigit():
        return 0
    return 2 if len(word) >= 8 else 1 if len(word) >= 4 else 0


def _boost(query, factor):
    return tantivy.Query.boost_query(query, factor)


ALL_READ = {"names": True, "tags": None, "digits": True, "emails": True}


def word_query(schema, word, typing, read=ALL_READ):
    """What one word may match, as alternatives (their best ranks the record). `read`
    (documents.readable_tags): the fields it may match in; `tags` None = all `words`."""
    q = tantivy.Query
    options = []
    distance = fuzzy_distance(word)
    fields = ["names"] if read["names"] else []
    if read["tags"] is None:
        fields.append("words")
    else:
        shown = [f"{tag}:{word}" for tag in read["tags"]]
        options.append(_boost(q.term_set_query(schema, "guarded", shown), 2.0))
        if typing and len(word) >= 2:
            options += [_boost(q.fuzzy_term_query(schema, "guarded", term, distance=0,
                                                  prefix=True), 1.5) for term in shown]
    boosts = {"names": (4.0, 3.0, 1.0), "words": (2.0, 1.5, 0.5)}
    for name in fields:
        exact, typed, typo = boosts[name]
        options.append(_boost(q.term_query(schema, name, word), exact))
        if typing and len(word) >= 2:
            options.append(_boost(q.fuzzy_term_query(schema, name, word, distance=0,
                                                     prefix=True), typed))
        if distance:
            options.append(_boost(q.fuzzy_term_query(schema, name, word, distance=distance,
                                                     prefix=typing), typo))
    if read["digits"] and word.isdigit() and len(word) >= MIN_PHONE_DIGITS:
        options.append(_boost(q.term_query(schema, "digits", word[:MAX_PHONE_DIGITS]), 3.0))
    if not options:
        return q.empty_query()
    return q.boolean_query([(Occur.Should, option) for option in options])


def readable_query(schema, parsed, kind, access):
    """text_query for a type whose hidden fields `access[kind]` ({"hidden": [...],
    "custom_keys": [...]}) must not make a record match; text_query when it has none."""
    held = (access or {}).get(kind)
    if not held:
        return text_query(schema, parsed)
    return text_query(schema, parsed, readable_tags(kind, held.get("hidden"),
                                                    held.get("custom_keys")))


def text_query(schema, parsed, read=ALL_READ):
    """The relevance part: None when the text holds nothing to search for."""
    q = tantivy.Query
    alternatives = []
    if parsed.words:
        last = len(parsed.words) - 1
        every_word = [(Occur.Must, word_query(schema, word, parsed.prefix and i == last, read))
                      for i, word in enumerate(parsed.words)]
        alternatives.append(q.boolean_query(every_word))
    if parsed.numbers and read["digits"]:
        alternatives.append(_boost(q.term_set_query(schema, "digits", parsed.numbers), 5.0))
    if parsed.email and read["emails"]:
        alternatives.append(_boost(q.term_query(schema, "emails", parsed.email), 8.0))
    if not alternatives:
        return None
    return q.boolean_query([(Occur.Should, a) for a in alternatives])


def filters(schema, types=None, visible_to=None, live=True):
    """Live records (or all, deleted ones too) of these types the caller may see.
    `visible_to`: None = everything (admin, or a service acting on its own), else the
    people whose records the caller sees."""
    q = tantivy.Query
    out = [(Occur.Must, q.term_query(schema, "live", 1))] if live else []
    if types:
        out.append((Occur.Must, q.term_set_query(schema, "type", list(types))))
    if visible_to is not None:
        out.append((Occur.Must, q.term_set_query(schema, "visible_to",
                                                 sorted({*visible_to, SHARED} - {None}))))
    return out


def search_query(schema, parsed, types=None, visible_to=None, access=None):
    """`access`: {type: {"hidden", "custom_keys"}} of the types whose hidden fields must
    not make a record match (a custom role's field grants), else None."""
    gated = [t for t in (types or ()) if (access or {}).get(t)]
    if not gated:
        relevance = text_query(schema, parsed)
        if relevance is None:
            return None
        return tantivy.Query.boolean_query([(Occur.Must, relevance),
                                            *filters(schema, types, visible_to)])
    q = tantivy.Query
    groups = [(tuple(t for t in types if t not in gated), None)] + [((t,), t) for t in gated]
    per_type = []
    for kinds, kind in groups:
        relevance = readable_query(schema, parsed, kind, access) if kind else \
            text_query(schema, parsed)
        if kinds and relevance is not None:
            per_type.append((Occur.Should, q.boolean_query([
                (Occur.Must, q.term_set_query(schema, "type", list(kinds))),
                (Occur.Must, relevance)])))
    if not per_type:
        return None
    return q.boolean_query([(Occur.Must, q.boolean_query(per_type)),
                            *filters(schema, types, visible_to)])
