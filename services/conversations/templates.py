"""Message templates: what a saved template may say, and how it is filled for a contact.

Placeholders are Jinja in a sandbox (crm_common.templating): `{{ contact.first_name }}`,
`{{ deal.title }}`, `{{ user.name }}` (the sender), filters and `{% if deal %}` too. Saving
checks the syntax and that only `contact`, `deal` and `user` with their fields are named
(422 naming the field and the line). Rendering is lenient: a value the records lack (no
deal linked, an empty field) is empty text, so a template written for every contact never
fails to send."""
from jinja2 import TemplateError

from contracts import conversations as schemas
from contracts.automation import check_path
from contracts.contacts import ContactOut
from contracts.deals import DealOut
from crm_common import templating
from crm_common.errors import ValidationFailed
from crm_common.timeutil import to_iso

ROOTS = {"contact": ContactOut(), "deal": DealOut(), "user": schemas.TemplateUser()}
TEXT_FIELDS = ("subject", "body", "html")
EMAIL_ONLY = ("subject", "html")


def invalid(field, message):
    return ValidationFailed("Invalid template", {"fields": {field: [message]}})


def name_key(name):
    """The name as the unique index compares it: trimmed, case folded."""
    return " ".join(name.split()).casefold()


def check(doc):
    """Refuse what a template may not hold: a bad placeholder (named by field and line), an
    e-mail subject or html on another channel, a WhatsApp name on another channel."""
    channel = doc.get("channel") or "any"
    for field in EMAIL_ONLY:
        if doc.get(field) and channel not in ("email", "any"):
            raise invalid(field, f"Only an e-mail template has a {field} (this one is {channel}).")
    if doc.get("whatsapp_template") and channel not in ("whatsapp", "any"):
        raise invalid("whatsapp_template", f"Only a WhatsApp template names an approved "
                                           f"template (this one is {channel}).")
    if not (doc.get("body") or "").strip():
        raise invalid("body", "Write the message.")
    for field in TEXT_FIELDS:
        if doc.get(field):
            found = templating.problem(doc[field], ROOTS, lambda path: check_path(path, ROOTS))
            if found:
                line, message = found
                raise ValidationFailed("Invalid template", {
                    "fields": {field: [f"Line {line}: {message}"]}, "line": line})


def dump_template(doc):
    return {"id": doc["_id"], "name": doc["name"], "channel": doc.get("channel") or "any",
            "subject": doc.get("subject"), "body": doc.get("body") or "",
            "html": doc.get("html"), "whatsapp_template": doc.get("whatsapp_template"),
            "created_by": doc.get("created_by"), "created_at": to_iso(doc.get("created_at")),
            "updated_at": to_iso(doc.get("updated_at"))}


def sender_of(user):
    """`user` of a template: the sender's profile as the gateway gave it (name, email)."""
    user = dict(user or {})
    if user.get("name") and not user.get("first_name"):
        user["first_name"] = user["name"].split()[0]
    return user


def render(doc, contact, deal, user):
    """{subject, body, html} filled; a value missing is empty. A template that still fails
    (a filter given a wrong type, a sum of a text and a number) is a 422 naming its field."""
    ctx = {"contact": contact or {}, "deal": deal or {}, "user": sender_of(user)}
    out = {}
    for field in TEXT_FIELDS:
        source = doc.get(field)
        if not source:
            out[field] = None if field != "body" else ""
            continue
        try:
            out[field] = templating.LENIENT.from_string(source).render(**ctx)
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as error:
            # the template's own doing ({{ contact.first_name + 1 }}, 1 / 0): its field
            raise invalid(field, f"The template cannot be filled: {error}")
    return out
