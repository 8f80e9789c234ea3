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


def prefix_range(prefix):
    """An index range that matches every string starting with `prefix`."""
    return {"$gte": prefix, "$lt": prefix + "\U0010ffff"}
