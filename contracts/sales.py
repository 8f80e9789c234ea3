"""The sales documents API (products, price lists, deal line items, quotes, invoices,
payments, files), one source: the service validates with these, the gateway validates the
same way before calling and generates the OpenAPI document from them. Money: integer minor
units; quantities: decimals with at most 3 places (stored as thousandths); rates: percent
with at most 2 places (stored as basis points). services/sales/money.py has the rules."""
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from contracts.currencies import ISO_4217
from contracts.events import EventData, Int, IsoTime, Object, actor_field, ref_field, summary_field
from crm_common.fields import Pattern, PageOf, PageQuery, UtcDateTime, cursor_field, list_limit_field

ID = validate.Length(1, 40)
LANGUAGES = ("en", "it", "ru", "es", "he")
QUOTE_STATUSES = ("draft", "sent", "accepted", "rejected", "superseded")
INVOICE_STATUSES = ("issued", "partially_paid", "paid", "overdue", "void")
RECORD_TYPES = ("contact", "company", "deal", "task", "quote", "invoice")
PAYMENT_METHODS = ("bank_transfer", "card", "cash", "other")
MAX_PRICE = 10 ** 12
SKU = Pattern(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$",
                      error="Letters, digits and . _ / - (at most 64), starting with a letter or digit.")
DATE = Pattern(r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
                       error="A date YYYY-MM-DD.")


