"""Search results as the API gives them (contracts/search.py SearchHit): the record's card
(title, subtitle) and where the query matched, as character ranges of a shown field."""
import re

from services.search.documents import MIN_PHONE_DIGITS, fold
from services.search.query import fuzzy_distance

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def within(a, b, limit):
    """Whether the edit distance of a and b is at most `limit` (small words only)."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


def word_matches(parsed, word):
    folded = fold(word)
    last = len(parsed.words) - 1
    for i, term in enumerate(parsed.words):
        typing = parsed.prefix and i == last
        if folded == term or (typing and len(term) >= 2 and folded.startswith(term)):
            return True
        distance = fuzzy_distance(term)
        if distance and (within(folded, term, distance)
                         or (typing and within(folded[:len(term)], term, distance))):
            return True
    return False


def text_ranges(parsed, text):
    return [[m.start(), m.end()] for m in _WORD.finditer(text) if word_matches(parsed, m.group())]


def phone_ranges(parsed, text):
    """Where a typed number (or a 4+ digit word) sits in a shown phone number."""
    positions = [i for i, c in enumerate(text) if c.isdigit()]
    digits = "".join(text[i] for i in positions)
    wanted = [w for w in parsed.words if w.isdigit() and len(w) >= MIN_PHONE_DIGITS]
    wanted += parsed.numbers
    for fragment in sorted(set(wanted), key=len, reverse=True):
        start = digits.find(fragment)
        if start >= 0:
            return [[positions[start], positions[start + len(fragment) - 1] + 1]]
    return []


def highlight(parsed, card):
    """The first shown field where the query matched, with the ranges that matched."""
    fields = [("title", card.get("title")), ("subtitle", card.get("subtitle"))]
    fields += [("email", e) for e in card.get("emails") or []]
    for name, text in fields:
        if text:
            ranges = text_ranges(parsed, text)
            if ranges:
                return {"field": name, "text": text, "ranges": ranges}
    for text in card.get("phones") or []:
        ranges = phone_ranges(parsed, text or "")
        if ranges:
            return {"field": "phone", "text": text, "ranges": ranges}
    return None


def hit(parsed, score, found):
    card = found["card"]
    return {"type": found["type"], "id": found["id"], "title": card.get("title") or "",
            "subtitle": card.get("subtitle"), "score": round(float(score), 4),
            "highlight": highlight(parsed, card)}
