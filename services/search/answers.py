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


def matched_terms(parsed, word):
    """The query words a shown word answers (exactly, as a typed prefix, with a typo)."""
    folded = fold(word)
    last = len(parsed.words) - 1
    found = set()
    for i, term in enumerate(parsed.words):
        typing = parsed.prefix and i == last
        distance = fuzzy_distance(term)
        if (folded == term or (typing and len(term) >= 2 and folded.startswith(term))
                or (distance and (within(folded, term, distance)
                                  or (typing and within(folded[:len(term)], term, distance))))):
            found.add(term)
    return found


def text_ranges(parsed, text):
    """([start, end) of each matching word, how many of the query's words they answer)."""
    ranges, terms = [], set()
    for m in _WORD.finditer(text):
        answered = matched_terms(parsed, m.group())
        if answered:
            ranges.append([m.start(), m.end()])
            terms |= answered
    return ranges, len(terms)


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
    """The shown field that answers most of the query (the whole email typed, else most
    query words, else a phone number), with the ranges that matched."""
    emails = card.get("emails") or []
    if parsed.email and parsed.email in emails:
        return {"field": "email", "text": parsed.email, "ranges": [[0, len(parsed.email)]]}
    best, best_count = None, 0
    fields = [("title", card.get("title")), ("subtitle", card.get("subtitle"))]
    for name, text in fields + [("email", e) for e in emails]:
        if text:
            ranges, count = text_ranges(parsed, text)
            if count > best_count:
                best, best_count = {"field": name, "text": text, "ranges": ranges}, count
    if best is not None and best_count == len(parsed.words):
        return best
    for text in card.get("phones") or []:
        ranges = phone_ranges(parsed, text or "")
        if ranges:
            return {"field": "phone", "text": text, "ranges": ranges}
    return best


def hit(parsed, score, found):
    card = found["card"]
    return {"type": found["type"], "id": found["id"], "title": card.get("title") or "",
            "subtitle": card.get("subtitle"), "score": round(float(score), 4),
            "highlight": highlight(parsed, card),
            **({"record": card["record"]} if card.get("record") else {})}
