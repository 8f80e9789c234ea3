"""The conversations API, one source: mailboxes (IMAP/SMTP), messenger and SMS channels,
conversations (one per client across channels), their messages, and the events the
service announces. The service validates with these, the gateway validates the same way
and builds the OpenAPI document from them."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from contracts.contacts import WorkingHours
from contracts.events import EventData, Int, IsoTime, actor_field, ref_field, summary_field
from crm_common.fields import (MIME_TYPE, Pattern, WHITESPACE, PageOf, PageQuery, UserId,
                               UtcDateTime)

CHANNELS = ("email", "sms", "telegram", "whatsapp")
CHANNEL_KINDS = ("telegram", "whatsapp", "sms")
SECURITY = ("tls", "starttls", "none")
STATUSES = ("open", "closed")
DIRECTIONS = ("inbound", "outbound")
MESSAGE_STATES = ("received", "queued", "sending", "sent", "failed", "unconfirmed")
MAX_ATTACHMENT_BYTES_API = 700 * 1024  # per attachment sent through the JSON API (base64)


# --- mailboxes --------------------------------------------------------------------------

# a host name as DNS takes it (labels of letters, digits, hyphens; a Unicode name in its
# xn-- form), an IPv4 or an IPv6 address: anything else failed every connection later
HOST = (r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
        r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
        r"|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$")


class ServerIn(Schema):
    host = fields.String(required=True, validate=[
        validate.Length(1, 253),
        Pattern(HOST, error="Not a host name or an IP address (a Unicode name in its xn-- form).")])
    port = fields.Integer(required=True, validate=validate.Range(1, 65535))
    security = fields.String(load_default="tls", validate=validate.OneOf(SECURITY), metadata={
        "description": "tls: implicit TLS (993/465); starttls: upgrade a plain connection "
                       "(143/587); none: plain (local servers only)"})
    username = fields.String(required=True, validate=validate.Length(1, 254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 500),
                             metadata={"description": "write-only: stored encrypted, never returned"})
    verify_tls = fields.Boolean(load_default=True, metadata={
        "description": "check the server's certificate (false: self-signed test servers)"})


class ServerOut(Schema):
    host = fields.String()
    port = fields.Integer()
    security = fields.String()
    username = fields.String()
    verify_tls = fields.Boolean()
    password_set = fields.Boolean()


class MailboxIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    address = fields.Email(required=True, validate=validate.Length(max=254))
    display_name = fields.String(load_default="", validate=validate.Length(max=200))
    shared = fields.Boolean(load_default=False, metadata={
        "description": "a shared mailbox (sales@): unknown senders become leads, once"})
    owner_id = UserId(allow_none=True, validate=validate.Length(max=40), metadata={
        "description": "a personal mailbox's user (default: the caller)"})
    imap = fields.Nested(ServerIn, required=True)
    smtp = fields.Nested(ServerIn, required=True)
    folder = fields.String(load_default="INBOX", validate=validate.Length(1, 200))
    sent_folder = fields.String(load_default="Sent", validate=validate.Length(1, 200))
    poll_seconds = fields.Integer(load_default=60, validate=validate.Range(1, 3600), metadata={
        "description": "how often it is checked when the server offers no IDLE"})
    first_response_minutes = fields.Float(allow_none=True, validate=validate.Range(0, 10080),
                                          metadata={"description": "a client waiting longer "
                                                    "is escalated to the manager, once"})
    working_hours = fields.Nested(WorkingHours, allow_none=True, metadata={
        "description": "the first-response clock runs only inside them (none: always)"})
    active = fields.Boolean(load_default=True)


class MailboxState(Schema):
    status = fields.String(metadata={"description": "new | ok | error"})
    last_error = fields.String(allow_none=True)
    last_sync_at = UtcDateTime(allow_none=True)
    failures = fields.Integer(metadata={"description": "consecutive failures (backoff grows)"})
    next_sync_at = UtcDateTime(allow_none=True)
    idle = fields.Boolean(metadata={"description": "the server offers IDLE: new mail is pushed"})
    synced = fields.Integer(metadata={"description": "messages stored from it"})


class MailboxOut(Schema):
    id = fields.String()
    name = fields.String()
    address = fields.String()
    display_name = fields.String()
    shared = fields.Boolean()
    owner_id = fields.String(allow_none=True)
    imap = fields.Nested(ServerOut)
    smtp = fields.Nested(ServerOut)
    folder = fields.String()
    sent_folder = fields.String()
    poll_seconds = fields.Integer()
    first_response_minutes = fields.Float(allow_none=True)
    working_hours = fields.Nested(WorkingHours, allow_none=True)
    active = fields.Boolean()
    state = fields.Nested(MailboxState)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class MailboxPage(PageOf):
    items = fields.List(fields.Nested(MailboxOut))


# --- messenger and SMS channels ---------------------------------------------------------

class ChannelIn(Schema):
    """Telegram: `token` (the bot's), `api_base` (default https://api.telegram.org),
    `route_id` (the inbound route, channel telegram, whose URL and secret token the bot's
    setWebhook was given: its updates join this channel and their replies go out through
    this bot; one bot per route).
    WhatsApp Cloud API: `phone_number_id`, `token` (access token), `app_secret` (checks
    X-Hub-Signature-256), `verify_token` (the webhook handshake), `api_base` (default
    https://graph.facebook.com/v19.0). SMS: `url` (the gateway's endpoint), `token` (sent as
    Authorization), `from_number`. Secrets are write-only."""
    kind = fields.String(required=True, validate=validate.OneOf(CHANNEL_KINDS))
    name = fields.String(required=True, validate=validate.Length(1, 200))
    api_base = fields.String(allow_none=True, validate=validate.Length(max=500))
    url = fields.String(allow_none=True, validate=validate.Length(max=500))
    phone_number_id = fields.String(allow_none=True, validate=validate.Length(max=100))
    from_number = fields.String(allow_none=True, validate=validate.Length(max=40))
    route_id = fields.String(allow_none=True, validate=validate.Length(max=64), metadata={
        "description": "Telegram: the inbound route (POST /forms, channel telegram) this "
                       "bot's webhook posts to"})
    token = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=1000))
    app_secret = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=500))
    verify_token = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=500))
    first_response_minutes = fields.Float(allow_none=True, validate=validate.Range(0, 10080))
    working_hours = fields.Nested(WorkingHours, allow_none=True, metadata={
        "description": "the first-response clock runs only inside them (none: always)"})
    active = fields.Boolean(load_default=True)


class ChannelOut(Schema):
    id = fields.String()
    kind = fields.String()
    name = fields.String()
    api_base = fields.String(allow_none=True)
    url = fields.String(allow_none=True)
    phone_number_id = fields.String(allow_none=True)
    from_number = fields.String(allow_none=True)
    route_id = fields.String(allow_none=True)
    secrets = fields.Dict(metadata={"description": "{name: true} for each secret that is set"})
    first_response_minutes = fields.Float(allow_none=True)
    working_hours = fields.Nested(WorkingHours, allow_none=True)
    active = fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class ChannelPage(PageOf):
    items = fields.List(fields.Nested(ChannelOut))


# --- conversations and messages ---------------------------------------------------------

class ConversationListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))
    assignee_id = fields.String(validate=validate.Length(1, 40), metadata={
        "description": "a user id, `me`, or `none` (unassigned)"})
    contact_id = fields.String(validate=validate.Length(1, 40))
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    waiting = fields.Boolean(metadata={"description": "true: the client waits for our answer"})


class ConversationOut(Schema):
    id = fields.String()
    contact_id = fields.String(allow_none=True)
    contact_name = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True, metadata={"description": "the contact's owner"})
    assignee_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True, metadata={"description": "the contact's open deal"})
    status = fields.String(metadata={"description": " | ".join(STATUSES)})
    channels = fields.List(fields.String(), metadata={"description": "channels used so far"})
    subject = fields.String(allow_none=True)
    last_message_at = UtcDateTime(allow_none=True)
    last_preview = fields.String(allow_none=True)
    waiting_since = UtcDateTime(allow_none=True, metadata={
        "description": "the oldest client message not answered yet"})
    waiting_seconds = fields.Integer(allow_none=True)
    first_response_due_at = UtcDateTime(allow_none=True)
    escalated_at = UtcDateTime(allow_none=True)
    mailbox_id = fields.String(allow_none=True, metadata={"description": "where e-mail replies go out"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class ConversationPage(PageOf):
    items = fields.List(fields.Nested(ConversationOut))


class AttachmentOut(Schema):
    id = fields.String(allow_none=True, metadata={"description": "null: not stored (too large)"})
    filename = fields.String(allow_none=True)
    content_type = fields.String()
    size = fields.Integer()
    skipped = fields.String(allow_none=True, metadata={"description": "why it was not stored"})


class MessageOut(Schema):
    id = fields.String()
    conversation_id = fields.String()
    channel = fields.String(metadata={"description": " | ".join(CHANNELS)})
    direction = fields.String(metadata={"description": " | ".join(DIRECTIONS)})
    status = fields.String(metadata={"description": " | ".join(MESSAGE_STATES)})
    thread_id = fields.String(allow_none=True, metadata={"description": "the e-mail thread"})
    subject = fields.String(allow_none=True)
    text = fields.String(allow_none=True)
    html = fields.String(allow_none=True, metadata={"description": "sanitised: safe to show"})
    from_ = fields.Dict(data_key="from", attribute="from", metadata={"description": "{address, name}"})
    to = fields.List(fields.Dict())
    cc = fields.List(fields.Dict())
    message_id = fields.String(allow_none=True, metadata={"description": "the e-mail Message-ID"})
    in_reply_to = fields.String(allow_none=True)
    attachments = fields.List(fields.Nested(AttachmentOut))
    mailbox_id = fields.String(allow_none=True)
    channel_id = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)
    sender_user_id = fields.String(allow_none=True, metadata={"description": "who sent it (ours)"})
    contact_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)
    template = fields.String(allow_none=True)
    template_id = fields.String(allow_none=True, metadata={
        "description": "the message template it was written from"})
    error = fields.String(allow_none=True)
    sent_at = UtcDateTime(allow_none=True)
    at = UtcDateTime(metadata={"description": "when it was written (the conversation's order)"})
    created_at = UtcDateTime()


class MessagePage(PageOf):
    items = fields.List(fields.Nested(MessageOut))


class MessageListQuery(PageQuery):
    pass


class AttachmentIn(Schema):
    filename = fields.String(required=True, validate=validate.Length(1, 255))
    # a type as a mail header carries it (a line break in it failed the send, not the call)
    content_type = fields.String(load_default="application/octet-stream", validate=[
        validate.Length(1, 200),
        Pattern(f"^{MIME_TYPE}$", error="Not a MIME type (type/subtype, optional parameters).")])
    # what base64.b64decode(validate=True) takes: the alphabet, in padded groups of four
    content_base64 = fields.String(required=True, validate=[
        validate.Length(1, MAX_ATTACHMENT_BYTES_API * 4 // 3 + 4),
        Pattern(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
                        error="Not base64.")])


class SendIn(Schema):
    """A message to the client. `channel`: default the conversation's last one. Placeholders
    `{{contact.first_name}}`, `{{deal.title}}`, ... are filled from the contact and deal.
    WhatsApp outside the 24-hour window accepts only a `template` (its approved name)."""
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    body = fields.String(load_default="", validate=validate.Length(max=100_000))
    subject = fields.String(allow_none=True, validate=validate.Length(max=998))
    html = fields.String(allow_none=True, validate=validate.Length(max=500_000))
    template = fields.String(allow_none=True, validate=validate.Length(1, 200))
    variables = fields.Dict(allow_none=True)
    language = fields.String(load_default="en_US", validate=validate.Length(2, 20))
    mailbox_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    channel_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    deal_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    attachments = fields.List(fields.Nested(AttachmentIn), load_default=list,
                              validate=validate.Length(max=10))
    idempotency_key = fields.String(allow_none=True, validate=validate.Length(1, 200))
    template_id = fields.String(allow_none=True, validate=validate.Length(1, 40), metadata={
        "description": "a message template (GET /templates), rendered here for this "
                       "conversation's contact and deal; `body`, `subject`, `html` and "
                       "`template` given beside it win over the template's own"})

    @validates_schema
    def something(self, data, **kwargs):
        if not (data.get("body") or "").strip() and not data.get("template") and \
                not data.get("html") and not data.get("template_id"):
            raise ValidationError("Give a body, html, a template or a template_id.", "body")


# --- message templates ----------------------------------------------------------------------

TEMPLATE_CHANNELS = CHANNELS + ("any",)
TEMPLATE_ROOTS = ("contact", "deal", "user")


class TemplateUser(Schema):
    """`{{ user.<field> }}`: the user who sends (or previews) the message."""
    id = fields.String()
    name = fields.String()
    first_name = fields.String()
    email = fields.String()
    phone = fields.String(allow_none=True)


class TemplateIn(Schema):
    """A message template. Placeholders are Jinja: `{{ contact.first_name }}`,
    `{{ deal.title }}`, `{{ user.name }}` (the sender), filters and `{% if %}` too; checked
    when saved (syntax, and only `contact`, `deal`, `user` with their fields: 422 naming the
    field and line). Rendered for a contact: a value it lacks (no deal, an empty field) is
    empty text."""
    name = fields.String(required=True, validate=validate.Length(1, 200), metadata={
        "description": "unique in the company, whatever the case"})
    channel = fields.String(load_default="any", validate=validate.OneOf(TEMPLATE_CHANNELS))
    subject = fields.String(allow_none=True, validate=validate.Length(max=998), metadata={
        "description": "e-mail only (channel email or any)"})
    body = fields.String(required=True, validate=[
        validate.Length(1, 100_000),
        Pattern(rf"^[{WHITESPACE}]*[^{WHITESPACE}]", error="Write the message.")])
    html = fields.String(allow_none=True, validate=validate.Length(max=500_000), metadata={
        "description": "e-mail only: an HTML version of the body (sanitised when sent)"})
    whatsapp_template = fields.String(allow_none=True, validate=validate.Length(1, 200),
                                      metadata={"description": "WhatsApp only: Meta's "
                                                "approved template name it sends"})


class TemplateOut(Schema):
    id = fields.String()
    name = fields.String()
    channel = fields.String()
    subject = fields.String(allow_none=True)
    body = fields.String()
    html = fields.String(allow_none=True)
    whatsapp_template = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class TemplatePage(PageOf):
    items = fields.List(fields.Nested(TemplateOut))


class TemplateListQuery(PageQuery):
    channel = fields.String(validate=validate.OneOf(TEMPLATE_CHANNELS), metadata={
        "description": "templates of this channel and those for any channel"})
    q = fields.String(validate=validate.Length(1, 200), metadata={
        "description": "part of the name, whatever the case"})


class TemplateRenderIn(Schema):
    contact_id = fields.String(allow_none=True, validate=validate.Length(1, 40), metadata={
        "description": "a contact the caller sees (404 otherwise)"})
    deal_id = fields.String(allow_none=True, validate=validate.Length(1, 40), metadata={
        "description": "a deal the caller sees (404 otherwise); default the contact's "
                       "open deal"})


class TemplatePreviewIn(TemplateIn, TemplateRenderIn):
    """A template not saved yet (the editor's text), checked and filled as if saved."""
    name = fields.String(validate=validate.Length(max=200), metadata={"description": "ignored"})


class TemplateRendered(Schema):
    template_id = fields.String(allow_none=True, metadata={"description": "null: a preview"})
    channel = fields.String()
    subject = fields.String(allow_none=True)
    body = fields.String()
    html = fields.String(allow_none=True)
    whatsapp_template = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)


class AssignIn(Schema):
    assignee_id = UserId(required=True, allow_none=True, validate=validate.Length(max=40))


# --- WhatsApp Cloud API webhook (Meta's format; only what is read is declared) ----------

class WhatsAppVerifyQuery(Schema):
    class Meta:
        unknown = "include"

    mode = fields.String(data_key="hub.mode")
    verify_token = fields.String(data_key="hub.verify_token")
    challenge = fields.String(data_key="hub.challenge")


class WebhookAck(Schema):
    status = fields.String()
    stored = fields.Integer()


# --- Events (docs/events.md; the machinery is contracts/events.py) ----------------------

class MessageEvent(EventData):
    """What every message_* event carries; event_id `<message id>:<type>`."""
    message_id = fields.String(required=True, metadata={"description": "the stored message's id"})
    conversation_id = fields.String(required=True)
    contact_id = fields.String(allow_none=True, metadata={
        "description": "whose timeline it is on (null: no contact yet)"})
    deal_id = fields.String(allow_none=True)
    channel = fields.String(metadata={"description": " | ".join(CHANNELS)})
    direction = fields.String(metadata={"description": " | ".join(DIRECTIONS)})
    subject = fields.String(allow_none=True)
    preview = fields.String(allow_none=True, metadata={"description": "the text, first 200 characters"})
    owner_id = fields.String(allow_none=True, metadata={"description": "the contact's owner"})
    assignee_id = fields.String(allow_none=True)
    actor_id = actor_field()
    summary = summary_field()
    ref = ref_field("message")


class MessageReceived(MessageEvent):
    """A client's message was stored (e-mail synced, messenger or SMS received)."""


class MessageSent(MessageEvent):
    """A message left for the client (the mail server or the messenger accepted it)."""
    contacted_at = IsoTime(metadata={"description": "when it was sent: a real touch"})


class MessageFailed(MessageEvent):
    """Sending was given up; `error` says why."""
    error = fields.String(allow_none=True)


class ConversationEvent(EventData):
    conversation_id = fields.String(required=True)
    contact_id = fields.String(allow_none=True)
    assignee_id = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    actor_id = actor_field()
    summary = summary_field()
    ref = ref_field("conversation")


class ConversationAssigned(ConversationEvent):
    """Someone (or nobody: null) now answers this conversation."""
    previous_assignee_id = fields.String(allow_none=True)


class ConversationClosed(ConversationEvent):
    """Closed: it leaves the open inbox until the client writes again or it is reopened."""


class ConversationReopened(ConversationEvent):
    """Open again (a user reopened it, or the client wrote)."""


class ConversationEscalated(ConversationEvent):
    """A client waited past the channel's first-response target; once per wait. The
    manager of the assignee (else of the contact's owner) is told."""
    manager_id = fields.String(allow_none=True, metadata={
        "description": "null: taken from the user copies by the notifier"})
    user_id = fields.String(allow_none=True, metadata={
        "description": "the responsible user whose manager is told"})
    waiting_since = IsoTime()
    target_seconds = Int(metadata={"description": "the first-response target"})


class MailHistorySynced(ConversationEvent):
    """Mail dated before its mailbox was connected (the history found there) was stored on
    a conversation: one event per conversation and sync batch instead of a
    `message_received` for each message (old mail triggers no rule and notifies no one);
    event_id `<conversation id>:history:<first message id>`."""
    deal_id = fields.String(allow_none=True)
    mailbox_id = fields.String(required=True)
    count = Int(required=True, metadata={"description": "messages stored"})
    first_at = IsoTime(metadata={"description": "the oldest one's date"})
    last_at = IsoTime(metadata={"description": "the newest one's date"})
    message_ids = fields.List(fields.String(), metadata={
        "description": "the stored messages' ids (at most one sync batch, 200)"})


EVENTS = {
    "message_received": MessageReceived, "message_sent": MessageSent,
    "mail_history_synced": MailHistorySynced,
    "message_failed": MessageFailed, "conversation_assigned": ConversationAssigned,
    "conversation_closed": ConversationClosed, "conversation_reopened": ConversationReopened,
    "conversation_escalated": ConversationEscalated,
}
