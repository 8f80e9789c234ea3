"""Products, price lists, deal line items, quotes, invoices, payments and the sales
settings: all answered by the sales service (services/sales/README.md)."""
import base64

from flask import Response, request

from contracts import sales as s
from crm_common.errors import ValidationFailed
from gateway.api import UnsupportedMediaType
from gateway.calls import call
from gateway.downloads import content_disposition
from gateway.routes import api

TAG = "sales"
WRITE_ERRORS = (400, 404, 409, 413, 415, 422, 503, 504)
# rendering a PDF and talking to the mail server take longer than a plain call
DOCUMENT_TIMEOUT = 30
IMPORT_MAX_BYTES = 5 * 1024 * 1024  # a catalogue CSV (at most 5,000 rows)


# products and price lists
@api.route("/products", "GET", "The product catalogue (keyset pages; filters active, sku)", TAG,
           query=s.ProductListQuery, response=s.ProductPage, permission="products:read")
def list_products(body, params):
    return call("sales", "list_products", params)


@api.route("/products", "POST", "Add a product or service (SKU unique, case-insensitive)", TAG,
           body=s.ProductIn, response=s.ProductOut, status=201, errors=WRITE_ERRORS,
           permission="products:write")
def create_product(body, params):
    return call("sales", "create_product", body), 201


@api.route("/products/import", "POST", "Import the catalogue from a CSV or XLSX (multipart `file`; "
           "columns sku, name, description, unit, tax_rate, active, price in minor units): "
           "products matched by SKU are changed, others created; any bad row: 422 with the "
           "row errors and nothing written", TAG, query=s.ProductImportQuery,
           response=s.ProductImportResult, errors=WRITE_ERRORS, max_body_bytes=IMPORT_MAX_BYTES,
           extra={"request_body": {"multipart/form-data": {"schema": {
               "type": "object", "required": ["file"],
               "properties": {"file": {"type": "string", "format": "binary"}}}}}},
           permission="products:write")
def import_products(body, params):
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("Send the file as multipart/form-data with a `file` part",
                                   {"content_type": request.content_type})
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("Invalid input", {"fields": {"file": ["Missing file part."]}})
    data = upload.read()
    return call("sales", "import_products", base64.b64encode(data).decode("ascii"),
                params.get("price_list_id"), timeout=DOCUMENT_TIMEOUT)


@api.route("/products/{product_id}", "GET", "A product", TAG, response=s.ProductOut,
           permission="products:read")
def get_product(product_id, body, params):
    return call("sales", "get_product", product_id)


@api.route("/products/{product_id}", "PATCH", "Change a product (active=false retires it)", TAG,
           body=s.ProductIn, partial=True, response=s.ProductOut, errors=WRITE_ERRORS,
           permission="products:write")
def update_product(product_id, body, params):
    return call("sales", "update_product", product_id, body)


@api.route("/products/{product_id}/buyers", "GET", "Contacts that bought the product (`from`, "
           "`to`: in that period), as contact ids in keyset pages", TAG, query=s.BuyersQuery,
           response=s.BuyersPage, permission="sales-reports:read")
def product_buyers(product_id, body, params):
    return call("sales", "product_buyers", product_id, params)


@api.route("/price-lists", "GET", "Price lists (newest first)", TAG, query=s.PageQuery,
           response=s.PriceListPage, permission="products:read")
def list_price_lists(body, params):
    return call("sales", "list_price_lists", params)


@api.route("/price-lists", "POST", "Add a price list (one currency; is_default: the list deals "
           "of that currency take prices from)", TAG, body=s.PriceListIn, response=s.PriceListOut,
           status=201, errors=WRITE_ERRORS, permission="products:write")
def create_price_list(body, params):
    return call("sales", "create_price_list", body), 201


@api.route("/price-lists/{list_id}", "GET", "A price list with its prices", TAG,
           response=s.PriceListOut, permission="products:read")
def get_price_list(list_id, body, params):
    return call("sales", "get_price_list", list_id)


@api.route("/price-lists/{list_id}", "PATCH", "Change a price list", TAG, body=s.PriceListIn,
           partial=True, response=s.PriceListOut, errors=WRITE_ERRORS, permission="products:write")
def update_price_list(list_id, body, params):
    return call("sales", "update_price_list", list_id, body)


@api.route("/price-lists/{list_id}/prices", "PUT", "Set unit prices (minor units) of products "
           "in the list (others kept)", TAG, body=s.PricesIn, response=s.PriceListOut,
           errors=WRITE_ERRORS, permission="products:write")
