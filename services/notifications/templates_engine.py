"""Message templates: jinja2's SandboxedEnvironment (templates and configured strings cannot
reach Python internals), HTML autoescaped so names and notes from users cannot inject markup.

templates/<lang>/<kind>.txt defines blocks `subject`, `short` (SMS, Telegram title, inbox
title) and `text` (email text, Telegram, inbox body); templates/<lang>/layout.html wraps the
text for the HTML part of emails, or templates/<lang>/<kind>.html when the kind has one (the
report digest's tables). A missing language falls back to English."""
import logging
import os

from jinja2 import (ChainableUndefined, FileSystemLoader, TemplateError, TemplateNotFound,
                    select_autoescape)
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from contracts.notifications import DEFAULT_LANGUAGE, LANGUAGES

log = logging.getLogger(__name__)
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

_files = SandboxedEnvironment(loader=FileSystemLoader(HERE), trim_blocks=True,
                              lstrip_blocks=True, autoescape=select_autoescape(["html"]),
                              undefined=ChainableUndefined)
_strings = SandboxedEnvironment(autoescape=False)


def _money(amount, currency):
    if not isinstance(amount, (int, float)) or isinstance(amount, bool):
        return ""
    return f"{amount / 100:,.2f} {currency or ''}".strip()


_files.filters["money"] = _money


def language_of(value):
    value = (value or "").split("-")[0].split("_")[0].lower()
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def render(kind, language, context):
    """{"kind", "language", "subject", "short", "text", "html"} for one message."""
    language = language_of(language)
    try:
        template = _files.get_template(f"{language}/{kind}.txt")
    except TemplateNotFound:
        language = DEFAULT_LANGUAGE
        template = _files.get_template(f"{language}/{kind}.txt")
    ctx = template.new_context(dict(context))
    try:
        parts = {name: "".join(template.blocks[name](ctx)).strip()
                 for name in ("subject", "short", "text")}
    except (TemplateError, TypeError, ValueError, ArithmeticError):
        # an event with an unexpected shape still tells the person something happened
        log.exception("template %s/%s failed; sending a plain message", language, kind)
        title = kind.replace("_", " ").capitalize()
        parts = {"subject": title, "short": title, "text": title}
    html = _files.get_template(f"{language}/layout.html").render(
        subject=parts["subject"], lines=parts["text"].splitlines(), body=_html_body(kind, language, context))
    return {"kind": kind, "language": language, **parts, "html": html}


def _html_body(kind, language, context):
    """The HTML part's own body when the kind has one (templates/<lang>/<kind>.html, its
    values autoescaped: a digest's tables), else None (the text's lines)."""
    try:
        template = _files.get_template(f"{language}/{kind}.html")
    except TemplateNotFound:
        return None
    try:
        return Markup(template.render(dict(context)))
    except (TemplateError, TypeError, ValueError, ArithmeticError):
        log.exception("template %s/%s.html failed; the HTML part holds the text", language, kind)
        return None


def render_string(source, **context):
    return _strings.from_string(source).render(**context)
