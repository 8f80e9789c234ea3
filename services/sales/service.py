"""Sales service entrypoints: thin; the work is in catalogue.py (products, price lists, deal
line items), documents.py (quotes, invoices, payments, purchases, reports) and files.py;
storage in store.py."""
import base64
import logging

from nameko.timer import timer

from crm_common.config import get_settings
from crm_common.context import CallerContext
from crm_common.errors import EXPECTED, NotFound, Unavailable
from crm_common.health import HealthEntrypoints
from crm_common.messaging.events import reliable_handler
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ServiceRpc, rpc
from crm_common.mongo import MongoStore
from crm_common.timeutil import to_iso, utcnow
from services.sales.catalogue import Catalogue, CatalogueImport
from services.sales.documents import Documents
from services.sales.files import Files
from services.sales.store import SalesStore, stale_before

log = logging.getLogger(__name__)
SETTINGS = get_settings()
CONFIG = SETTINGS.sales
ERRORS = EXPECTED + (Unavailable,)


class SalesService(HealthEntrypoints):
    name = "sales"

    store = MongoStore(SalesStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    deals_rpc = ServiceRpc("deals")
    contacts_rpc = ServiceRpc("contacts")
    tasks_rpc = ServiceRpc("tasks")
    conversations_rpc = ServiceRpc("conversations")

    @property
    def catalogue(self):
        return Catalogue(self.store, self.caller)

    @property
    def documents(self):
        return Documents(self.store, self.caller, self.deals_rpc, self.contacts_rpc,
                         self.conversations_rpc)

    @property
    def files(self):
        owners = {"contact": self.contacts_rpc.get_contact, "company": self.contacts_rpc.get_company,
                  "deal": self.deals_rpc.get_deal, "task": self.tasks_rpc.get_task,
                  "quote": lambda i: self.documents.get("quote", i),
                  "invoice": lambda i: self.documents.get("invoice", i)}
        return Files(self.store, self.caller, owners, CONFIG)

    # products and price lists
    @rpc(expected_exceptions=ERRORS)
    def create_product(self, payload):
        return self._announce(self.catalogue.create_product, payload)

    @rpc(expected_exceptions=ERRORS)
    def get_product(self, product_id):
        return self.catalogue.get_product(product_id)

    @rpc(expected_exceptions=ERRORS)
    def update_product(self, product_id, payload):
        return self._announce(self.catalogue.update_product, product_id, payload)

    @rpc(expected_exceptions=ERRORS)
    def list_products(self, params):
        return self.catalogue.list_products(params)

    @rpc(expected_exceptions=ERRORS)
    def import_products(self, content_b64, price_list_id=None):
        """A catalogue CSV (base64): every row checked first, then all written in one
        transaction (422 with the row errors and nothing written otherwise)."""
        data = base64.b64decode(content_b64)
        return self._announce(CatalogueImport(self.store).run, data, price_list_id)

    @rpc(expected_exceptions=ERRORS)
    def create_price_list(self, payload):
        return self._announce(self.catalogue.create_price_list, payload)

    @rpc(expected_exceptions=ERRORS)
    def get_price_list(self, list_id):
        return self.catalogue.get_price_list(list_id)

    @rpc(expected_exceptions=ERRORS)
    def update_price_list(self, list_id, payload):
        return self._announce(self.catalogue.update_price_list, list_id, payload)

    @rpc(expected_exceptions=ERRORS)
    def set_prices(self, list_id, payload):
        return self._announce(self.catalogue.set_prices, list_id, payload)

    @rpc(expected_exceptions=ERRORS)
    def list_price_lists(self, params):
        return self.catalogue.list_price_lists(params)

    # deal line items: the deal is read with the caller's visibility (404 if unseen); its
    # items total is set at once, and again by deal_items_changed (the amount follows it
    # unless the deal's amount_override)
    @rpc(expected_exceptions=ERRORS)
    def deal_items(self, deal_id):
        return self.catalogue.items(self.deals_rpc.get_deal(deal_id))

    @rpc(expected_exceptions=ERRORS)
    def add_deal_item(self, deal_id, payload):
        deal = self.deals_rpc.get_deal(deal_id)
        return self._items_changed(self._announce(self.catalogue.add_item, deal, payload))

    @rpc(expected_exceptions=ERRORS)
    def update_deal_item(self, deal_id, item_id, payload):
        deal = self.deals_rpc.get_deal(deal_id)
        return self._items_changed(self._announce(self.catalogue.update_item, deal, item_id, payload))

    @rpc(expected_exceptions=ERRORS)
    def set_deal_item_price(self, deal_id, item_id, payload):
        deal = self.deals_rpc.get_deal(deal_id)
        return self._items_changed(self._announce(self.catalogue.set_item_price, deal, item_id,
                                                  payload))

    @rpc(expected_exceptions=ERRORS)
    def remove_deal_item(self, deal_id, item_id):
        deal = self.deals_rpc.get_deal(deal_id)
        return self._items_changed(self._announce(self.catalogue.remove_item, deal, item_id))

    def _items_changed(self, result):
        try:
            self.deals_rpc.set_items_total(result["deal_id"], result["totals"]["total"])
        except Exception:  # noqa: BLE001 - deal_items_changed's handler sets it again
            log.warning("deal %s amount not set now; the event handler will", result["deal_id"],
                        exc_info=True)
        return result

    @reliable_handler("sales", "deal_items_changed")
    def on_deal_items_changed(self, event):
        """The deal's items total = its items' current total (read now: an older event
        never writes an older total; the same total is a no-op in deals)."""
        deal_id = event["data"]["deal_id"]
        items = self.store.get_items(deal_id)
        if items is None:
            return
        try:
            self.deals_rpc.set_items_total(deal_id, items["totals"]["total"])
        except NotFound:
            return  # deleted meanwhile

    # settings
    @rpc(expected_exceptions=ERRORS)
    def get_sales_settings(self):
        return self.documents.get_settings()

    @rpc(expected_exceptions=ERRORS)
    def update_sales_settings(self, payload):
        return self.documents.update_settings(payload)

    # quotes
    @rpc(expected_exceptions=ERRORS)
    def create_quote(self, payload):
        ctx, data = self.documents.quote_context(payload)
        return self._announce(self.documents.create_quote, ctx, data)

    @rpc(expected_exceptions=ERRORS)
    def get_quote(self, quote_id):
        return self.documents.get("quote", quote_id)

    @rpc(expected_exceptions=ERRORS)
    def list_quotes(self, params):
        return self.documents.list("quote", params)

    @rpc(expected_exceptions=ERRORS)
    def update_quote(self, quote_id, payload):
        return self._announce(self.documents.update_quote, quote_id, payload)

    @rpc(expected_exceptions=ERRORS)
    def revise_quote(self, quote_id):
        old, ctx = self.documents.revise_context(quote_id)
        return self._announce(self.documents.revise_quote, old, ctx)

    @rpc(expected_exceptions=ERRORS)
    def send_quote(self, quote_id, payload=None):
        doc, message = self.documents.send("quote", quote_id, payload)
        return self._announce(self.documents.mark_sent, doc, message)

    @rpc(expected_exceptions=ERRORS)
    def accept_quote(self, quote_id):
        return self._announce(self.documents.decide_quote, quote_id, True)

    @rpc(expected_exceptions=ERRORS)
    def reject_quote(self, quote_id):
        return self._announce(self.documents.decide_quote, quote_id, False)

    @rpc(expected_exceptions=ERRORS)
    def quote_pdf(self, quote_id):
        return self.documents.pdf("quote", quote_id)

    # invoices
    @rpc(expected_exceptions=ERRORS)
    def create_invoice(self, payload):
        ctx, data, quote = self.documents.invoice_context(payload)
        return self._announce(self.documents.create_invoice, ctx, data, quote)

    @rpc(expected_exceptions=ERRORS)
    def create_invoice_from_deal(self, deal_id, options=None):
        """For automation: an invoice of the deal's current line items (options: language,
        due_date, notes), as POST /invoices with deal_id."""
        return self.create_invoice({**(options or {}), "deal_id": deal_id})

    @rpc(expected_exceptions=ERRORS)
    def get_invoice(self, invoice_id):
        return self.documents.get("invoice", invoice_id)

    @rpc(expected_exceptions=ERRORS)
    def list_invoices(self, params):
        return self.documents.list("invoice", params)

    @rpc(expected_exceptions=ERRORS)
    def send_invoice(self, invoice_id, payload=None):
        doc, message = self.documents.send("invoice", invoice_id, payload)
        return self._announce(self.documents.mark_sent, doc, message)

    @rpc(expected_exceptions=ERRORS)
    def void_invoice(self, invoice_id):
        return self._announce(self.documents.void_invoice, invoice_id)

    @rpc(expected_exceptions=ERRORS)
    def add_payment(self, invoice_id, payload):
        return self._announce(self.documents.add_payment, invoice_id, payload)

    @rpc(expected_exceptions=ERRORS)
    def invoice_pdf(self, invoice_id):
        return self.documents.pdf("invoice", invoice_id)

    @reliable_handler("sales", "invoice_paid")
    def on_invoice_paid(self, event):
        """What the client bought is recorded; the deal moves to its won stage."""
        self._handle_and_announce(self.documents.on_invoice_paid, event)
        if CONFIG.won_on_paid:
            self.documents.won_stage_move(event["data"]["deal_id"])

    @reliable_handler("contacts", "contact_merged")
    def on_contact_merged(self, event):
        """What the merged contacts bought, and their documents, follow the survivor."""
        self._handle_and_announce(self.documents.on_contact_merged, event)

    @reliable_handler("deals", "deal_won")
    def on_deal_won(self, event):
        """What the client bought (the deal's items) is recorded."""
        self._handle_and_announce(self.documents.on_deal_won, event)

    @timer(interval=CONFIG.overdue_tick_seconds)
    def tick(self):
        count = self.documents.scan_overdue(self._announce)
        if count:
            log.info("%d invoices overdue", count)
        for upload_id in self.store.stale_uploads(stale_before(utcnow())):
            self.store.drop_upload(upload_id)

    # purchases and reports
    @rpc(expected_exceptions=ERRORS)
    def product_buyers(self, product_id, params=None):
        """Contact ids that bought the product (`from`/`to`: in that period), in id order,
        keyset pages: for the contacts list's "bought product X" filter."""
        return self.documents.buyers(product_id, params or {})

    @rpc(expected_exceptions=ERRORS)
    def search_records(self, kind="purchase", ids=None, after=None, limit=500, since=None,
                       cursor=None, until=None):
        """For the search index's rebuild: purchases ({contact_id, product_id,
        purchased_at}) in windows of their date (contracts/search.py RecordsPage)."""
        return self.store.search_records("purchases", lambda docs: [{
            "contact_id": d.get("contact_id"), "product_id": d["product_id"],
            "purchased_at": to_iso(d["date"])} for d in docs], ids, after, limit, since,
            cursor, until, window_field="date")

    @rpc(expected_exceptions=ERRORS)
    def list_purchases(self, params):
        return self.documents.purchases(params)

    @rpc(expected_exceptions=ERRORS)
    def sales_by_product(self, params):
        return self.documents.sales_by_product(params)

    @rpc(expected_exceptions=ERRORS)
    def average_check(self, params):
        return self.documents.average_check(params)

    # files
    @rpc(expected_exceptions=ERRORS)
    def begin_upload(self, params, filename, declared_size=None):
        return self.files.begin(params, filename, declared_size)

    @rpc(expected_exceptions=ERRORS)
    def upload_chunk(self, upload_id, n, data_b64):
        return self.files.chunk(upload_id, n, data_b64)

    @rpc(expected_exceptions=ERRORS)
    def finish_upload(self, upload_id, sha256=None):
        return self._announce(self.files.finish, upload_id, sha256)

    @rpc(expected_exceptions=ERRORS)
    def abort_upload(self, upload_id):
        return self.files.abort(upload_id)

    @rpc(expected_exceptions=ERRORS)
    def list_files(self, params):
        return self.files.list(params)

    @rpc(expected_exceptions=ERRORS)
    def get_file(self, file_id):
        return self.files.get(file_id)

    @rpc(expected_exceptions=ERRORS)
    def delete_file(self, file_id):
        return self._announce(self.files.delete, file_id)

    @rpc(expected_exceptions=ERRORS)
    def restore_file(self, file_id):
        return self._announce(self.files.restore, file_id)

    @rpc(expected_exceptions=ERRORS)
    def file_range(self, file_id, start, length):
        return self.files.read(file_id, start, length)

    @rpc(expected_exceptions=ERRORS)
    def file_link(self, file_id, payload=None):
        return self.files.link(file_id, payload)

    @rpc(expected_exceptions=ERRORS)
    def shared_file(self, token):
        return self.files.shared(token)

    @rpc(expected_exceptions=ERRORS)
    def shared_file_range(self, token, start, length):
        found = self.files.shared(token)
        return self.files.read(found["id"], start, length, check=False)
