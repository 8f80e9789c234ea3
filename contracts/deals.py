"""The deals API, one source: the service validates with these, the gateway validates the
same way before calling and generates the OpenAPI document from them."""
from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from contracts.events import (Bool, EventData, Int, IsoTime, Object, actor_field, ref_field,
                             summary_field)
from crm_common import fields as crm_fields
from crm_common.fields import (Pattern, WHITESPACE, CustomFields, UserId, cursor_field, PageOf, PageQuery,
                               UtcDateTime, sort_field)
from contracts.currencies import ISO_4217
from contracts.custom_fields import CustomFilters, custom_sort_field

STAGE_KINDS = ("open", "won", "lost")
DEAL_STATUSES = ("open", "won", "lost")
PERIOD = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2]|Q[1-4])$"
ID = validate.Length(1, 40)
# what a stage may require (required fields per stage)
REQUIRED_DEAL_FIELDS = ("amount", "expected_close_date", "source", "contact_id", "company_id",
                        "notes")
REQUIRED_CONTACT_FIELDS = ("first_name", "last_name", "emails", "phones", "position",
                           "company_id", "birthday", "source")
REQUIRED_FIELD = (r"^(" + "|".join(REQUIRED_DEAL_FIELDS) + r"|custom\.[a-z][a-z0-9_]{0,39}"
                  r"|contact\.(" + "|".join(REQUIRED_CONTACT_FIELDS)
                  + r"|custom\.[a-z][a-z0-9_]{0,39}))$")


def _currency(**kwargs):
    return fields.String(validate=validate.OneOf(sorted(ISO_4217), error="Unknown ISO 4217 currency."),
                         **kwargs)


def _upper_currency(data):
    if isinstance(data, dict) and isinstance(data.get("currency"), str):
        data = {**data, "currency": data["currency"].strip().upper()}
    return data


# pipelines
class StageIn(Schema):
    id = fields.String(validate=ID, metadata={"description": "an existing stage's id keeps it (and its deals)"})
    name = fields.String(required=True, validate=validate.Length(1, 100))
    probability = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 100),
                                 metadata={"description": "percent; default 100 for won, 0 for lost, 50 for open"})
    kind = fields.String(load_default="open", validate=validate.OneOf(STAGE_KINDS))
    rotting_days = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, 3650),
                                  metadata={"description": "an open deal idle in this stage longer is flagged `rotting`"})
    required_fields = fields.List(fields.String(validate=Pattern(
        REQUIRED_FIELD, error="A deal field, custom.<key>, contact.<field> or contact.custom.<key>.")),
        validate=validate.Length(max=30), metadata={
            "description": "what a deal must have filled to enter this stage (else 422 listing "
                           "what is missing): " + ", ".join(REQUIRED_DEAL_FIELDS) + ", "
                           "custom.<key>, contact.<" + "|".join(REQUIRED_CONTACT_FIELDS)
                           + ">, contact.custom.<key>"})


class PipelineIn(Schema):
    OPENAPI_EXAMPLES = ({"name": "Partners", "stages": [
        {"name": "New", "kind": "open", "probability": 20, "rotting_days": 30},
        {"name": "Signed", "kind": "won"}, {"name": "Lost", "kind": "lost"}]},)
    name = fields.String(required=True, validate=validate.Length(1, 100))
    stages = fields.List(fields.Nested(StageIn), required=True, validate=validate.Length(1, 50),
                         metadata={"description": "ordered; on PATCH the full new list"})
    move_deals_to = fields.Dict(keys=fields.String(validate=ID), values=fields.String(validate=ID),
                                load_default=dict,
                                metadata={"description": "PATCH: {removed stage id: target stage id} "
                                                         "for stages removed while deals are in them"})

    @validates_schema
    def stage_rules(self, data, partial=False, **kwargs):
        stages = data.get("stages")
        if stages is None:
            return
        kinds = {s.get("kind", "open") for s in stages}
        missing = [k for k in STAGE_KINDS if k not in kinds]
        if missing:
            raise ValidationError(f"A pipeline needs at least one stage of each kind; missing: {', '.join(missing)}.",
                                  "stages")
        names = [(s.get("name") or "").strip().lower() for s in stages]
        if len(set(names)) != len(names):
            raise ValidationError("Stage names must be unique in a pipeline.", "stages")
        ids = [s["id"] for s in stages if s.get("id")]
        if len(set(ids)) != len(ids):
            raise ValidationError("A stage id appears twice.", "stages")


