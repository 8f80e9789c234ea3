"""Quotes, invoices, payments, purchase history and the sales reports. Each write returns
(result, events); what a write needs from other services is asked before it (`*_context`),
so the transaction stays short."""
import base64
import logging
from datetime import datetime, time, timedelta, timezone

from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.fields import with_every_key
from crm_common.cursors import sign_token, verify_token
from crm_common.ids import new_id
from crm_common.timeutil import to_iso, utcnow
from crm_common.validation import load
from contracts import sales as schemas
from services.sales.catalogue import event, invalid
from services.sales.money import round_half_even
from services.sales.pdf import format_money, render_pdf

log = logging.getLogger(__name__)
quote_in, quote_patch, invoice_in = schemas.QuoteIn(), schemas.QuotePatch(), schemas.InvoiceIn()
send_in, payment_in = schemas.SendIn(), schemas.PaymentIn()
settings_in, settings_out = schemas.SalesSettingsIn(), schemas.SalesSettingsOut()
document_out, list_query = schemas.DocumentOut(), schemas.DocumentListQuery()
buyers_query, report_query = schemas.BuyersQuery(), schemas.SalesReportQuery()
purchase_query, purchase_out = schemas.PurchaseListQuery(), schemas.PurchaseOut()
DEFAULT_SETTINGS = {"company": {"name": None}, "language": "en", "quote_validity_days": 30,
                    "payment_terms_days": 30, "series": {"quote": "Q", "invoice": "INV"}}
OPEN_INVOICE = ("issued", "partially_paid", "overdue")


def dump_document(doc):
    out = document_out.dump({**doc, "items": doc.get("lines", [])})
    return with_every_key(document_out, out, doc["_id"])


def _day_after(date_text):
    """The first instant after a due date (UTC midnight of the next day)."""
    day = datetime.fromisoformat(date_text).date() + timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def _party_from_contact(contact, company):
    name = None
    if contact:
        name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p) or None
    email = next((e.get("email") for e in (contact or {}).get("emails") or [] if e.get("email")), None)
    if company:
        email = email or next((e.get("email") for e in company.get("emails") or [] if e.get("email")), None)
    address = None
    if company and isinstance(company.get("address"), dict):
        address = ", ".join(str(v) for v in company["address"].values() if v) or None
    return {"name": (company or {}).get("name") if company and not name else
            (f"{name} ({company['name']})" if company and name else name),
            "email": email, "address": address,
            "vat_id": ((company or {}).get("custom") or {}).get("vat_id"),
            "contact_id": (contact or {}).get("id"), "company_id": (company or {}).get("id")}