def set_prices(list_id, body, params):
    return call("sales", "set_prices", list_id, body)


# deal line items
@api.route("/deals/{deal_id}/items", "GET", "A deal's line items and totals", TAG,
           response=s.DealItemsOut, permission="deals:read")
def deal_items(deal_id, body, params):
    return call("sales", "deal_items", deal_id)


@api.route("/deals/{deal_id}/items", "POST", "Add a line (unit price from the price list); the "
           "deal's amount becomes the lines' total", TAG, body=s.ItemIn, response=s.DealItemsOut,
           status=201, errors=WRITE_ERRORS, permission="deals:write")
def add_deal_item(deal_id, body, params):
    return call("sales", "add_deal_item", deal_id, body), 201


@api.route("/deals/{deal_id}/items/{item_id}", "PATCH", "Change a line's quantity or discount",
           TAG, body=s.ItemPatch, partial=True, response=s.DealItemsOut, errors=WRITE_ERRORS,
           permission="deals:write")
def update_deal_item(deal_id, item_id, body, params):
    return call("sales", "update_deal_item", deal_id, item_id, body)


@api.route("/deals/{deal_id}/items/{item_id}/price", "PUT", "Override a line's unit price",
           TAG, body=s.ItemPriceIn, response=s.DealItemsOut, errors=WRITE_ERRORS,
           permission="deal-items:price")
def set_deal_item_price(deal_id, item_id, body, params):
    return call("sales", "set_deal_item_price", deal_id, item_id, body)


@api.route("/deals/{deal_id}/items/{item_id}", "DELETE", "Remove a line", TAG,
           response=s.DealItemsOut, errors=WRITE_ERRORS, permission="deals:write")
def remove_deal_item(deal_id, item_id, body, params):
    return call("sales", "remove_deal_item", deal_id, item_id)


# settings
@api.route("/sales-settings", "GET", "Seller details, default language, numbering series, "
           "quote validity and payment terms", TAG, response=s.SalesSettingsOut,
           permission="sales-settings:read")
def get_sales_settings(body, params):
    return call("sales", "get_sales_settings")


@api.route("/sales-settings", "PATCH", "Change the sales settings", TAG, body=s.SalesSettingsIn,
           partial=True, response=s.SalesSettingsOut, errors=WRITE_ERRORS,
           permission="sales-settings:write")
def update_sales_settings(body, params):
    return call("sales", "update_sales_settings", body)


# quotes
@api.route("/quotes", "GET", "Quotes (filters deal_id, status)", TAG, query=s.DocumentListQuery,
           response=s.DocumentPage, permission="quotes:read")
def list_quotes(body, params):
    return call("sales", "list_quotes", params)


@api.route("/quotes", "POST", "Draft a numbered quote from a deal's line items", TAG,
           body=s.QuoteIn, response=s.DocumentOut, status=201, errors=WRITE_ERRORS,
           permission="quotes:write")
def create_quote(body, params):
    return call("sales", "create_quote", body, timeout=DOCUMENT_TIMEOUT), 201


@api.route("/quotes/{quote_id}", "GET", "A quote", TAG, response=s.DocumentOut,
           permission="quotes:read")
def get_quote(quote_id, body, params):
    return call("sales", "get_quote", quote_id)


@api.route("/quotes/{quote_id}", "PATCH", "Change a draft quote (a sent one: 409, revise it)",
           TAG, body=s.QuotePatch, partial=True, response=s.DocumentOut, errors=WRITE_ERRORS,
           permission="quotes:write")
def update_quote(quote_id, body, params):
    return call("sales", "update_quote", quote_id, body)


@api.route("/quotes/{quote_id}/revise", "POST", "A new version of the quote (same number) from "
           "the deal's current items; the old one is superseded", TAG, response=s.DocumentOut,
           status=201, errors=WRITE_ERRORS, permission="quotes:write")
def revise_quote(quote_id, body, params):
    return call("sales", "revise_quote", quote_id, timeout=DOCUMENT_TIMEOUT), 201


@api.route("/quotes/{quote_id}/send", "POST", "E-mail the quote's PDF to the client (or `to`); "
           "it is immutable from then on", TAG, body=s.SendIn, response=s.DocumentOut,
           errors=WRITE_ERRORS, permission="quotes:write")
def send_quote(quote_id, body, params):
    return call("sales", "send_quote", quote_id, body, timeout=DOCUMENT_TIMEOUT)