class StageOut(Schema):
    id = fields.String()
    name = fields.String()
    probability = fields.Integer()
    kind = fields.String()
    rotting_days = fields.Integer(allow_none=True)
    position = fields.Integer()
    required_fields = fields.List(fields.String())


class PipelineOut(Schema):
    id = fields.String()
    name = fields.String()
    is_default = fields.Boolean()
    stages = fields.List(fields.Nested(StageOut))
    removed_stages = fields.List(fields.Nested(StageOut),
                                 metadata={"description": "stages deleted earlier, kept so history still names them"})
    version = fields.Integer()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class PipelineListQuery(PageQuery):
    pass


class PipelinePage(PageOf):
    items = fields.List(fields.Nested(PipelineOut))


# deals
AMOUNT_RANGE = "Amount must be between 0 and 10^15 (minor units)."
# a label of a configurable list: text with something besides blanks (stored stripped)
NOT_BLANK = Pattern(rf"^[{WHITESPACE}]*[^{WHITESPACE}]", error="Must not be blank.")


class DealIn(Schema):
    # in the default pipeline's first open stage; a created contact's id joins it (links)
    OPENAPI_EXAMPLES = ({"title": "Annual licence", "amount": 1200000, "currency": "EUR",
                         "expected_close_date": "2026-09-30"},)
    title = fields.String(required=True, validate=validate.Length(1, 200))
    amount = fields.Integer(load_default=0, validate=validate.Range(0, 10**15, error=AMOUNT_RANGE),
                            strict=True, metadata={"description": "minor units (cents)"})
    currency = _currency(required=True)
    pipeline_id = fields.String(validate=ID, metadata={"description": "default: the default pipeline"})
    stage_id = fields.String(validate=ID, metadata={"description": "default: the pipeline's first open stage"})
    contact_id = fields.String(allow_none=True, validate=ID)
    company_id = fields.String(allow_none=True, validate=ID)
    owner_id = UserId(allow_none=True, validate=ID, metadata={"description": "default: the caller"})
    source = fields.String(allow_none=True, validate=validate.Length(1, 50),
                           metadata={"description": "one of /deal-settings lead_sources"})
    expected_close_date = crm_fields.Date(allow_none=True)
    notes = fields.String(allow_none=True, validate=validate.Length(max=10000))
    custom = CustomFields(metadata={"description": "custom fields by key (typed ones: /custom-fields?entity=deal)"})

    @pre_load
    def currency_upper(self, data, **kwargs):
        return _upper_currency(data)


class DealPatch(DealIn):
    """PATCH: stage and pipeline change only through /move (history, lost reason)."""
    amount_override = fields.Boolean(metadata={"description": (
        "true: the amount stays as set by hand when the line items change (an `amount` "
        "given on a deal with line items sets it); false: the amount is the items' total again "
        "(not with an `amount`: 422)")})

    @validates_schema
    def amount_or_computed(self, data, **kwargs):
        if "amount" in data and data.get("amount_override") is False:
            raise ValidationError("Give an amount or amount_override: false, not both.",
                                  "amount_override")

    @validates_schema
    def no_stage_change(self, data, **kwargs):
        for key in ("pipeline_id", "stage_id"):
            if key in data:
                raise ValidationError("Use POST /deals/{id}/move to change the stage.", key)


class MoveIn(Schema):
    stage_id = fields.String(required=True, validate=ID)
    lost_reason = fields.String(allow_none=True, validate=validate.Length(1, 100),
                                metadata={"description": "required for a lost stage, refused for any other; one of /deal-settings lost_reasons"})
    lost_note = fields.String(allow_none=True, validate=validate.Length(max=2000),
                              metadata={"description": "free text beside the lost reason"})
    expected_version = fields.Integer(metadata={"description": "optional optimistic check: 409 if the deal changed"})