class Documents:
    def __init__(self, store, caller, deals_rpc, contacts_rpc, conversations_rpc=None):
        self.store = store
        self.caller = caller
        self.deals_rpc = deals_rpc
        self.contacts_rpc = contacts_rpc
        self.conversations_rpc = conversations_rpc

    def _visible(self):
        return self.caller.owner_filter("owner_id")

    # settings
    def get_settings(self):
        stored = self.store.get_settings()
        merged = {**DEFAULT_SETTINGS, **{k: v for k, v in stored.items() if k != "_id"}}
        return settings_out.dump(merged)

    def update_settings(self, payload):
        data = load(settings_in, payload, partial=True, json_body=True)
        current = self.get_settings()
        if "series" in data:
            data["series"] = {**current["series"], **data["series"]}
        if "company" in data:
            data["company"] = {**current.get("company", {}), **data["company"]}
        self.store.put_settings({**data, "updated_at": utcnow()})
        return self.get_settings()

    # what a document is made of, asked before the write
    def deal_context(self, deal_id, language=None, source=None):
        deal = self.deals_rpc.get_deal(deal_id)  # 404 unless the caller sees the deal
        items = self.store.get_items(deal_id)
        lines = (source or {}).get("lines") or (items or {}).get("lines") or []
        if not lines:
            raise invalid("deal_id", "The deal has no line items.")
        contact = company = None
        if deal.get("contact_id"):
            try:
                contact = self.contacts_rpc.get_contact(deal["contact_id"])
            except NotFound:
                contact = None
        if deal.get("company_id"):
            try:
                company = self.contacts_rpc.get_company(deal["company_id"])
            except NotFound:
                company = None
        settings = self.get_settings()
        return {"deal": deal, "lines": lines,
                "totals": (source or {}).get("totals") or items["totals"],
                "currency": (source or {}).get("currency") or deal["currency"],
                "settings": settings, "seller": dict(settings["company"]),
                "client": _party_from_contact(contact, company),
                "language": language or settings["language"]}

    def _new_document(self, kind, ctx, data, number, version=1):
        now = utcnow()
        deal = ctx["deal"]
        return {"_id": new_id(), "kind": kind, "number": number, "version": version,
                "deal_id": deal["id"], "owner_id": deal.get("owner_id"),
                "contact_id": deal.get("contact_id"), "company_id": deal.get("company_id"),
                "language": ctx["language"], "currency": ctx["currency"],
                "lines": ctx["lines"], "totals": ctx["totals"], "seller": ctx["seller"],
                "client": ctx["client"], "issue_date": now.date().isoformat(),
                "notes": data.get("notes"), "created_at": now, "updated_at": now}

    def _number(self, kind, settings):
        series = settings["series"][kind]
        year = utcnow().year
        key = f"{kind}:{series}:{year}"
        return key, f"{series}-{year}-"

    def reserve_counter(self, kind, settings):
        key, _ = self._number(kind, settings)
        self.store.ensure_counter(key)

    def _next_number(self, kind, settings):
        key, prefix = self._number(kind, settings)
        return prefix + str(self.store.next_number(key)).rjust(5, "0")

    def _doc_event(self, event_type, doc, **extra):
        return event(event_type, {
            "document_id": doc["_id"], "number": doc["number"], "deal_id": doc["deal_id"],
            "contact_id": doc.get("contact_id"), "owner_id": doc.get("owner_id"),
            "currency": doc["currency"], "total": doc["totals"]["total"],
            "actor_id": self.caller.user_id,
            "summary": f"{doc['kind'].capitalize()} {doc['number']}: "
                       f"{format_money(doc['totals']['total'], doc['currency'], 'en')} {doc['currency']}",
            "ref": {"type": doc["kind"], "id": doc["_id"]}, **extra})

    # quotes
    def quote_context(self, payload):
        data = load(quote_in, payload, json_body=True)
        ctx = self.deal_context(data["deal_id"], data.get("language"))
        self.reserve_counter("quote", ctx["settings"])
        return ctx, data

    def create_quote(self, ctx, data):
        doc = self._new_document("quote", ctx, data, self._next_number("quote", ctx["settings"]))
        doc.update(status="draft", valid_until=data.get("valid_until") or (
            utcnow().date() + timedelta(days=ctx["settings"]["quote_validity_days"])).isoformat())
        self.store.insert_document(doc)
        return dump_document(doc), [self._doc_event("quote_created", doc, version=1)]

    def revise_context(self, quote_id):
        old = self._get("quote", quote_id)
        if old["status"] not in ("sent", "rejected", "draft"):
            raise Conflict(f"A {old['status']} quote cannot be revised", {"status": old["status"]})
        return old, self.deal_context(old["deal_id"], old["language"])

    def revise_quote(self, old, ctx):
        doc = self._new_document("quote", ctx, {"notes": old.get("notes")}, old["number"],
                                 version=old["version"] + 1)
        doc.update(status="draft", valid_until=old.get("valid_until"), previous_id=old["_id"])
        if self.store.update_document(old["_id"], {"status": "superseded", "superseded_by": doc["_id"],
                                                  "updated_at": utcnow()},
                                      expect={"status": old["status"]}) is None:
            raise Conflict("The quote changed meanwhile; try again", {"id": old["_id"]})
        self.store.insert_document(doc)
        return dump_document(doc), [self._doc_event("quote_created", doc, version=doc["version"])]

    def update_quote(self, quote_id, payload):
        data = load(quote_patch, payload, partial=True, json_body=True)
        doc = self._get("quote", quote_id)
        if doc["status"] != "draft":
            raise Conflict("A sent quote is immutable: revise it (a new version)",
                           {"status": doc["status"]})
        doc = self.store.update_document(quote_id, {**data, "updated_at": utcnow()},
                                         expect={"status": "draft"})
        if doc is None:
            raise Conflict("The quote changed meanwhile; try again", {"id": quote_id})
        return dump_document(doc), []

    def decide_quote(self, quote_id, accepted):
        doc = self._get("quote", quote_id)
        status = "accepted" if accepted else "rejected"
        if doc["status"] != "sent":
            raise Conflict(f"Only a sent quote can be {status}", {"status": doc["status"]})
        doc = self.store.update_document(quote_id, {"status": status, "decided_at": utcnow(),
                                                   "updated_at": utcnow()},
                                         expect={"status": "sent"})
        if doc is None:
            raise Conflict("The quote changed meanwhile; try again", {"id": quote_id})
        return dump_document(doc), [self._doc_event("quote_accepted" if accepted else "quote_rejected", doc)]

    # invoices
    def invoice_context(self, payload):
        data = load(invoice_in, payload, json_body=True)
        quote = None
        if data.get("quote_id"):
            quote = self._get("quote", data["quote_id"])
            if quote["status"] != "accepted":
                raise Conflict("Only an accepted quote is invoiced", {"status": quote["status"]})
        deal_id = quote["deal_id"] if quote else data["deal_id"]
        ctx = self.deal_context(deal_id, data.get("language") or (quote or {}).get("language"),
                                source=quote)
        self.reserve_counter("invoice", ctx["settings"])
        return ctx, data, quote

    def create_invoice(self, ctx, data, quote=None):
        doc = self._new_document("invoice", ctx, data, self._next_number("invoice", ctx["settings"]))
        due = data.get("due_date") or (
            utcnow().date() + timedelta(days=ctx["settings"]["payment_terms_days"])).isoformat()
        if due < doc["issue_date"]:
            due_ok = False
        else:
            due_ok = True
        doc.update(status="issued", due_date=due, quote_id=(quote or {}).get("_id"), paid=0,
                   payments=[], overdue_at=_day_after(due))
        if not due_ok:
            doc["overdue_at"] = utcnow()  # a due date in the past: overdue at the next scan
        self.store.insert_document(doc)
        return dump_document(doc), [self._doc_event("invoice_issued", doc, due_date=due)]

    def void_invoice(self, invoice_id):
        doc = self._get("invoice", invoice_id)
        if doc["status"] == "void":
            return dump_document(doc), []
        if doc.get("paid"):
            raise Conflict("An invoice with payments cannot be voided", {"paid": doc["paid"]})
        doc = self.store.update_document(invoice_id, {"status": "void", "updated_at": utcnow()},
                                         unset=("overdue_at",), expect={"status": doc["status"], "paid": 0})
        if doc is None:
            raise Conflict("The invoice changed meanwhile; try again", {"id": invoice_id})
        return dump_document(doc), [self._doc_event("invoice_voided", doc)]

    def add_payment(self, invoice_id, payload):
        data = load(payment_in, payload, json_body=True)
        doc = self._get("invoice", invoice_id)
        if doc["status"] not in OPEN_INVOICE:
            raise Conflict(f"A {doc['status']} invoice takes no payment", {"status": doc["status"]})
        remaining = doc["totals"]["total"] - doc.get("paid", 0)
        if data["amount"] > remaining:
            raise invalid("amount", f"More than what is due ({remaining}).")
        now = utcnow()
        payment = {"id": new_id(), "amount": data["amount"], "method": data["method"],
                   "reference": data.get("reference"), "paid_at": to_iso(data.get("paid_at") or now),
                   "recorded_by": self.caller.user_id}
        paid = doc.get("paid", 0) + data["amount"]
        full = paid == doc["totals"]["total"]
        changes = {"paid": paid, "updated_at": now, "status": "paid" if full else "partially_paid"}
        if full:
            changes["paid_on"] = now
        elif doc["status"] == "overdue":
            changes["status"] = "overdue"
        new = self.store.update_document(invoice_id, changes, payment=payment,
                                         unset=("overdue_at",) if full else (),
                                         expect={"paid": doc.get("paid", 0), "status": doc["status"]})
        if new is None:
            raise Conflict("The invoice changed meanwhile; try again", {"id": invoice_id})
        events = [self._doc_event("payment_recorded", new, amount=data["amount"], paid=paid,
                                  status=new["status"])]
        if full:
            events.append(self._doc_event("invoice_paid", new, paid_at=to_iso(now)))
        return dump_document(new), events

    # shared
    def _get(self, kind, doc_id):
        doc = self.store.get_document(doc_id, kind, self._visible())
        if not doc:
            raise NotFound(f"{kind.capitalize()} not found", {"id": doc_id})
        return doc

    def get(self, kind, doc_id):
        return dump_document(self._get(kind, doc_id))

    def list(self, kind, params):
        query = load(list_query, params)
        docs, cursor = self.store.list_documents(
            kind, self._visible(), {"deal_id": query.get("deal_id"), "status": query.get("status")},
            query["limit"], query.get("cursor"))
        return {"items": [dump_document(d) for d in docs], "next_cursor": cursor}

    def pdf(self, kind, doc_id):
        doc = self._get(kind, doc_id)
        return {"filename": f"{doc['number']}" + (f"-v{doc['version']}" if doc.get("version", 1) > 1 else "") + ".pdf",
                "data": base64.b64encode(render_pdf(doc)).decode("ascii")}

    def send(self, kind, doc_id, payload):
        """The document mailed with its PDF through conversations, to the client contact's
        conversation (its thread and timeline; the client's reply joins them; consent is
        conversations': 409 do_not_contact / opted_out). Asked before the document changes:
        a refused send changes nothing. Once per state of the document (idempotency key)."""
        data = load(send_in, payload or {}, json_body=True)
        doc = self._get(kind, doc_id)
        if kind == "quote" and doc["status"] not in ("draft", "sent"):
            raise Conflict(f"A {doc['status']} quote is not sent", {"status": doc["status"]})
        if kind == "invoice" and doc["status"] == "void":
            raise Conflict("A void invoice is not sent", {"status": doc["status"]})
        if not doc.get("contact_id"):
            raise Conflict("The document has no client contact to send it to",
                           {"reason": "no_contact"})
        if data.get("to"):
            contact = self.contacts_rpc.get_contact(doc["contact_id"])
            known = {str(e.get("email") or "").lower() for e in contact.get("emails") or []}
            if data["to"].lower() not in known:
                raise invalid("to", "Documents go to the client's own addresses (its conversation).")
        pdf = render_pdf(doc)
        subject = f"{doc['seller'].get('name') or ''} {doc['kind']} {doc['number']}".strip()
        text = data.get("message") or (
            f"{doc['kind'].capitalize()} {doc['number']}: "
            f"{format_money(doc['totals']['total'], doc['currency'], doc['language'])} {doc['currency']}")
        message = self.conversations_rpc.send_to_contact(
            doc["contact_id"], "email", text, subject=subject, deal_id=doc["deal_id"],
            sender_user_id=self.caller.user_id,
            idempotency_key=f"sales:{doc['_id']}:{to_iso(doc.get('updated_at'))}",
            attachments=[{"filename": f"{doc['number']}.pdf", "content_type": "application/pdf",
                          "content_base64": base64.b64encode(pdf).decode()}])
        return doc, message

    def mark_sent(self, doc, message):
        now = utcnow()
        to = ((message.get("to") or [{}])[0] or {}).get("address")
        changes = {"sent_at": now, "sent_to": to, "message_id": message.get("id"),
                   "conversation_id": message.get("conversation_id"), "updated_at": now}
        if doc["kind"] == "quote" and doc["status"] == "draft":
            changes["status"] = "sent"
        new = self.store.update_document(doc["_id"], changes)
        return dump_document(new), [self._doc_event(
            "quote_sent" if doc["kind"] == "quote" else "invoice_sent", new, to=to)]

    # time
    def scan_overdue(self, announce):
        """Invoices past their due date: status overdue, the owner told once (the replica
        whose claim wins announces)."""
        count = 0
        for doc in self.store.due_overdue(utcnow()):
            def claim(doc=doc):
                if not self.store.claim_overdue(doc["_id"], doc["overdue_at"]):
                    return None, []
                doc["status"] = "overdue"
                return None, [self._doc_event("invoice_overdue", doc, due_date=doc["due_date"])]
            announce(claim)
            count += 1
        return count

    # purchase history
    def record_purchases(self, deal_id, lines, contact_id, company_id, currency, when, source):
        """Once per deal line (a retried event writes nothing new); the event, every time,
        tells the search index what the contact bought (its filter "bought product X")."""
        for index, line in enumerate(lines):
            self.store.record_purchase({
                "_id": new_id(), "key": f"{deal_id}:{index}:{line['product_id']}",
                "deal_id": deal_id, "contact_id": contact_id, "company_id": company_id,
                "product_id": line["product_id"], "sku": line.get("sku"), "name": line.get("name"),
                "quantity_milli": line["quantity_milli"], "amount": line["total"],
                "currency": currency, "date": when, "source": source})
        if not lines:
            return []
        bought = self.store.purchases_of_deal(deal_id)
        return [event("purchases_recorded", {
            "deal_id": deal_id, "contact_id": contact_id, "company_id": company_id,
            "items": [{"product_id": p["product_id"], "purchased_at": to_iso(p["date"])}
                      for p in bought]})]

    def on_invoice_paid(self, event_):
        doc = self.store.get_document(event_["data"]["document_id"], "invoice")
        if not doc:
            return []
        return self.record_purchases(doc["deal_id"], doc["lines"], doc.get("contact_id"),
                                     doc.get("company_id"), doc["currency"],
                                     doc.get("paid_on") or utcnow(),
                                     {"type": "invoice", "id": doc["_id"]})

    def on_deal_won(self, event_):
        deal = event_["data"]["deal"]
        items = self.store.get_items(deal["id"])
        if items and items.get("lines"):
            return self.record_purchases(deal["id"], items["lines"], deal.get("contact_id"),
                                         deal.get("company_id"), items["currency"], utcnow(),
                                         {"type": "deal", "id": deal["id"]})
        return []

    def on_contact_merged(self, event_):
        """The merged contacts' purchases and documents are the survivor's; its purchases
        announced again (the search index forgot the merged contacts)."""
        survivor = event_["data"]["survivor_id"]
        self.store.repoint_contact("purchases", event_)
        self.store.repoint_contact("documents", event_)
        bought = self.store.purchases_of_contact(survivor)
        if not bought:
            return []
        return [event("purchases_recorded", {
            "deal_id": None, "contact_id": survivor,
            "items": [{"product_id": p["product_id"], "purchased_at": to_iso(p["date"])}
                      for p in bought]})]

    def won_stage_move(self, deal_id):
        """A paid invoice moves its open deal to the pipeline's first won stage."""
        deal = self.deals_rpc.get_deal(deal_id)
        if deal.get("status") != "open":
            return None
        pipeline = self.deals_rpc.get_pipeline(deal["pipeline_id"])
        won = next((s for s in pipeline["stages"] if s.get("kind") == "won"), None)
        if won is None:
            return None
        return self.deals_rpc.move_deal(deal_id, {"stage_id": won["id"]})

    def buyers(self, product_id, params):
        query = load(buyers_query, params)
        after = verify_token(query["cursor"])["after"] if query.get("cursor") else None
        ids = self.store.buyers(product_id, query.get("since"), query.get("until"), after,
                                query["limit"])
        next_cursor = None
        if len(ids) > query["limit"]:
            ids = ids[:query["limit"]]
            next_cursor = sign_token({"after": ids[-1]})
        return {"items": ids, "next_cursor": next_cursor}

    def purchases(self, params):
        """What a contact or company bought (newest first); a contact only if the caller
        sees it (companies are shared reference data)."""
        query = load(purchase_query, params)
        field = "contact_id" if query.get("contact_id") else "company_id"
        if field == "contact_id":
            self.contacts_rpc.get_contact(query["contact_id"])  # 404 unless visible
        docs, cursor = self.store.list_purchases(field, query[field], query["limit"],
                                                 query.get("cursor"))
        return {"items": [with_every_key(purchase_out, purchase_out.dump(d), d["_id"]) for d in docs],
                "next_cursor": cursor}

    def _period(self, query):
        until = query.get("until") or utcnow() + timedelta(seconds=1)
        since = query.get("since") or until - timedelta(days=365)
        return since, until

    def sales_by_product(self, params):
        query = load(report_query, params)
        since, until = self._period(query)
        rows = self.store.sales_by_product(since, until, query.get("currency"))
        return {"items": [{"product_id": r["_id"]["p"], "currency": r["_id"]["c"],
                           "sku": r.get("sku"), "name": r.get("name"),
                           "quantity": schemas.unscaled(r["quantity_milli"], 3),
                           "amount": r["amount"],
                           "buyers": len([b for b in r["buyers"] if b])} for r in rows]}

    def average_check(self, params):
        query = load(report_query, params)
        since, until = self._period(query)
        sums = {}
        for doc in self.store.paid_invoices(since, until, query.get("currency")):
            entry = sums.setdefault(doc["currency"], [0, 0])
            entry[0] += 1
            entry[1] += doc["totals"]["total"]
        return {"items": [{"currency": c, "invoices": n, "total": t,
                           "average": round_half_even(t, n)} for c, (n, t) in sorted(sums.items())]}