def scaled(value, places):
    """A decimal given as text or a JSON number as an integer of 10^-places units; None
    when it is not a finite decimal with at most `places` decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    shifted = number.scaleb(places)
    if shifted != shifted.to_integral_value():
        return None
    return int(shifted)


def unscaled(value, places):
    """The integer of 10^-places units as the shortest decimal text ("2.5", "3")."""
    text = str(Decimal(value).scaleb(-places).normalize())
    return f"{Decimal(text):f}"


def _currency(**kwargs):
    return fields.String(validate=validate.OneOf(sorted(ISO_4217), error="Unknown ISO 4217 currency."),
                         metadata={"description": "ISO 4217"}, **kwargs)


class DecimalText(fields.Field):
    """A decimal as a JSON number or text, at most `places` decimals, within [minimum,
    maximum]; loads as an integer of 10^-places units, dumps as text ("2.5")."""

    def __init__(self, places, minimum, maximum, **kwargs):
        self.places, self.minimum, self.maximum = places, minimum, maximum
        digits = len(str(int(maximum)))  # the pattern bounds digits and decimals as the server
        text = {"type": "string", "pattern": rf"^[0-9]{{1,{digits}}}(\.[0-9]{{1,{places}}})?$"}
        metadata = {"anyOf": [text, {"type": "number", "minimum": minimum, "maximum": maximum}],
                    "description": f"a decimal (number or text), at most {places} decimals, "
                                   f"{minimum}..{maximum}"}
        super().__init__(metadata={**metadata, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        number = scaled(value, self.places)
        if number is None:
            raise ValidationError(f"A decimal with at most {self.places} decimals.")
        if not self.minimum * 10 ** self.places <= number <= self.maximum * 10 ** self.places:
            raise ValidationError(f"Must be between {self.minimum} and {self.maximum}.")
        return number

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else unscaled(value, self.places)


def quantity_field(**kwargs):
    return DecimalText(3, 0.001, 1_000_000, **kwargs)


def percent_field(**kwargs):
    return DecimalText(2, 0, 100, **kwargs)


def price_field(**kwargs):
    return fields.Integer(strict=True, validate=validate.Range(0, MAX_PRICE, error=(
        f"A price in minor units between 0 and {MAX_PRICE}.")), **kwargs)


# --- products and price lists ------------------------------------------------------------

class ProductIn(Schema):
    # SKUs are unique (409): a few, each created once
    OPENAPI_EXAMPLES = tuple({"sku": sku, "name": name, "unit": "pcs"} for sku, name in (
        ("LIC-STD", "Standard licence"), ("LIC-PRO", "Pro licence"), ("SUP-1Y", "Support, 1 year")))
    sku = fields.String(required=True, validate=SKU)
    name = fields.String(required=True, validate=validate.Length(1, 200))
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
    unit = fields.String(load_default="pcs", validate=validate.Length(1, 20))
    tax_rate = percent_field(load_default=0, data_key="tax_rate", attribute="tax_bp")
    active = fields.Boolean(load_default=True)


class ProductImportQuery(Schema):
    price_list_id = fields.String(validate=ID, metadata={
        "description": "where a `price` column's prices go (required with one)"})


class ImportRowError(Schema):
    row = fields.Integer(metadata={"description": "1 = the first row after the header"})
    field = fields.String()
    message = fields.String()


class ProductImportResult(Schema):
    created = fields.Integer()
    updated = fields.Integer()
    prices = fields.Integer(metadata={"description": "prices set in the price list"})


class ProductOut(Schema):
    id = fields.String()
    sku = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    unit = fields.String()
    tax_rate = percent_field(attribute="tax_bp")
    active = fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class ProductListQuery(PageQuery):
    active = fields.Boolean()
    sku = fields.String(validate=validate.Length(1, 64))


class ProductPage(PageOf):
    items = fields.List(fields.Nested(ProductOut))


class PriceListIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    currency = _currency(required=True)
    valid_from = fields.String(allow_none=True, validate=DATE)
    valid_to = fields.String(allow_none=True, validate=DATE, metadata={
        "description": "on or after valid_from (else 422)"})
    is_default = fields.Boolean(load_default=False, metadata={
        "description": "the list deals of this currency take prices from (one per currency)"})

    @validates_schema
    def coherent(self, data, partial=False, **kwargs):
        if data.get("valid_from") and data.get("valid_to") and data["valid_to"] < data["valid_from"]:
            raise ValidationError("valid_to is before valid_from.", "valid_to")


class PriceOut(Schema):
    product_id = fields.String()
    unit_price = fields.Integer()


class PriceListOut(Schema):
    id = fields.String()
    name = fields.String()
    currency = fields.String()
    valid_from = fields.String(allow_none=True)
    valid_to = fields.String(allow_none=True)
    is_default = fields.Boolean()
    prices = fields.List(fields.Nested(PriceOut))
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class PriceListPage(PageOf):
    items = fields.List(fields.Nested(PriceListOut))


class PriceIn(Schema):
    product_id = fields.String(required=True, validate=ID)
    unit_price = price_field(required=True)


class PricesIn(Schema):
    prices = fields.List(fields.Nested(PriceIn), required=True, validate=validate.Length(1, 1000))


# --- deal line items ---------------------------------------------------------------------

class ItemIn(Schema):
    product_id = fields.String(required=True, validate=ID)
    quantity = quantity_field(required=True, attribute="quantity_milli")
    price_list_id = fields.String(validate=ID, metadata={
        "description": "default: the default price list of the deal's currency"})
    discount_percent = percent_field(attribute="discount_bp")
    discount_amount = fields.Integer(strict=True, validate=validate.Range(0, 10 ** 15))

    @validates_schema
    def one_discount(self, data, partial=False, **kwargs):
        if data.get("discount_bp") is not None and data.get("discount_amount") is not None:
            raise ValidationError("Give discount_percent or discount_amount, not both.",
                                  "discount_amount")


class ItemPatch(Schema):
    quantity = quantity_field(attribute="quantity_milli")
    discount_percent = percent_field(allow_none=True, attribute="discount_bp")
    discount_amount = fields.Integer(strict=True, allow_none=True, validate=validate.Range(0, 10 ** 15))


class ItemPriceIn(Schema):
    unit_price = price_field(required=True)


class ItemOut(Schema):
    id = fields.String()
    product_id = fields.String()
    sku = fields.String()
    name = fields.String()
    unit = fields.String()
    quantity = quantity_field(attribute="quantity_milli")
    unit_price = fields.Integer()
    price_list_id = fields.String(allow_none=True)
    price_overridden = fields.Boolean()
    discount_percent = percent_field(attribute="discount_bp", allow_none=True)
    discount_amount = fields.Integer(allow_none=True)
    tax_rate = percent_field(attribute="tax_bp")
    gross = fields.Integer()
    discount = fields.Integer()
    net = fields.Integer()
    tax = fields.Integer()
    total = fields.Integer()


class TaxLine(Schema):
    tax_rate = percent_field(attribute="tax_bp")
    net = fields.Integer()
    tax = fields.Integer()


class Totals(Schema):
    gross = fields.Integer()
    discount = fields.Integer()
    net = fields.Integer()
    tax = fields.Integer()
    total = fields.Integer(metadata={"description": "the deal's amount"})
    taxes = fields.List(fields.Nested(TaxLine))


class DealItemsOut(Schema):
    deal_id = fields.String()
    currency = fields.String()
    items = fields.List(fields.Nested(ItemOut))
    totals = fields.Nested(Totals)
    version = fields.Integer()


# --- company settings --------------------------------------------------------------------

class CompanyDetails(Schema):
    name = fields.String(validate=validate.Length(1, 200))
    address = fields.String(allow_none=True, validate=validate.Length(max=500))
    vat_id = fields.String(allow_none=True, validate=validate.Length(max=50))
    email = fields.Email(allow_none=True)
    phone = fields.String(allow_none=True, validate=validate.Length(max=50))
    iban = fields.String(allow_none=True, validate=validate.Length(max=50))


class SeriesIn(Schema):
    quote = fields.String(validate=Pattern(r"^[A-Z0-9]{1,10}$"))
    invoice = fields.String(validate=Pattern(r"^[A-Z0-9]{1,10}$"))


class SalesSettingsIn(Schema):
    company = fields.Nested(CompanyDetails)
    language = fields.String(validate=validate.OneOf(LANGUAGES))
    quote_validity_days = fields.Integer(strict=True, validate=validate.Range(1, 365))
    payment_terms_days = fields.Integer(strict=True, validate=validate.Range(0, 365))
    series = fields.Nested(SeriesIn)


class CompanyOut(Schema):
    name = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    vat_id = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    iban = fields.String(allow_none=True)


class SeriesOut(Schema):
    quote = fields.String()
    invoice = fields.String()


class SalesSettingsOut(Schema):
    company = fields.Nested(CompanyOut)
    language = fields.String()
    quote_validity_days = fields.Integer()
    payment_terms_days = fields.Integer()
    series = fields.Nested(SeriesOut)
    updated_at = UtcDateTime(allow_none=True)


# --- quotes and invoices -----------------------------------------------------------------

class Party(Schema):
    name = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    vat_id = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)


class QuoteIn(Schema):
    # deal_id names a deal with line items (a created deal's id replaces it: the links)
    OPENAPI_EXAMPLES = ({"deal_id": "6b15947da1b615f0043a58db", "language": "en",
                         "notes": "Prices valid for 30 days."},)
    deal_id = fields.String(required=True, validate=ID)
    language = fields.String(validate=validate.OneOf(LANGUAGES), metadata={
        "description": "default: the sales settings' language"})
    valid_until = fields.String(validate=DATE)
    notes = fields.String(allow_none=True, validate=validate.Length(max=2000))


class QuotePatch(Schema):
    language = fields.String(validate=validate.OneOf(LANGUAGES))
    valid_until = fields.String(validate=DATE)
    notes = fields.String(allow_none=True, validate=validate.Length(max=2000))


class SendIn(Schema):
    """Sent through conversations to the client contact's conversation (its thread)."""
    to = fields.Email(metadata={"description": "optional check: one of the client contact's "
                                               "e-mails (422 otherwise); conversations addresses "
                                               "the mail (the thread's, else the first e-mail)"})
    message = fields.String(validate=validate.Length(max=5000))


