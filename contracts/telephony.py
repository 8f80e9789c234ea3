"""The telephony API, one source: the service validates with these, the gateway validates
the same way before calling and builds the OpenAPI document from them."""
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from contracts.events import EventData, IsoTime, Object, ref_field, summary_field
from crm_common.fields import STORED_KEY, PageOf, PageQuery, UserId, UtcDateTime

DIRECTIONS = ("inbound", "outbound", "internal")
STATES = ("ringing", "answered", "ended")
OUTCOMES = ("answered", "no_answer", "busy", "failed", "canceled")


class CanonicalEvent(Schema):
    """One call event in the platform's own format; every provider adapter maps onto it."""

    class Meta:
        unknown = EXCLUDE  # unknown provider fields are ignored, never an error

    event_id = fields.String(required=True, validate=validate.Length(1, 200),
                             metadata={"description": "unique per event; a repeat changes nothing"})
    provider = fields.String(required=True, validate=validate.Length(1, 40))
    call_id = fields.String(required=True, validate=validate.Length(1, 200))
    direction = fields.String(validate=validate.OneOf(DIRECTIONS))
    from_ = fields.String(data_key="from", allow_none=True, validate=validate.Length(max=64))
    to = fields.String(allow_none=True, validate=validate.Length(max=64))
    extension = fields.String(allow_none=True, validate=validate.Length(max=32))
    agent_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    leg_id = fields.String(allow_none=True, validate=validate.Length(max=200), metadata={
        "description": "one agent's leg (queue / ring group); an ended leg does not end the call"})
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    outcome = fields.String(allow_none=True, validate=validate.OneOf(OUTCOMES))
    occurred_at = UtcDateTime(allow_none=True)
    duration_s = fields.Integer(allow_none=True, validate=validate.Range(0, 7 * 24 * 3600))
    talk_s = fields.Integer(allow_none=True, validate=validate.Range(0, 7 * 24 * 3600), metadata={
        "description": "talk time if the provider counts it; else answered_at..ended_at"})
    recording_url = fields.String(allow_none=True, validate=validate.Length(max=2000))
    recording_id = fields.String(allow_none=True, validate=validate.Length(max=200), metadata={
        "description": "the provider's recording id when it gives no URL (Zadarma)"})
    hangup_cause = fields.String(allow_none=True, validate=validate.Length(max=200))


class AmiEvent(Schema):
    """One Asterisk AMI event as a connector forwards it: its header names as keys."""

    class Meta:
        unknown = INCLUDE

    Event = fields.String(required=True, validate=validate.Length(1, 80))
    Linkedid = fields.String(validate=validate.Length(max=200))
    Uniqueid = fields.String(validate=validate.Length(max=200))


class ProviderAnswer(Schema):
    ok = fields.Boolean()
    ignored = fields.Boolean()
    call = fields.Nested("CallOut", allow_none=True)
    contact = fields.Nested("ContactRef", allow_none=True)
    route_to = fields.String(allow_none=True)


class ZadarmaEcho(Schema):
    zd_echo = fields.String(required=True, validate=validate.Length(1, 200))


class ProviderEvent(CanonicalEvent):
    """What adapters produce: also `update` (facts only, e.g. a recording, no state change)."""
    state = fields.String(required=True, validate=validate.OneOf(STATES + ("update",)))


class Number(Schema):
    raw = fields.String(allow_none=True)
    e164 = fields.String(allow_none=True)
    valid = fields.Boolean(metadata={"description": "false: kept raw, could not be parsed"})
    extension = fields.Boolean(metadata={"description": "a PBX extension, not a phone number"})


class LegOut(Schema):
    leg_id = fields.String()
    extension = fields.String(allow_none=True)
    agent_id = fields.String(allow_none=True)
    state = fields.String()
    outcome = fields.String(allow_none=True)
    started_at = UtcDateTime(allow_none=True)
    answered_at = UtcDateTime(allow_none=True)
    ended_at = UtcDateTime(allow_none=True)