class DealOut(Schema):
    id = fields.String()
    title = fields.String()
    amount = fields.Integer(metadata={"description": "the line items' total unless amount_override"})
    amount_override = fields.Boolean(metadata={
        "description": "the amount was set by hand and does not follow the line items"})
    items_total = fields.Integer(allow_none=True, metadata={
        "description": "the line items' total, tax included (null: no line items)"})
    currency = fields.String()
    pipeline_id = fields.String()
    stage_id = fields.String()
    probability = fields.Integer(metadata={"description": "the stage's probability"})
    status = fields.String()
    contact_id = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    expected_close_date = fields.String(allow_none=True)
    lost_reason = fields.String(allow_none=True)
    lost_note = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    stage_entered_at = UtcDateTime()
    rotting = fields.Boolean(metadata={"description": "open and idle in its stage longer than the stage's rotting_days"})
    closed_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    created_by = fields.String(allow_none=True)
    possible_duplicates = fields.List(fields.String(),
                                      metadata={"description": "open deals of the same contact in the same pipeline at creation"})
    requests = fields.List(fields.Nested(lambda: DealRequest()),
                           metadata={"description": "inbound requests (leads) that created or joined this deal, "
                                                    "oldest first, the last 50"})
    version = fields.Integer()
    custom = fields.Dict()
    contacts = fields.List(fields.Nested(lambda: DealContactOut()), metadata={
        "description": "the people on the deal with their role; the primary one is contact_id"})


class DealListQuery(CustomFilters, PageQuery):
    sort = custom_sort_field("created_at", "updated_at")
    pipeline_id = fields.String(validate=ID)
    stage_id = fields.String(validate=ID)
    owner_id = fields.String(validate=ID)
    status = fields.String(validate=validate.OneOf(DEAL_STATUSES))
    contact_id = fields.String(validate=ID)
    company_id = fields.String(validate=ID)
    source = fields.String(validate=validate.Length(1, 50))
    currency = _currency(metadata={"description": "only deals in this currency"})
    closed_after = UtcDateTime(metadata={"description": "closed (won or lost) at or after this time; "
                                                        "before closed_before when both are given"})
    closed_before = UtcDateTime(metadata={"description": "closed before this time (exclusive)"})
    expected_close_from = crm_fields.Date(metadata={"description": "expected close date on or after this "
                                                                   "day; before expected_close_to when both "
                                                                   "are given"})
    expected_close_to = crm_fields.Date(metadata={"description": "expected close date before this day (exclusive)"})

    @validates_schema
    def ordered_ranges(self, data, **kwargs):
        for low, high in (("closed_after", "closed_before"),
                          ("expected_close_from", "expected_close_to")):
            if data.get(low) and data.get(high) and data[low] >= data[high]:
                raise ValidationError(f"`{low}` must be before `{high}`.", low)


class DealPage(PageOf):
    items = fields.List(fields.Nested(DealOut))


class HistoryEntry(Schema):
    id = fields.String()
    deal_id = fields.String()
    pipeline_id = fields.String()
    from_stage_id = fields.String(allow_none=True)
    to_stage_id = fields.String()
    to_kind = fields.String()
    actor_id = fields.String(allow_none=True)
    at = UtcDateTime()
    seconds_in_from_stage = fields.Integer(allow_none=True)
    lost_reason = fields.String(allow_none=True)
    lost_note = fields.String(allow_none=True)