class DocumentOut(Schema):
    id = fields.String()
    kind = fields.String(metadata={"description": "quote | invoice"})
    number = fields.String(metadata={"description": "<series>-<year>-<sequence>, no gaps"})
    version = fields.Integer(metadata={"description": "a changed quote is a new version"})
    status = fields.String()
    deal_id = fields.String()
    quote_id = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    language = fields.String()
    currency = fields.String()
    items = fields.List(fields.Nested(ItemOut))
    totals = fields.Nested(Totals)
    seller = fields.Nested(Party)
    client = fields.Nested(Party)
    issue_date = fields.String()
    valid_until = fields.String(allow_none=True)
    due_date = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    paid = fields.Integer(allow_none=True, metadata={"description": "invoices: paid so far"})
    payments = fields.List(fields.Dict())
    superseded_by = fields.String(allow_none=True)
    sent_at = UtcDateTime(allow_none=True)
    message_id = fields.String(allow_none=True, metadata={
        "description": "the last send's message in conversations (its delivery status)"})
    conversation_id = fields.String(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class DocumentListQuery(PageQuery):
    deal_id = fields.String(validate=ID)
    status = fields.String(validate=validate.Length(1, 20))


class DocumentPage(PageOf):
    items = fields.List(fields.Nested(DocumentOut))


class InvoiceIn(Schema):
    OPENAPI_EXAMPLES = ({"deal_id": "6b15947da1b615f0043a58db", "notes": "Thank you for your order."},)
    deal_id = fields.String(validate=ID)
    quote_id = fields.String(validate=ID, metadata={"description": "an accepted quote"})
    language = fields.String(validate=validate.OneOf(LANGUAGES))
    due_date = fields.String(validate=DATE, metadata={
        "description": "default: today + payment_terms_days"})
    notes = fields.String(allow_none=True, validate=validate.Length(max=2000))

    @validates_schema
    def one_source(self, data, partial=False, **kwargs):
        if bool(data.get("deal_id")) == bool(data.get("quote_id")):
            raise ValidationError("Give deal_id or quote_id.", "_schema")


class PaymentIn(Schema):
    amount = fields.Integer(strict=True, required=True, validate=validate.Range(1, 10 ** 15))
    paid_at = UtcDateTime(metadata={"description": "default: now"})
    method = fields.String(load_default="bank_transfer", validate=validate.OneOf(PAYMENT_METHODS))
    reference = fields.String(allow_none=True, validate=validate.Length(max=200))


# --- purchases and reports ---------------------------------------------------------------

class BuyersQuery(Schema):
    since = UtcDateTime(data_key="from")
    until = UtcDateTime(data_key="to")
    limit = list_limit_field()
    cursor = cursor_field()


class BuyersPage(PageOf):
    items = fields.List(fields.String(), metadata={"description": "contact ids"})


class PurchaseListQuery(Schema):
    contact_id = fields.String(validate=ID)
    company_id = fields.String(validate=ID)
    limit = list_limit_field()
    cursor = cursor_field()

    @validates_schema
    def one_owner(self, data, partial=False, **kwargs):
        if bool(data.get("contact_id")) == bool(data.get("company_id")):
            raise ValidationError("Give contact_id or company_id.", "_schema")


class PurchaseOut(Schema):
    id = fields.String()
    contact_id = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)
    deal_id = fields.String()
    product_id = fields.String()
    sku = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    quantity = quantity_field(attribute="quantity_milli")
    amount = fields.Integer(metadata={"description": "the line's total, tax included"})
    currency = fields.String()
    date = UtcDateTime()