@api.route("/quotes/{quote_id}/accept", "POST", "The client accepted the sent quote", TAG,
           response=s.DocumentOut, errors=WRITE_ERRORS, permission="quotes:write")
def accept_quote(quote_id, body, params):
    return call("sales", "accept_quote", quote_id)


@api.route("/quotes/{quote_id}/reject", "POST", "The client rejected the sent quote", TAG,
           response=s.DocumentOut, errors=WRITE_ERRORS, permission="quotes:write")
def reject_quote(quote_id, body, params):
    return call("sales", "reject_quote", quote_id)


@api.route("/quotes/{quote_id}/pdf", "GET", "The quote as PDF in its language", TAG,
           errors=(404, 422, 503, 504), permission="quotes:read")
def quote_pdf(quote_id, body, params):
    return _pdf(call("sales", "quote_pdf", quote_id, timeout=DOCUMENT_TIMEOUT))


# invoices
@api.route("/invoices", "GET", "Invoices (filters deal_id, status)", TAG,
           query=s.DocumentListQuery, response=s.DocumentPage, permission="invoices:read")
def list_invoices(body, params):
    return call("sales", "list_invoices", params)


@api.route("/invoices", "POST", "Issue a numbered invoice from a deal's items or an accepted "
           "quote", TAG, body=s.InvoiceIn, response=s.DocumentOut, status=201,
           errors=WRITE_ERRORS, permission="invoices:write")
def create_invoice(body, params):
    return call("sales", "create_invoice", body, timeout=DOCUMENT_TIMEOUT), 201


@api.route("/invoices/{invoice_id}", "GET", "An invoice with its payments", TAG,
           response=s.DocumentOut, permission="invoices:read")
def get_invoice(invoice_id, body, params):
    return call("sales", "get_invoice", invoice_id)


@api.route("/invoices/{invoice_id}/send", "POST", "E-mail the invoice's PDF to the client (or "
           "`to`)", TAG, body=s.SendIn, response=s.DocumentOut, errors=WRITE_ERRORS,
           permission="invoices:write")
def send_invoice(invoice_id, body, params):
    return call("sales", "send_invoice", invoice_id, body, timeout=DOCUMENT_TIMEOUT)


@api.route("/invoices/{invoice_id}/void", "POST", "Void an invoice without payments (its number "
           "stays used)", TAG, response=s.DocumentOut, errors=WRITE_ERRORS,
           permission="invoices:write")
def void_invoice(invoice_id, body, params):
    return call("sales", "void_invoice", invoice_id)


@api.route("/invoices/{invoice_id}/payments", "POST", "Record a payment (at most what is due); "
           "paying it all marks the invoice paid and moves the deal to its won stage", TAG,
           body=s.PaymentIn, response=s.DocumentOut, status=201, errors=WRITE_ERRORS,
           permission="invoices:pay")
def add_payment(invoice_id, body, params):
    return call("sales", "add_payment", invoice_id, body), 201


@api.route("/invoices/{invoice_id}/pdf", "GET", "The invoice as PDF in its language", TAG,
           errors=(404, 422, 503, 504), permission="invoices:read")
def invoice_pdf(invoice_id, body, params):
    return _pdf(call("sales", "invoice_pdf", invoice_id, timeout=DOCUMENT_TIMEOUT))


# purchase history
@api.route("/purchases", "GET", "What a contact (that the caller sees) or a company bought: "
           "product, quantity, amount, date; newest first", TAG, query=s.PurchaseListQuery,
           response=s.PurchasePage, permission="contacts:read")
def list_purchases(body, params):
    return call("sales", "list_purchases", params)


# reports
@api.route("/reports/sales-by-product", "GET", "Purchases per product and currency in a period "
           "(default: the last year): quantity, amount, buyers", TAG, query=s.SalesReportQuery,
           response=s.SalesByProduct, permission="sales-reports:read")
def sales_by_product(body, params):
    return call("sales", "sales_by_product", params)


@api.route("/reports/average-check", "GET", "Invoices paid in a period per currency: count, "
           "total, average", TAG, query=s.SalesReportQuery, response=s.AverageCheckReport,
           permission="sales-reports:read")
def average_check(body, params):
    return call("sales", "average_check", params)


def _pdf(found):
    return Response(base64.b64decode(found["data"]), mimetype="application/pdf", headers={
        "Content-Disposition": content_disposition(found["filename"]),
        "Cache-Control": "private, max-age=0"})
