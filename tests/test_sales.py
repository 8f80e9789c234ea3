"""Sales end to end: gateway -> sales service (products, price lists, deal line items,
quotes, invoices, payments, files in GridFS) and its RPCs to deals and contacts, its mail
through conversations to a real local SMTP server (aiosmtpd), PDFs read back with pypdf;
the contacts list's "bought product X" from the search index and from its fallback."""
import io
import socket
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from pypdf import PdfReader

from tests.fake_receivers import SmtpReceiver
from tests.stack import free_port
from tests.test_deals import make_contact, make_pipeline, stage_ids, wait_until

YEAR = date.today().year


@pytest.fixture(scope="module")
def smtp(stack):
    """Documents go out through conversations: a personal mailbox of the signed-in admin
    whose SMTP server is a local receiver (its IMAP side is never reached); the sales
    service restarted with a fast overdue scan. Both undone afterwards."""
    receiver = SmtpReceiver().start()
    env = {"CRM_SALES_OVERDUE_TICK_SECONDS": "0.5"}
    stack.stop_service("sales")
    stack.start_service("sales", **env)
    stack.wait_service("sales", timeout=120)
    admin = stack.sign_in()
    server = {"host": "127.0.0.1", "security": "none", "username": "sales@crm.test",
              "password": "unused"}
    mailbox = admin.post("/mailboxes", json={
        "name": "Sales documents", "address": "sales@crm.test", "display_name": "ACME Srl",
        "imap": {**server, "port": free_port()}, "smtp": {**server, "port": receiver.port},
        "poll_seconds": 3600})
    assert mailbox.status_code == 201, mailbox.text
    receiver.env = env
    yield receiver
    admin.delete(f"/mailboxes/{mailbox.json()['id']}")
    stack.stop_service("sales", 1)
    stack.stop_service("sales")
    stack.start_service("sales")
    stack.wait_service("sales", timeout=120)
    receiver.stop()


@pytest.fixture(scope="module")
def catalogue(api, smtp):
    """Three products (22%, 22%, 10% tax) in the default EUR price list, and the seller."""
    tag = f"{time.time_ns()}"[-9:]
    assert api.patch("/sales-settings", json={
        "company": {"name": "ACME Srl", "vat_id": "IT01234567890", "address": "Via Roma 1, Milano",
                    "iban": "IT60X0542811101000000123456"},
        "language": "it", "payment_terms_days": 30}).status_code == 200
    products = {}
    for sku, name, rate in (("CONS", "Consulenza", "22"), ("LIC", "Licenza annuale", "22"),
                            ("BOOK", "Manuale", "10")):
        r = api.post("/products", json={"sku": f"{sku}-{tag}", "name": name, "unit": "pcs",
                                        "tax_rate": rate})
        assert r.status_code == 201, r.text
        products[sku] = r.json()
    eur = api.post("/price-lists", json={"name": f"Listino {tag}", "currency": "EUR",
                                         "is_default": True}).json()
    prices = [{"product_id": products["CONS"]["id"], "unit_price": 12345},
              {"product_id": products["LIC"]["id"], "unit_price": 99900},
              {"product_id": products["BOOK"]["id"], "unit_price": 1999}]
    r = api.put(f"/price-lists/{eur['id']}/prices", json={"prices": prices})
    assert r.status_code == 200, r.text
    usd = api.post("/price-lists", json={"name": f"USD {tag}", "currency": "USD"}).json()
    return {"products": products, "eur": eur, "usd": usd}


def new_deal(api, unique, pipeline=None, **fields):
    contact = make_contact(api, unique)
    body = {"title": f"Deal {unique}", "currency": "EUR", "contact_id": contact["id"], **fields}
    if pipeline:
        body["pipeline_id"] = pipeline["id"]
    r = api.post("/deals", json=body)
    assert r.status_code == 201, r.text
    return r.json(), contact


def add_lines(api, deal_id, products):
    api.post(f"/deals/{deal_id}/items", json={"product_id": products["CONS"]["id"], "quantity": "2.5",
                                              "discount_percent": "10"})
    api.post(f"/deals/{deal_id}/items", json={"product_id": products["LIC"]["id"], "quantity": 1,
                                              "discount_amount": 9900})
    r = api.post(f"/deals/{deal_id}/items", json={"product_id": products["BOOK"]["id"], "quantity": 3})
    assert r.status_code == 201, r.text
    return r.json()