class PurchasePage(PageOf):
    items = fields.List(fields.Nested(PurchaseOut))


class SalesReportQuery(Schema):
    since = UtcDateTime(data_key="from")
    until = UtcDateTime(data_key="to")
    currency = _currency()


class ProductSales(Schema):
    product_id = fields.String()
    sku = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    currency = fields.String()
    quantity = quantity_field(attribute="quantity_milli")
    amount = fields.Integer()
    buyers = fields.Integer()


class SalesByProduct(Schema):
    items = fields.List(fields.Nested(ProductSales))


class AverageCheck(Schema):
    currency = fields.String()
    invoices = fields.Integer()
    total = fields.Integer()
    average = fields.Integer(metadata={"description": "half-even rounded"})


class AverageCheckReport(Schema):
    items = fields.List(fields.Nested(AverageCheck))


# --- files -------------------------------------------------------------------------------

class FileListQuery(Schema):
    record_type = fields.String(required=True, validate=validate.OneOf(RECORD_TYPES))
    record_id = fields.String(required=True, validate=ID)
    deleted = fields.Boolean(load_default=False, metadata={"description": "the deleted ones"})
    limit = list_limit_field()
    cursor = cursor_field()


class FileOut(Schema):
    id = fields.String()
    record_type = fields.String()
    record_id = fields.String()
    filename = fields.String()
    content_type = fields.String(metadata={"description": "sniffed from the content"})
    size = fields.Integer()
    sha256 = fields.String()
    uploaded_by = fields.String(allow_none=True)
    created_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)


class FilePage(PageOf):
    items = fields.List(fields.Nested(FileOut))


class FileUploadQuery(Schema):
    record_type = fields.String(required=True, validate=validate.OneOf(RECORD_TYPES))
    record_id = fields.String(required=True, validate=ID)


class LinkIn(Schema):
    expires_in = fields.Integer(strict=True, load_default=7 * 24 * 3600,
                                validate=validate.Range(1, 365 * 24 * 3600),
                                metadata={"description": "seconds (capped by CRM_FILE_LINK_MAX_SECONDS)"})


