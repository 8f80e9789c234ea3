"""Rich text limited to a safe subset, cleaned by nh3 (the Rust `ammonia` sanitizer): the
body is cleaned when written and again when read, so a stored body from before a change of
the allowed subset never reaches a client unsafe."""
import html
import re

import nh3

TAGS = {"p", "br", "b", "strong", "i", "em", "u", "s", "ul", "ol", "li", "blockquote",
        "code", "pre", "a"}
ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = {"http", "https", "mailto"}
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def clean(body):
    """The safe subset of `body`; scripts and styles are dropped with their content."""
    return nh3.clean(body or "", tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                     clean_content_tags={"script", "style"}, link_rel="noopener noreferrer")


def plain(body):
    """The text of a cleaned body, on one line (search, timeline, notices)."""
    text = _TAG.sub(" ", body or "")
    return _SPACE.sub(" ", html.unescape(text)).strip()


def excerpt(text, size=140):
    return text if len(text) <= size else text[: size - 1].rstrip() + "…"