def pdf_text(response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/pdf"
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)


def test_catalogue_and_bad_input(api, catalogue, unique, make_user):
    products = catalogue["products"]
    dup = api.post("/products", json={"sku": products["CONS"]["sku"].lower(), "name": "x"})
    assert dup.status_code == 409
    assert api.get("/products", params={"sku": products["CONS"]["sku"]}).json()["items"][0]["id"] == \
        products["CONS"]["id"]
    too_much = api.put(f"/price-lists/{catalogue['eur']['id']}/prices",
                       json={"prices": [{"product_id": products["CONS"]["id"], "unit_price": 10**12 + 1}]})
    assert too_much.status_code == 422 and "unit_price" in too_much.text
    assert api.post("/price-lists", json={"name": "x", "currency": "XYZ"}).status_code == 422
    assert api.post("/price-lists", json={"name": "x", "currency": "EUR", "valid_from": "2026-02-01",
                                          "valid_to": "2026-01-01"}).status_code == 422
    # an agent reads the catalogue but does not change it
    agent = make_user("agent")
    assert agent.get(f"/products/{products['CONS']['id']}").status_code == 200
    assert agent.post("/products", json={"sku": f"A{unique}", "name": "x"}).status_code == 403

    # the catalogue from a CSV: all rows or none
    csv_bad = f"sku;name;tax_rate;price\nI{unique};Uno;22;1999\nJ{unique};Due;220;100\n"
    r = api.post("/products/import", params={"price_list_id": catalogue["eur"]["id"]},
                 files={"file": ("c.csv", csv_bad.encode())})
    assert r.status_code == 422 and int(r.json()["error"]["details"]["rows"][0]["row"]) == 2
    assert not api.get("/products", params={"sku": f"I{unique}"}).json()["items"]
    csv_good = (f"sku;name;tax_rate;price;active\nI{unique};Uno;22;1999;si\n"
                f"{products['BOOK']['sku']};Manuale (2a ed.);10;2500;yes\n")
    r = api.post("/products/import", params={"price_list_id": catalogue["eur"]["id"]},
                 files={"file": ("c.csv", csv_good.encode("utf-8-sig"))})
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1, "updated": 1, "prices": 2}
    assert api.get(f"/products/{products['BOOK']['id']}").json()["name"] == "Manuale (2a ed.)"
    # the same catalogue from a spreadsheet (the contacts import's XLSX reader and limits)
    from openpyxl import Workbook
    book = Workbook()
    book.active.append(["SKU", "Name", "Tax_rate", "Price"])
    book.active.append([f"X{unique}", "Tre", 22, 4999])
    sheet = io.BytesIO()
    book.save(sheet)
    r = api.post("/products/import", params={"price_list_id": catalogue["eur"]["id"]},
                 files={"file": ("c.xlsx", sheet.getvalue())})
    assert r.status_code == 200 and r.json() == {"created": 1, "updated": 0, "prices": 1}, r.text
    assert api.get("/products", params={"sku": f"X{unique}"}).json()["items"][0]["name"] == "Tre"
    api.put(f"/price-lists/{catalogue['eur']['id']}/prices",
            json={"prices": [{"product_id": products["BOOK"]["id"], "unit_price": 1999}]})

    deal, _ = new_deal(api, unique)
    before = api.get(f"/deals/{deal['id']}/items").json()
    for body in ({"product_id": products["CONS"]["id"], "quantity": -1},
                 {"product_id": products["CONS"]["id"], "quantity": "1.0001"},
                 {"product_id": products["CONS"]["id"], "quantity": 1, "discount_percent": 120},
                 {"product_id": products["CONS"]["id"], "quantity": 1,
                  "price_list_id": catalogue["usd"]["id"]},
                 {"product_id": "nope", "quantity": 1}):
        r = api.post(f"/deals/{deal['id']}/items", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    assert api.get(f"/deals/{deal['id']}/items").json() == before  # nothing stored


def test_three_lines_with_discounts_total_exactly(api, catalogue, unique, make_user, record_events):
    events = record_events("sales")
    deal, _ = new_deal(api, unique)
    items = add_lines(api, deal["id"], catalogue["products"])
    # CONS 2.5 x 123.45 = 308.625 -> 308.62, -10% 30.86 = 277.76, 22% 61.11 -> 338.87
    # LIC 1 x 999.00 - 99.00 = 900.00, 22% 198.00 -> 1098.00
    # BOOK 3 x 19.99 = 59.97, 10% 6.00 (5.997) -> 65.97
    assert [l["total"] for l in items["items"]] == [33887, 109800, 6597]
    assert items["totals"] == {"gross": 30862 + 99900 + 5997, "discount": 3086 + 9900,
                               "net": 27776 + 90000 + 5997, "tax": 6111 + 19800 + 600,
                               "total": 33887 + 109800 + 6597, "taxes": [
                                   {"tax_rate": "10", "net": 5997, "tax": 600},
                                   {"tax_rate": "22", "net": 117776, "tax": 25911}]}
    assert items["items"][0]["quantity"] == "2.5" and items["items"][0]["discount_percent"] == "10"
    total = items["totals"]["total"]
    assert wait_until(lambda: api.get(f"/deals/{deal['id']}").json()["amount"] == total)
    assert events.wait_for(lambda e: e["type"] == "deal_items_changed"
                           and e["data"]["deal_id"] == deal["id"] and e["data"]["total"] == total)

    # a line's quantity changes; its price is overridden only with the permission
    line = items["items"][2]
    changed = api.patch(f"/deals/{deal['id']}/items/{line['id']}", json={"quantity": 1})
    assert changed.json()["items"][2]["total"] == 2199  # 19.99 + 2.00 (1.999)
    agent = make_user("agent")
    assert agent.put(f"/deals/{deal['id']}/items/{line['id']}/price",
                     json={"unit_price": 1}).status_code == 403
    priced = api.put(f"/deals/{deal['id']}/items/{line['id']}/price", json={"unit_price": 1000})
    assert priced.json()["items"][2]["price_overridden"] is True
    assert priced.json()["items"][2]["total"] == 1100
    removed = api.delete(f"/deals/{deal['id']}/items/{line['id']}")
    assert removed.json()["totals"]["total"] == 33887 + 109800
    assert wait_until(lambda: api.get(f"/deals/{deal['id']}").json()["amount"] == 33887 + 109800)
    # an amount typed by hand beside lines stays (amount_override) until cleared
    typed = api.patch(f"/deals/{deal['id']}", json={"amount": 100000}).json()
    assert typed["amount"] == 100000 and typed["amount_override"] is True
    more = api.post(f"/deals/{deal['id']}/items", json={"product_id": catalogue["products"]["BOOK"]["id"],
                                                        "quantity": 1}).json()["totals"]["total"]
    assert wait_until(lambda: api.get(f"/deals/{deal['id']}").json()["items_total"] == more)
    assert api.get(f"/deals/{deal['id']}").json()["amount"] == 100000
    assert api.patch(f"/deals/{deal['id']}", json={"amount": 1, "amount_override": False}).status_code == 422
    cleared = api.patch(f"/deals/{deal['id']}", json={"amount_override": False}).json()
    assert cleared["amount"] == more and cleared["amount_override"] is False
    # a deal the caller cannot see has no items for them
    assert agent.get(f"/deals/{deal['id']}/items").status_code == 404


def test_quote_pdf_invoice_payment_won_and_buyers(api, stack, catalogue, smtp, unique,
                                                  record_events, make_user):
    events = record_events("sales")
    pipeline = make_pipeline(api, unique)
    deal, contact = new_deal(api, unique, pipeline)
    add_lines(api, deal["id"], catalogue["products"])
    total = 33887 + 109800 + 6597

    quote = api.post("/quotes", json={"deal_id": deal["id"]})
    assert quote.status_code == 201, quote.text
    quote = quote.json()
    assert quote["number"].startswith(f"Q-{YEAR}-") and quote["status"] == "draft"
    assert quote["client"]["email"] == contact["emails"][0]["email"]
    assert quote["seller"]["name"] == "ACME Srl" and quote["totals"]["total"] == total

    sent = api.post(f"/quotes/{quote['id']}/send", json={})
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "sent"
    mail = smtp.wait_for(contact["emails"][0]["email"])
    assert mail, "the quote was not mailed"
    # through conversations: the client's conversation holds it, with the PDF attached
    conv = api.get(f"/conversations/{sent.json()['conversation_id']}").json()
    assert conv["contact_id"] == contact["id"]
    [ours] = [m for m in api.get(f"/conversations/{conv['id']}/messages").json()["items"]
              if m["id"] == sent.json()["message_id"]]
    assert ours["attachments"][0]["filename"] == f"{quote['number']}.pdf"
    assert mail[0]["message"]["Message-ID"] == ours["message_id"]
    attachment = next(mail[0]["message"].iter_attachments())
    assert attachment.get_filename() == f"{quote['number']}.pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(attachment.get_content())).pages)
    assert f"Preventivo {quote['number']}" in text
    for expected in ("Consulenza", "Licenza annuale", "Manuale", "2,5", "277,76", "900,00",
                     "IVA 22% su 1.177,76: 259,11", "IVA 10% su 59,97: 6,00",
                     "Totale: 1.502,84 EUR", "P. IVA IT01234567890"):
        assert expected in text, (expected, text)

    # sent: immutable; a change is a new version with the same number
    assert api.patch(f"/quotes/{quote['id']}", json={"notes": "x"}).status_code == 409
    revised = api.post(f"/quotes/{quote['id']}/revise").json()
    assert revised["number"] == quote["number"] and revised["version"] == 2
    assert api.get(f"/quotes/{quote['id']}").json()["status"] == "superseded"
    assert api.patch(f"/quotes/{revised['id']}", json={"language": "he"}).status_code == 200
    hebrew = pdf_text(api.get(f"/quotes/{revised['id']}/pdf"))
    for expected in ("הצעת מחיר", "מע\"מ", "סה\"כ", "1,502.84", "259.11", "Consulenza"):
        assert expected in hebrew, (expected, hebrew)
    assert api.post(f"/quotes/{revised['id']}/accept").status_code == 409  # not sent yet
    assert api.post(f"/quotes/{revised['id']}/send",
                    json={"to": f"buyer.{unique}@example.com"}).status_code == 422  # not the client's
    assert api.post(f"/quotes/{revised['id']}/send",
                    json={"to": contact["emails"][0]["email"]}).status_code == 200
    assert api.post(f"/quotes/{revised['id']}/accept").json()["status"] == "accepted"

    agent = make_user("agent")
    assert agent.get(f"/quotes/{quote['id']}").status_code == 404
    assert agent.get(f"/quotes/{quote['id']}/pdf").status_code == 404
    assert agent.post("/quotes", json={"deal_id": deal["id"]}).status_code == 404

    # a custom role reads invoices and quotes company-wide, but creates none
    role = f"acct-{unique}"
    assert api.post("/roles", json={"name": role, "label": "Accountant", "permissions": {
        "quotes": {"read": "all"}, "invoices": {"read": "all"}}}).status_code == 201
    accountant = make_user(role)
    assert accountant.get(f"/quotes/{quote['id']}").status_code == 200
    assert accountant.post("/quotes", json={"deal_id": deal["id"]}).status_code == 403

    # invoicing: consecutive numbers
    first = api.post("/invoices", json={"quote_id": revised["id"]})
    assert first.status_code == 201, first.text
    first = first.json()
    second = api.post("/invoices", json={"deal_id": deal["id"], "language": "en"}).json()
    year, seq = first["number"].rsplit("-", 1)
    assert first["number"].startswith(f"INV-{YEAR}-")
    assert second["number"] == f"{year}-{int(seq) + 1:05d}"
    assert api.post(f"/invoices/{second['id']}/void").json()["status"] == "void"
    assert first["status"] == "issued" and first["language"] == "he"
    # consent is conversations': a client who asked not to be contacted gets nothing
    api.patch(f"/contacts/{contact['id']}", json={"do_not_contact": True})
    refused = api.post(f"/invoices/{first['id']}/send", json={})
    assert refused.status_code == 409 and refused.json()["error"]["details"]["reason"] == "do_not_contact"
    assert api.get(f"/invoices/{first['id']}").json()["sent_at"] is None
    api.patch(f"/contacts/{contact['id']}", json={"do_not_contact": False})
    assert api.post(f"/invoices/{first['id']}/send", json={}).status_code == 200
    mails = smtp.wait_for(contact["emails"][0]["email"], count=3)
    [mailed] = [m for m in mails if first["number"] in m["message"]["Subject"]]
    attachment = next(mailed["message"].iter_attachments())
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(attachment.get_content())).pages)
    assert first["number"] in text and "חשבונית" in text and "1,502.84" in text

    # payments: partial, too much, the rest
    r = api.post(f"/invoices/{first['id']}/payments", json={"amount": 50000, "method": "card"})
    assert r.status_code == 201 and r.json()["status"] == "partially_paid"
    assert api.post(f"/invoices/{first['id']}/payments", json={"amount": total}).status_code == 422
    paid = api.post(f"/invoices/{first['id']}/payments", json={"amount": total - 50000}).json()
    assert paid["status"] == "paid" and paid["paid"] == total
    assert wait_until(lambda: api.get(f"/deals/{deal['id']}").json()["stage_id"] ==
                      stage_ids(pipeline)["Won"], timeout=20)
    assert wait_until(lambda: contact["id"] in api.get(
        f"/products/{catalogue['products']['LIC']['id']}/buyers").json()["items"], timeout=20)
    bought = api.get("/purchases", params={"contact_id": contact["id"]}).json()["items"]
    assert sorted(p["sku"] for p in bought) == sorted(p["sku"] for p in catalogue["products"].values())
    assert sum(p["amount"] for p in bought) == total and bought[0]["deal_id"] == deal["id"]
    assert agent.get("/purchases", params={"contact_id": contact["id"]}).status_code == 404
    assert contact["id"] not in api.get(f"/products/{catalogue['products']['LIC']['id']}/buyers",
                                        params={"to": "2000-01-01T00:00:00Z"}).json()["items"]
    # the contacts list: "bought product X (in a period)", from the index and its fallback
    licence, today = catalogue["products"]["LIC"]["id"], datetime.now(timezone.utc).date().isoformat()

    def listed(who=contact, **params):
        items = api.get("/contacts", params={"bought_product": licence, **params}).json()["items"]
        return who["id"] in [c["id"] for c in items]
    assert wait_until(listed, timeout=20)
    assert listed(bought_from=today, bought_to=today) and not listed(bought_to="2000-01-01")
    assert api.get("/contacts", params={"bought_from": today}).status_code == 422
    own = stack.rpc.call("contacts", "list_contacts", {"bought_product": licence, "bought_from": today})
    assert contact["id"] in [c["id"] for c in own["items"]]
    assert not stack.rpc.call("contacts", "list_contacts", {"bought_product": licence,
                                                            "bought_to": "2000-01-01"})["items"]
    events.wait_for(lambda e: e["type"] == "invoice_paid" and e["data"]["deal_id"] == deal["id"])
    types = {e["type"] for e in events.drain(0.5) if e["data"].get("deal_id") == deal["id"]}
    assert {"quote_created", "quote_sent", "quote_accepted", "invoice_issued", "payment_recorded",
            "invoice_paid", "invoice_voided"} <= types
    def timeline():
        kinds = {i["kind"] for i in api.get(f"/contacts/{contact['id']}/timeline").json()["items"]}
        return kinds if {"quote_sent", "invoice_issued", "invoice_paid"} <= kinds else None
    assert wait_until(timeline, timeout=20)
    report = api.get("/reports/sales-by-product", params={"currency": "EUR"}).json()["items"]
    lic = next(r for r in report if r["product_id"] == catalogue["products"]["LIC"]["id"])
    assert lic["amount"] >= 109800 and lic["buyers"] >= 1
    average = api.get("/reports/average-check", params={"currency": "EUR"}).json()["items"]
    assert average[0]["currency"] == "EUR" and average[0]["invoices"] >= 1

    # merged into another contact: what it bought is the survivor's
    survivor = make_contact(api, f"s{unique}")
    merged = api.post(f"/contacts/{survivor['id']}/merge", json={"source_ids": [contact["id"]]})
    assert merged.status_code == 200, merged.text
    assert wait_until(lambda: listed(survivor), timeout=20)
    assert [p["contact_id"] for p in api.get("/purchases", params={
        "contact_id": survivor["id"]}).json()["items"]] == [survivor["id"]] * 3