class HistoryQuery(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = cursor_field()


class HistoryPage(PageOf):
    items = fields.List(fields.Nested(HistoryEntry))


# configurable lists
class DealSettings(Schema):
    lead_sources = fields.List(fields.String(validate=[validate.Length(1, 50), NOT_BLANK]),
                               validate=validate.Length(1, 200))
    lost_reasons = fields.List(fields.String(validate=[validate.Length(1, 100), NOT_BLANK]),
                               validate=validate.Length(1, 200))
    default_currency = _currency(metadata={"description": "currency of deals the service opens "
                                                          "itself (inbound leads); default EUR"})

    @pre_load
    def currency_upper(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("default_currency"), str):
            data = {**data, "default_currency": data["default_currency"].strip().upper()}
        return data


class DealSettingsOut(Schema):
    lead_sources = fields.List(fields.String(), metadata={
        "description": "the active sources of /lead-sources: empty once every one is archived"})
    lost_reasons = fields.List(fields.String())
    default_currency = fields.String()


# targets
class TargetIn(Schema):
    # user_id names an existing user (a created user's id replaces it: the document's links)
    OPENAPI_EXAMPLES = ({"user_id": "6b15947da1b615f0043a58db", "period": "2026-Q3",
                         "deals_count": 10, "amount": 5000000, "currency": "EUR"},)
    user_id = UserId(validate=ID, metadata={"description": "a person's target (or give team)"})
    team = fields.String(validate=validate.Length(1, 100), metadata={"description": "a team's target"})
    member_ids = fields.List(UserId(validate=ID), validate=validate.Length(max=500),
                             metadata={"description": "team targets: whose won deals count"})
    period = fields.String(required=True, validate=Pattern(PERIOD, error="Use YYYY-MM or YYYY-Q1..Q4."))
    deals_count = fields.Integer(allow_none=True, validate=validate.Range(1, 10**6))
    amount = fields.Integer(allow_none=True, validate=validate.Range(1, 10**15), strict=True)
    currency = _currency(allow_none=True)
    pipeline_id = fields.String(allow_none=True, validate=ID, metadata={"description": "count only this pipeline"})

    @pre_load
    def currency_upper(self, data, **kwargs):
        return _upper_currency(data)

    @validates_schema
    def whole(self, data, partial=False, **kwargs):
        if partial:
            return
        if bool(data.get("user_id")) == bool(data.get("team")):
            raise ValidationError("Give exactly one of user_id or team.", "_schema")
        if data.get("team") and not data.get("member_ids"):
            raise ValidationError("A team target needs member_ids.", "member_ids")
        if not data.get("deals_count") and not data.get("amount"):
            raise ValidationError("Give deals_count and/or amount.", "_schema")
        if data.get("amount") and not data.get("currency"):
            raise ValidationError("An amount target needs its currency.", "currency")


class TargetOut(Schema):
    id = fields.String()
    user_id = fields.String(allow_none=True)
    team = fields.String(allow_none=True)
    member_ids = fields.List(fields.String())
    period = fields.String()
    period_start = UtcDateTime()
    period_end = UtcDateTime()
    deals_count = fields.Integer(allow_none=True)
    amount = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)
    pipeline_id = fields.String(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class TargetListQuery(PageQuery):
    user_id = fields.String(validate=ID)
    team = fields.String(validate=validate.Length(1, 100))
    period = fields.String(validate=Pattern(PERIOD, error="Use YYYY-MM or YYYY-Q1..Q4."))


class TargetPage(PageOf):
    items = fields.List(fields.Nested(TargetOut))


class ProgressQuery(Schema):
    user_id = fields.String(validate=ID)
    team = fields.String(validate=validate.Length(1, 100))
    period = fields.String(validate=Pattern(PERIOD, error="Use YYYY-MM or YYYY-Q1..Q4."))


class Progress(Schema):
    target = fields.Nested(TargetOut)
    won_count = fields.Integer()
    won_amount = fields.Integer(metadata={"description": "in the target's currency"})
    count_percent = fields.Float(allow_none=True)
    amount_percent = fields.Float(allow_none=True)
    summary = fields.String(metadata={"description": 'e.g. "5 of 10 won"'})


class ProgressList(Schema):
    items = fields.List(fields.Nested(Progress))


# reports
class ReportPeriod(Schema):
    from_ = UtcDateTime(data_key="from", metadata={"description": "inclusive; default 30 days before `to`"})
    to = UtcDateTime(metadata={"description": "exclusive, after `from`; default now"})
    owner_id = fields.String(validate=ID)

    @validates_schema
    def ordered(self, data, **kwargs):
        if data.get("from_") and data.get("to") and data["from_"] >= data["to"]:
            raise ValidationError("`from` must be before `to`.", "from")


class FunnelQuery(ReportPeriod):
    pipeline_id = fields.String(validate=ID, metadata={"description": "default: the default pipeline"})


class FunnelStage(Schema):
    stage_id = fields.String()
    name = fields.String()
    kind = fields.String()
    entered = fields.Integer(metadata={"description": "deals that entered the stage in the period"})
    conversion_to_next = fields.Float(allow_none=True,
                                      metadata={"description": "entered(next open stage or won) / entered(this); open stages"})
    won = fields.Integer(metadata={"description": "of those, deals that reached a won stage in the period"})
    conversion_to_won = fields.Float(allow_none=True)
    avg_seconds_in_stage = fields.Float(allow_none=True,
                                        metadata={"description": "over moves out of the stage in the period"})
    moves_out = fields.Integer()


class FunnelReport(Schema):
    pipeline_id = fields.String()
    from_ = UtcDateTime(data_key="from")
    to = UtcDateTime()
    stages = fields.List(fields.Nested(FunnelStage))
    deals = fields.Integer(metadata={"description": "distinct deals with a move in the period"})


class SalesQuery(ReportPeriod):
    group_by = fields.String(load_default="owner", validate=validate.OneOf(("owner", "month", "source")))
    pipeline_id = fields.String(validate=ID)
    currency = _currency(metadata={"description": "only deals in this currency"})


class CurrencyAmounts(Schema):
    currency = fields.String()
    won_amount = fields.Integer()
    avg_deal_size = fields.Float(allow_none=True)
    share = fields.Float(allow_none=True, metadata={"description": "this group's part of all won money in the currency"})


class SalesRow(Schema):
    key = fields.String(allow_none=True, metadata={"description": "owner id, YYYY-MM or source"})
    won_count = fields.Integer()
    lost_count = fields.Integer()
    win_rate = fields.Float(allow_none=True, metadata={"description": "won / (won + lost) closed in the period"})
    avg_cycle_days = fields.Float(allow_none=True, metadata={"description": "created -> won, won deals"})
    amounts = fields.List(fields.Nested(CurrencyAmounts))


class SalesReport(Schema):
    group_by = fields.String()
    from_ = UtcDateTime(data_key="from")
    to = UtcDateTime()
    rows = fields.List(fields.Nested(SalesRow))


class ForecastQuery(Schema):
    pipeline_id = fields.String(validate=ID)
    owner_id = fields.String(validate=ID)
    from_ = crm_fields.Date(data_key="from", metadata={"description": "expected close date from (inclusive)"})
    to = crm_fields.Date(metadata={"description": "expected close date to (exclusive)"})


class ForecastRow(Schema):
    month = fields.String(allow_none=True, metadata={"description": "YYYY-MM of expected_close_date; null when unset"})
    currency = fields.String()
    open_count = fields.Integer()
    open_amount = fields.Integer()
    weighted_amount = fields.Integer(metadata={"description": "sum of amount x stage probability / 100, rounded"})


class ForecastReport(Schema):
    rows = fields.List(fields.Nested(ForecastRow))


# inbound leads (docs/leads.md)
class DealRequest(Schema):
    request_id = fields.String()
    received_at = UtcDateTime(allow_none=True)
    channel = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    summary = fields.String(allow_none=True)


# lead sources: the registry behind /deal-settings lead_sources, with costs per month
MONTH = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"


class LeadSourceCost(Schema):
    period = fields.String(required=True, validate=Pattern(MONTH, error="Use YYYY-MM (1900-2999)."),
                           metadata={"description": "the month the amount was spent"})
    amount = fields.Integer(required=True, strict=True,
                            validate=validate.Range(0, 10**15, error=AMOUNT_RANGE),
                            metadata={"description": "minor units (cents)"})
    currency = _currency(required=True)

    @pre_load
    def currency_upper(self, data, **kwargs):
        return _upper_currency(data)


def _costs_field():
    return fields.List(fields.Nested(LeadSourceCost), validate=validate.Length(max=600),
                       metadata={"description": "replaced whole on PATCH; one entry per month and currency"})


class LeadSourcePatch(Schema):
    """PATCH: the name is what deals and leads record, so it does not change."""
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    costs = _costs_field()
    active = fields.Boolean(metadata={"description": "offered for new deals (listed in /deal-settings)"})

    @validates_schema
    def one_cost_per_month(self, data, **kwargs):
        keys = [(c["period"], c["currency"]) for c in data.get("costs") or []]
        if len(set(keys)) != len(keys):
            raise ValidationError("One cost per month and currency.", "costs")


class LeadSourceIn(LeadSourcePatch):
    name = fields.String(required=True, validate=[validate.Length(1, 50), NOT_BLANK])


class LeadSourceOut(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    costs = fields.List(fields.Nested(LeadSourceCost))
    active = fields.Boolean()
    auto_registered = fields.Boolean(metadata={"description": "added by an inbound lead naming an unknown source"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class LeadSourceListQuery(PageQuery):
    active = fields.Boolean()


class LeadSourcePage(PageOf):
    items = fields.List(fields.Nested(LeadSourceOut))


class SourcesQuery(ReportPeriod):
    period = fields.String(load_default="month", validate=validate.OneOf(("month", "week", "day", "all")))
    source = fields.String(validate=validate.Length(1, 50), metadata={"description": "only this source"})


class Money(Schema):
    currency = fields.String()
    amount = fields.Float(metadata={"description": "minor units"})


class SourcesRow(Schema):
    source = fields.String()
    period = fields.String(metadata={"description": "YYYY-MM, YYYY-Www (ISO week), YYYY-MM-DD or all"})
    period_start = UtcDateTime(metadata={"description": "clipped to `from`"})
    period_end = UtcDateTime(metadata={"description": "clipped to `to`"})
    leads = fields.Integer(metadata={"description": "inbound requests received in the period"})
    deals = fields.Integer(metadata={"description": "deals of the source created in the period"})
    won_deals = fields.Integer(metadata={"description": "deals of the source won (closed) in the period"})
    won_amount = fields.List(fields.Nested(Money), metadata={"description": "per currency"})
    conversion = fields.Float(allow_none=True, metadata={"description": "won_deals / leads; null without leads"})
    cost = fields.List(fields.Nested(Money),
                       metadata={"description": "monthly costs prorated to the period's time, per currency"})
    cost_per_won_deal = fields.List(fields.Nested(Money), allow_none=True,
                                    metadata={"description": "cost / won_deals per currency; null without won "
                                                             "deals or when the caller sees only part of the deals"})


class SourcesReport(Schema):
    from_ = UtcDateTime(data_key="from")
    to = UtcDateTime()
    period = fields.String()
    scope = fields.String(metadata={"description": "all, or limited (the caller sees their own / their "
                                                   "team's leads and deals, or asked for one owner_id)"})
    rows = fields.List(fields.Nested(SourcesRow))


# --- several contacts on a deal, each with a role --------------------------------------

MAX_DEAL_CONTACTS = 50


class DealContactIn(Schema):
    contact_id = fields.String(required=True, validate=ID)
    role = fields.String(allow_none=True, validate=validate.Length(max=50), metadata={
        "description": "free text, e.g. decision maker, accountant, lawyer"})
    primary = fields.Boolean(load_default=False)


class DealContactsIn(Schema):
    contacts = fields.List(fields.Nested(DealContactIn), required=True,
                           validate=validate.Length(max=MAX_DEAL_CONTACTS), metadata={
        "description": "the whole list (replaces it): each contact once, exactly one primary "
                       "when not empty (it becomes the deal's contact_id)"})

    @validates_schema
    def one_primary(self, data, **kwargs):
        people = data.get("contacts") or []
        ids = [p["contact_id"] for p in people]
        if len(set(ids)) != len(ids):
            raise ValidationError("Each contact once.", "contacts")
        if people and sum(1 for p in people if p.get("primary")) != 1:
            raise ValidationError("Exactly one primary contact.", "contacts")


class DealContactOut(Schema):
    contact_id = fields.String()
    role = fields.String(allow_none=True)
    primary = fields.Boolean()


class DealContactsOut(Schema):
    deal_id = fields.String()
    contacts = fields.List(fields.Nested(DealContactOut))


class ContactDealsQuery(Schema):
    status = fields.String(validate=validate.OneOf(DEAL_STATUSES))


class ContactDeal(DealOut):
    role = fields.String(allow_none=True, metadata={"description": "the contact's role on it"})
    primary = fields.Boolean()


class ContactDeals(Schema):
    contact_id = fields.String()
    items = fields.List(fields.Nested(ContactDeal), metadata={
        "description": "the deals this contact takes part in (visible to the caller), newest first"})


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------
OWNER_REASONS = ("contact_owner", "open_deal_owner", "fixed_user", "round_robin",
                 "least_open_deals", "no_rule")


class DealCopy(EventData):
    """The deal as the API returns it (DealOut): every key of it is sent."""
    id = fields.String(required=True)
    title = fields.String()
    amount = Int(metadata={"description": "minor units"})
    currency = fields.String()
    pipeline_id = fields.String()
    stage_id = fields.String()
    status = fields.String(metadata={"description": " | ".join(DEAL_STATUSES)})
    contact_id = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)


class DealEvent(EventData):
    """What every deal_* event carries (contacts puts most on the contact's timeline)."""
    deal = Object(DealCopy, required=True, metadata={
        "description": "the deal as the API returns it (DealOut)"})
    contact_id = fields.String(allow_none=True, metadata={"description": "the deal's contact"})
    owner_id = fields.String(allow_none=True, metadata={"description": "the deal's owner"})
    summary = summary_field()
    actor_id = actor_field()
    ref = ref_field("deal")


class DealCreated(DealEvent):
    """A deal was opened (by the API, or by an inbound lead: then event_id is
    `lead-deal:<request_id>`, the same on every redelivery)."""
    pipeline_id = fields.String()
    stage_id = fields.String()
    request_id = fields.String(metadata={"description": "sent when an inbound lead opened it"})


class DealStageChanged(DealEvent):
    """A deal moved to another stage of its pipeline."""
    deal_id = fields.String(required=True)
    pipeline_id = fields.String(required=True)
    from_stage_id = fields.String(allow_none=True)
    to_stage_id = fields.String(required=True)


class DealWon(DealEvent):
    """A deal entered a won stage (after its deal_stage_changed)."""
    owner_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the deal's owner (told, with their manager)"})
    amount = Int(metadata={"description": "minor units"})
    currency = fields.String(metadata={"description": "ISO 4217"})


class DealLost(DealWon):
    """A deal entered a lost stage (after its deal_stage_changed)."""
    lost_reason = fields.String(allow_none=True, metadata={
        "description": "one of the configured lost reasons"})


class DealAssigned(DealEvent):
    """A deal got another owner."""
    owner_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the new owner (told)"})
    previous_owner_id = fields.String(allow_none=True)


class DealUpdated(DealEvent):
    """A deal's fields were changed (every PATCH; a new owner is also a deal_assigned)."""
    deal_id = fields.String(required=True)
    changed = fields.List(fields.String(), metadata={"description": "the fields the PATCH named"})


class DealDeleted(EventData):
    """A deal was deleted (kept, restorable)."""
    deal_id = fields.String(required=True)
    deal = Object(DealCopy, metadata={"description": "the deal as the API returns it (DealOut)"})
    contact_id = fields.String(allow_none=True, metadata={"description": "the deal's contact"})
    owner_id = fields.String(allow_none=True, metadata={"description": "the deal's owner"})
    actor_id = actor_field()
    ref = ref_field("deal")


class DealRestored(DealDeleted):
    """A deleted deal is back."""


class LeadRouted(EventData):
    """An inbound lead got its deal and owner (docs/leads.md); event_id is
    `routed:<request_id>`, the same on every redelivery."""
    request_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    contact_name = fields.String(allow_none=True)
    deal_id = fields.String(required=True)
    deal_created = Bool(metadata={"description": "false: joined the contact's open deal in "
                                                 "the pipeline"})
    deal_title = fields.String()
    pipeline_id = fields.String()
    stage_id = fields.String()
    owner_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the lead's owner (told; null: no rule gave one)"})
    owner_reason = fields.String(metadata={"description": " | ".join(OWNER_REASONS)})
    source = fields.String()
    channel = fields.String()
    received_at = IsoTime()
    form_id = fields.String(allow_none=True)
    route_name = fields.String(allow_none=True)
    first_task = fields.Dict(allow_none=True, metadata={
        "description": "the route's first task, as in contacts.lead_captured"})
    summary = summary_field()
    actor_id = actor_field()
    ref = ref_field("deal")


EVENTS = {
    "deal_created": DealCreated, "deal_stage_changed": DealStageChanged,
    "deal_won": DealWon, "deal_lost": DealLost, "deal_assigned": DealAssigned,
    "lead_routed": LeadRouted, "deal_updated": DealUpdated, "deal_deleted": DealDeleted,
    "deal_restored": DealRestored,
}