class CallOut(Schema):
    id = fields.String()
    provider = fields.String()
    call_id = fields.String()
    direction = fields.String(allow_none=True)
    from_ = fields.Nested(Number, data_key="from", attribute="from", allow_none=True)
    to = fields.Nested(Number, allow_none=True)
    number = fields.String(allow_none=True, metadata={"description": "the customer's E.164 number"})
    contact_id = fields.String(allow_none=True)
    contact_name = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    agent_id = fields.String(allow_none=True)
    extension = fields.String(allow_none=True)
    legs = fields.List(fields.Nested(LegOut))
    state = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    missed = fields.Boolean()
    called_back = fields.Boolean(allow_none=True)
    called_back_by = fields.String(allow_none=True)
    lead_created = fields.Boolean()
    started_at = UtcDateTime(allow_none=True)
    answered_at = UtcDateTime(allow_none=True)
    ended_at = UtcDateTime(allow_none=True)
    duration_s = fields.Integer(allow_none=True)
    talk_s = fields.Integer(allow_none=True)
    hangup_cause = fields.String(allow_none=True)
    recording_url = fields.String(allow_none=True)
    recording_id = fields.String(allow_none=True)
    recording_state = fields.String(allow_none=True, metadata={
        "description": "the recording kept by the platform: pending (to be fetched), stored "
                       "(GET /calls/{id}/recording), failed, expired; null: none announced"})
    originate = fields.Dict(allow_none=True, metadata={
        "description": "click-to-call: {adapter, status, reason, requested_by, ...}"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class ContactRef(Schema):
    id = fields.String()
    name = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)


class OwnerRef(Schema):
    id = fields.String()
    name = fields.String(allow_none=True)
    extension = fields.String(allow_none=True)


class IngestAnswer(Schema):
    call = fields.Nested(CallOut)
    contact = fields.Nested(ContactRef, allow_none=True)
    owner = fields.Nested(OwnerRef, allow_none=True)
    route_to = fields.String(allow_none=True, metadata={
        "description": "extension to route a ringing inbound call to (the contact's owner)"})
    duplicate = fields.Boolean()


class CallListQuery(PageQuery):
    contact_id = fields.String(validate=validate.Length(1, 40))
    agent_id = fields.String(validate=validate.Length(1, 40))
    direction = fields.String(validate=validate.OneOf(DIRECTIONS))
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))
    missed = fields.Boolean()
    called_back = fields.Boolean()
    phone = fields.String(validate=validate.Length(3, 40))
    from_ = UtcDateTime(data_key="from", metadata={"description": "started at or after"})
    to = UtcDateTime(metadata={"description": "started before"})


class CallPage(PageOf):
    items = fields.List(fields.Nested(CallOut))


class ClickToCallIn(Schema):
    OPENAPI_EXAMPLES = ({"to": "+14155550123"},)
    to = fields.String(required=True, validate=validate.Length(3, 40))
    agent_id = UserId(validate=validate.Length(1, 40), metadata={
        "description": "the agent whose phone rings first; default: the caller"})
    contact_id = fields.String(validate=validate.Length(1, 40))
    override_reason = fields.String(validate=validate.Length(3, 500), metadata={
        "description": "why a do_not_contact contact is called anyway (kept on the call "
                       "record: originate.override_reason); without it such a call is refused"})