class LinkOut(Schema):
    url = fields.String(metadata={"description": "a path under /api/v1: anyone with it downloads"})
    token = fields.String()
    expires_at = UtcDateTime()


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class SalesEvent(EventData):
    deal_id = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True, metadata={"description": "the client contact"})
    owner_id = fields.String(allow_none=True, metadata={"description": "the deal's owner"})
    actor_id = actor_field()
    summary = summary_field()


class DealItemsChanged(SalesEvent):
    """A deal's line items changed; `total` is its new amount (the deals service is told)."""
    deal_id = fields.String(required=True)
    currency = fields.String()
    total = Int(required=True, metadata={"description": "minor units, tax included"})
    items_count = Int()
    version = Int(metadata={"description": "the items' version"})
    ref = ref_field("deal")


class DocumentEvent(SalesEvent):
    document_id = fields.String(required=True)
    number = fields.String(required=True)
    currency = fields.String()
    total = Int(metadata={"description": "minor units, tax included"})


class QuoteCreated(DocumentEvent):
    """A quote (or a new version of one) was drafted from a deal."""
    version = Int()
    ref = ref_field("quote")


class QuoteSent(DocumentEvent):
    """A quote was sent to the client (it is immutable from now on)."""
    to = fields.String(allow_none=True)
    ref = ref_field("quote")


class QuoteAccepted(DocumentEvent):
    """The client accepted a sent quote."""
    ref = ref_field("quote")


class QuoteRejected(DocumentEvent):
    """The client rejected a sent quote."""
    ref = ref_field("quote")


class InvoiceIssued(DocumentEvent):
    """An invoice was numbered and issued."""
    due_date = fields.String()
    ref = ref_field("invoice")


class InvoiceSent(DocumentEvent):
    """An invoice was e-mailed to the client."""
    to = fields.String(allow_none=True)
    ref = ref_field("invoice")


class PaymentRecorded(DocumentEvent):
    """A payment was recorded against an invoice."""
    amount = Int(required=True)
    paid = Int(metadata={"description": "paid so far"})
    status = fields.String()
    ref = ref_field("invoice")


class InvoicePaid(DocumentEvent):
    """An invoice is fully paid (the deal is moved to its won stage; purchases recorded)."""
    paid_at = IsoTime()
    ref = ref_field("invoice")


class InvoiceOverdue(DocumentEvent):
    """An invoice passed its due date unpaid (told once, to the owner)."""
    owner_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the deal's owner (told)"})
    due_date = fields.String()
    ref = ref_field("invoice")


class InvoiceVoided(DocumentEvent):
    """An invoice was voided (its number stays used)."""
    ref = ref_field("invoice")


class PurchaseItem(EventData):
    """One purchase."""
    product_id = fields.String(required=True)
    purchased_at = IsoTime(required=True)


class PurchasesRecorded(EventData):
    """What a client bought on a deal (a paid invoice's or won deal's lines), all of the
    deal's purchases each time (announced again on a retried event: idempotent); after a
    merge, all of the survivor's (`deal_id` null)."""
    deal_id = fields.String(required=True, allow_none=True)
    contact_id = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)
    items = fields.List(Object(PurchaseItem), required=True, metadata={
        "description": "one per purchase of the deal (a line)"})


class FileEvent(EventData):
    file_id = fields.String(required=True)
    contact_id = fields.String(allow_none=True, metadata={
        "description": "the contact, when the record is one (its timeline)"})
    record_type = fields.String(required=True)
    record_id = fields.String(required=True)
    filename = fields.String()
    actor_id = actor_field()
    summary = summary_field()
    ref = ref_field("file")


class FileUploaded(FileEvent):
    """A file was attached to a record."""
    size = Int()
    content_type = fields.String()


class FileDeleted(FileEvent):
    """A file was deleted (restorable)."""


class FileRestored(FileEvent):
    """A deleted file was restored."""


EVENTS = {
    "deal_items_changed": DealItemsChanged, "quote_created": QuoteCreated,
    "quote_sent": QuoteSent, "quote_accepted": QuoteAccepted, "quote_rejected": QuoteRejected,
    "invoice_issued": InvoiceIssued, "invoice_sent": InvoiceSent,
    "payment_recorded": PaymentRecorded, "invoice_paid": InvoicePaid,
    "invoice_overdue": InvoiceOverdue, "invoice_voided": InvoiceVoided,
    "purchases_recorded": PurchasesRecorded, "file_uploaded": FileUploaded, "file_deleted": FileDeleted, "file_restored": FileRestored,
}
