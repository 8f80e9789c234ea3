"""Text keys: lower-case, accents folded, split on anything that is not a letter/digit."""
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