class TelephonySettingsIn(Schema):
    """PATCH /settings/telephony: any subset; null returns a setting to the environment's
    value. Secrets are write-only (GET says only whether each is set)."""
    twilio_auth_token = fields.String(allow_none=True, validate=validate.Length(1, 200))
    twilio_shared_key_secret = fields.String(allow_none=True, validate=validate.Length(1, 200))
    zadarma_api_secret = fields.String(allow_none=True, validate=validate.Length(1, 200))
    zadarma_api_key = fields.String(allow_none=True, validate=validate.Length(1, 200), metadata={
        "description": "Zadarma's API user key (recordings are fetched through the API)"})
    zadarma_api_url = fields.Url(allow_none=True, require_tld=False)
    public_base_url = fields.Url(allow_none=True, require_tld=False)
    own_numbers = fields.List(fields.String(validate=validate.Length(3, 40)), allow_none=True)
    create_leads = fields.Boolean(allow_none=True)
    lead_owner = fields.String(allow_none=True, validate=validate.OneOf(
        ("round_robin", "answering_agent", "none")))
    originate = fields.String(allow_none=True, validate=validate.OneOf(
        ("ami", "connector", "http", "none")), metadata={
        "description": "click-to-call: ami (a login of its own per call), connector (over the "
                       "AMI connector's login: its endpoint in originate_url), http, none"})
    ami_host = fields.String(allow_none=True, validate=validate.Length(1, 200))
    ami_port = fields.Integer(allow_none=True, validate=validate.Range(1, 65535))
    ami_username = fields.String(allow_none=True, validate=validate.Length(1, 100))
    ami_secret = fields.String(allow_none=True, validate=validate.Length(1, 200))
    ami_channel = fields.String(allow_none=True, validate=validate.Length(1, 100))
    ami_context = fields.String(allow_none=True, validate=validate.Length(1, 100))
    originate_url = fields.Url(allow_none=True, require_tld=False)
    originate_secret = fields.String(allow_none=True, validate=validate.Length(1, 200))
    caller_id = fields.String(allow_none=True, validate=validate.Length(1, 40))
    line_responsible = fields.Dict(keys=fields.String(validate=[validate.Length(3, 40), STORED_KEY]),
                                   values=fields.String(validate=validate.Length(1, 40)),
                                   allow_none=True, metadata={
        "description": "called number -> the user who calls back its missed calls when "
                       "nobody else would"})
    default_responsible_id = fields.String(allow_none=True, validate=validate.Length(1, 40))


class SecretState(Schema):
    set = fields.Boolean()
    source = fields.String(metadata={"description": "api | environment"})


class TelephonySettingsOut(Schema):
    public_base_url = fields.String()
    contacts_sync_s = fields.Float()
    zadarma_api_key = fields.String()
    zadarma_api_url = fields.String()
    own_numbers = fields.List(fields.String())
    create_leads = fields.Boolean()
    lead_owner = fields.String()
    extension_max_digits = fields.Integer()
    originate = fields.String()
    ami_host = fields.String()
    ami_port = fields.Integer()
    ami_username = fields.String()
    ami_channel = fields.String()
    ami_context = fields.String()
    ami_timeout_s = fields.Float()
    originate_url = fields.String()
    caller_id = fields.String()
    line_responsible = fields.Dict(keys=fields.String(), values=fields.String())
    default_responsible_id = fields.String()
    recording_retention_days = fields.Integer()
    recording_max_bytes = fields.Integer()
    recording_poll_s = fields.Float()
    secrets = fields.Dict(keys=fields.String(), values=fields.Nested(SecretState), metadata={
        "description": "each secret's state; the values are never returned"})
    version = fields.Integer()
    updated_at = UtcDateTime(allow_none=True)
    updated_by = fields.String(allow_none=True)


class TelephonyTestIn(Schema):
    provider = fields.String(required=True, validate=validate.OneOf(
        ("twilio", "zadarma", "ami", "connector", "http")))


class ConnectorAmiSettings(Schema):
    ami_host = fields.String()
    ami_port = fields.Integer()
    ami_username = fields.String()
    ami_secret = fields.String()
    originate_secret = fields.String()


class ConnectorSettingsOut(Schema):
    """What the AMI connector reads: only the AMI settings stored through the API (secrets
    included: the connector logs in with them); anything absent stays the connector's
    environment value."""
    ami = fields.Nested(ConnectorAmiSettings)
    version = fields.Integer()


class TelephonyTestCheck(Schema):
    check = fields.String()
    ok = fields.Boolean()
    detail = fields.String(allow_none=True)


class TelephonyTestOut(Schema):
    provider = fields.String()
    ok = fields.Boolean()
    checks = fields.List(fields.Nested(TelephonyTestCheck))
    error = fields.String(allow_none=True, metadata={"description": "the first check that failed"})