def test_overdue_invoice_tells_once(api, stack, catalogue, unique, record_events):
    events = record_events("sales")
    deal, _ = new_deal(api, unique)
    add_lines(api, deal["id"], catalogue["products"])
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    # the RPC automation calls (no user: every deal)
    invoice = stack.rpc.call("sales", "create_invoice_from_deal", deal["id"], {"due_date": yesterday})
    assert invoice["status"] == "issued" and invoice["totals"]["total"] == 33887 + 109800 + 6597
    assert wait_until(lambda: api.get(f"/invoices/{invoice['id']}").json()["status"] == "overdue",
                      timeout=20)
    events.wait_for(lambda e: e["type"] == "invoice_overdue")
    told = [e for e in events.drain(1.5)  # a few more scans
            if e["type"] == "invoice_overdue" and e["data"]["document_id"] == invoice["id"]]
    assert len(told) == 1 and told[0]["data"]["owner_id"] == deal["owner_id"]
    # the notifications service turns it into a notice for the owner
    assert wait_until(lambda: [n for n in api.get("/notifications").json()["items"]
                               if n["type"] == "invoice_overdue" and invoice["number"] in n["title"]],
                      timeout=20)


def test_deal_entering_payment_gets_its_invoice_mailed_by_automation(api, stack, catalogue, smtp,
                                                                     unique, make_user):
    """Automation's rule on the stage: the invoice made from the deal's lines through
    create_invoice_from_deal, mailed to the client (send_invoice), and a task for the
    accountant; once each."""
    pipeline = make_pipeline(api, unique)
    payment = stage_ids(pipeline)["Offer"]
    accountant = make_user("manager")
    accountant_id = accountant.user["id"]
    rule = api.post("/automation/rules", json={
        "name": f"Payment {unique}", "enabled": True,
        "trigger": {"type": "event", "event": "deals.deal_stage_changed"},
        "conditions": {"field": "to_stage_id", "op": "eq", "value": payment},
        "actions": [{"type": "create_invoice", "send": True, "options": {"language": "en"}},
                    {"type": "create_task", "title": "Check payment of {{ deal.title }}",
                     "assignee_id": accountant_id}]})
    assert rule.status_code == 201, rule.text
    try:
        deal, contact = new_deal(api, unique, pipeline)
        add_lines(api, deal["id"], catalogue["products"])
        assert api.post(f"/deals/{deal['id']}/move", json={"stage_id": payment}).status_code == 200
        email = contact["emails"][0]["email"]
        mail = smtp.wait_for(email)
        assert mail, "the invoice was not mailed"
        [listed] = wait_until(lambda: api.get("/invoices", params={"deal_id": deal["id"]})
                              .json()["items"], timeout=30)
        invoice = wait_until(lambda: api.get(f"/invoices/{listed['id']}").json()["sent_at"]
                             and api.get(f"/invoices/{listed['id']}").json())
        assert invoice["client"]["email"] == email
        assert invoice["totals"]["total"] == 33887 + 109800 + 6597
        assert next(mail[0]["message"].iter_attachments()).get_filename() == \
            f"{invoice['number']}.pdf"
        tasks = wait_until(lambda: api.get("/tasks", params={"deal_id": deal["id"]})
                           .json()["items"], timeout=30)
        assert [(t["title"], t["assignee_id"]) for t in tasks] == [
            (f"Check payment of {deal['title']}", accountant_id)]
        runs = api.get(f"/automation/rules/{rule.json()['id']}/runs").json()["items"]
        assert [r["state"] for r in runs] == ["done"]
        assert runs[0]["actions"][0]["detail"]["invoice_id"] == invoice["id"]
        assert len(smtp.to(email)) == 1
        assert len(api.get("/invoices", params={"deal_id": deal["id"]}).json()["items"]) == 1
    finally:
        api.delete(f"/automation/rules/{rule.json()['id']}")


