"""Search tokens: lower-case, accents folded, split on anything that is not a letter/digit."""
import re
import unicodedata

_SPLIT = re.compile(r"[^\w]+", re.UNICODE)


def fold(text):
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokens(*texts):
    out = set()
    for text in texts:
        for token in _SPLIT.split(fold(text)):
            if token and token != "_":
                out.add(token)
    return out


MAX_PREFIX = 24


def prefixes(words):
    """Every prefix of every word (up to MAX_PREFIX characters), stored in an indexed array
    so "starts with" is an equality match. A range on an array field would be wrong: Mongo
    lets two different elements satisfy $gte and $lt; $elemMatch is exact but SecantusDB
    does not use an index for it."""
    out = set()
    for word in words:
        for end in range(1, min(len(word), MAX_PREFIX) + 1):
            out.add(word[:end])
    return sorted(out)


def prefix_query(field, text):
    """Documents whose `field` (built with `prefixes`) has a word starting with each word of
    `text`; a word longer than MAX_PREFIX is cut (the match is then a little looser)."""
    words = sorted({w[:MAX_PREFIX] for w in tokens(text)})
    if not words:
        return {"_id": {"$in": []}}  # only punctuation: matches nothing
    return {field: words[0]} if len(words) == 1 else {field: {"$all": words}}