class CallsReportQuery(Schema):
    group_by = fields.String(load_default="agent", validate=validate.OneOf(("agent", "day")))
    from_ = UtcDateTime(data_key="from")
    to = UtcDateTime(metadata={"description": "after `from`"})

    @validates_schema
    def ordered(self, data, **kwargs):
        if data.get("from_") and data.get("to") and data["from_"] >= data["to"]:
            raise ValidationError("`from` must be before `to`.", "to")


class CallsReportRow(Schema):
    key = fields.String(allow_none=True, metadata={"description": "agent id or YYYY-MM-DD"})
    calls = fields.Integer()
    answered = fields.Integer()
    missed = fields.Integer()
    talk_s = fields.Integer()
    avg_talk_s = fields.Float(allow_none=True)


class CallsReport(Schema):
    group_by = fields.String()
    from_ = UtcDateTime(data_key="from", attribute="from", allow_none=True)
    to = UtcDateTime(allow_none=True)
    rows = fields.List(fields.Nested(CallsReportRow))
    totals = fields.Nested(CallsReportRow)
    missed_not_called_back = fields.Integer()


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class CallCopy(EventData):
    """The call as the API returns it (CallOut): every key of it is sent."""
    id = fields.String(required=True)
    direction = fields.String(allow_none=True, metadata={"description": " | ".join(DIRECTIONS)})
    state = fields.String(allow_none=True, metadata={"description": " | ".join(STATES)})
    outcome = fields.String(allow_none=True, metadata={"description": " | ".join(OUTCOMES)})
    contact_id = fields.String(allow_none=True)
    agent_id = fields.String(allow_none=True)
    started_at = IsoTime(allow_none=True)
    answered_at = IsoTime(allow_none=True)
    ended_at = IsoTime(allow_none=True)


class CallEvent(EventData):
    """What every call_* event carries; one event_id per call and type (`<call id>:<type>`)."""
    call = Object(CallCopy, required=True, metadata={
        "description": "the call as the API returns it (CallOut)"})
    contact_id = fields.String(allow_none=True, metadata={
        "description": "the customer's contact (null: the number matched none)"})
    agent_id = fields.String(allow_none=True, metadata={"description": "the agent on the call"})
    owner_id = fields.String(allow_none=True, metadata={"description": "the contact's owner"})
    direction = fields.String(allow_none=True, metadata={"description": " | ".join(DIRECTIONS)})
    from_ = fields.String(data_key="from", attribute="from", allow_none=True, metadata={
        "description": "the caller: E.164, else as the PBX gave it"})
    to = fields.String(allow_none=True, metadata={"description": "the called number: E.164, "
                                                                 "else as the PBX gave it"})
    summary = summary_field()
    ref = ref_field("call")


class CallStarted(CallEvent):
    """A call began ringing."""


class CallAnswered(CallEvent):
    """A call was answered."""
    contacted_at = IsoTime(metadata={"description": "when it was answered: a real touch"})


class CallEnded(CallEvent):
    """A call ended (answered or not: call.outcome)."""
    contacted_at = IsoTime(metadata={"description": "sent when it had been answered: a real touch"})


class CallMissed(CallEvent):
    """An inbound call nobody answered; one per call, never one per agent (after its
    call_ended)."""
    agent_id = fields.String(allow_none=True, metadata={
        "description": "the called agent; for a queue the first one rung (told when the "
                       "contact has no owner)"})
    owner_id = fields.String(allow_none=True, metadata={"description": "the contact's owner (told)"})
    agent_ids = fields.List(fields.String(), metadata={"description": "every agent it rang"})
    responsible_id = fields.String(allow_none=True, metadata={
        "description": "who calls back when the contact has no owner and no agent was rung: "
                       "the called line's responsible user, else the default (telephony "
                       "settings); null: the admins"})


class CallUpdated(CallEvent):
    """Facts of an ended call came without a change of state (a CDR's talk time, a
    recording): its new state for the copies kept elsewhere (the search index); a new
    event_id each. A live call's facts (its agents' legs) ride on its next transition."""


EVENTS = {"call_started": CallStarted, "call_answered": CallAnswered, "call_ended": CallEnded,
          "call_missed": CallMissed, "call_updated": CallUpdated}