def test_invoice_numbers_have_no_gap_under_concurrency(api, stack, catalogue, smtp, unique):
    """12 clients, two replicas: the numbers in the database run without a gap or a repeat
    (a request a loaded machine timed out is tried again: it either took no number, or
    took one that is in the database)."""
    stack.start_service("sales", replica=1, **smtp.env)
    deal, _ = new_deal(api, unique)
    add_lines(api, deal["id"], catalogue["products"])
    numbers, errors = [], []

    def issue(n):
        for _ in range(n):
            for _attempt in range(3):
                r = api.post("/invoices", json={"deal_id": deal["id"]})
                if r.status_code not in (503, 504):
                    break
            (numbers if r.status_code == 201 else errors).append(
                r.json()["number"] if r.status_code == 201 else r.text)

    threads = [threading.Thread(target=issue, args=(3,)) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stack.stop_service("sales", 1)
    assert not errors, errors[:3]
    assert len(set(numbers)) == len(numbers) == 36
    stored = [d["number"] for d in stack.db("sales")["documents"].find(
        {"kind": "invoice"}, {"number": 1}) if d["number"].startswith(f"INV-{YEAR}-")]
    seqs = sorted(int(n.rsplit("-", 1)[1]) for n in stored)
    assert seqs == list(range(1, len(seqs) + 1)), seqs


def upload(client, record_type, record_id, name, data, **kwargs):
    return client.post("/files", params={"record_type": record_type, "record_id": record_id},
                       files={"file": (name, data)}, **kwargs)


def test_files_on_records(api, stack, catalogue, unique, make_user):
    contact = make_contact(api, unique)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8000  # ~2 MB: three chunks
    r = upload(api, "contact", contact["id"], "Scansione №1.txt", png)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["content_type"] == "image/png" and stored["size"] == len(png)
    listed = api.get("/files", params={"record_type": "contact", "record_id": contact["id"]}).json()
    assert [f["id"] for f in listed["items"]] == [stored["id"]]
    got = api.get(f"/files/{stored['id']}/download")
    assert got.status_code == 200 and got.content == png
    assert got.headers["Content-Disposition"] == (
        "attachment; filename=\"Scansione No1.txt\"; "
        "filename*=UTF-8''Scansione%20%E2%84%961.txt")
    assert got.headers["X-Content-Type-Options"] == "nosniff"

    # bad names and unknown or unseen records: 4xx, nothing stored
    for name in ("../../etc/passwd", "<script>.pdf"):
        bad = upload(api, "contact", contact["id"], name, b"hello")
        assert bad.status_code == 422, bad.text
    assert upload(api, "contact", "nope", "a.txt", b"x").status_code == 404
    assert upload(api, "planet", contact["id"], "a.txt", b"x").status_code == 422
    agent = make_user("agent")
    assert agent.get(f"/files/{stored['id']}/download").status_code == 404
    assert agent.get("/files", params={"record_type": "contact", "record_id": contact["id"]}).status_code == 404
    assert upload(agent, "contact", contact["id"], "a.txt", b"x").status_code == 404
    assert stack.db("sales")["uploads"].count_documents({}) == 0
    assert len(api.get("/files", params={"record_type": "contact", "record_id": contact["id"]}).json()["items"]) == 1

    # a 2 GB upload is refused from its declared length, before any byte is read
    with socket.create_connection(("127.0.0.1", stack.gateway_port), timeout=10) as conn:
        conn.sendall((f"POST /api/v1/files?record_type=contact&record_id={contact['id']} HTTP/1.1\r\n"
                      f"Host: x\r\nAuthorization: {api.headers['Authorization']}\r\n"
                      "Content-Type: multipart/form-data; boundary=b\r\n"
                      f"Content-Length: {2 * 1024 ** 3}\r\n\r\n").encode())
        answer = conn.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]

    # shared link: anyone may download until it expires
    link = api.post(f"/files/{stored['id']}/links", json={"expires_in": 3}).json()
    anonymous = stack.sign_in().session.__class__()
    assert anonymous.get(stack.base_url + link["url"]).content == png
    assert anonymous.get(stack.base_url + link["url"][:-3] + "AAA").status_code == 404
    time.sleep(4)
    assert anonymous.get(stack.base_url + link["url"]).status_code == 404

    # soft delete and restore
    assert api.delete(f"/files/{stored['id']}").status_code == 200
    assert api.get(f"/files/{stored['id']}/download").status_code == 404
    deleted = api.get("/files", params={"record_type": "contact", "record_id": contact["id"],
                                        "deleted": "true"}).json()["items"]
    assert [f["id"] for f in deleted] == [stored["id"]]
    assert api.post(f"/files/{stored['id']}/restore").json()["deleted_at"] is None
    assert api.get(f"/files/{stored['id']}/download").content == png

    # files on a deal follow the deal's visibility; its owner sees them
    deal = agent.post("/deals", json={"title": "mine", "currency": "EUR"}).json()
    mine = upload(agent, "deal", deal["id"], "offerta.pdf", b"%PDF-1.4\n%fake\n")
    assert mine.status_code == 201 and mine.json()["content_type"] == "application/pdf"
    assert api.get(f"/files/{mine.json()['id']}").status_code == 200
