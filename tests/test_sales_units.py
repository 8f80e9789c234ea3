"""The sales service's pure rules: rounding (services/sales/money.py), decimals of the API,
file names, type sniffing, Content-Disposition and PDF text; the deal amount beside line
items and the search terms of "bought product X (in a period)" (no platform needed)."""
import io
from datetime import date, timedelta

import pytest
from marshmallow import ValidationError
from pypdf import PdfReader

from contracts.deals import DealPatch
from contracts.sales import ItemIn, scaled, unscaled
from crm_common.errors import ValidationFailed
from gateway.downloads import content_disposition
from services.sales.catalogue import parse_catalogue
from services.sales.files import check_filename, sniff
from services.sales.money import document_totals, line_figures, round_half_even
from services.sales.pdf import format_money, render_pdf
from services.deals.domain import amount_changes
from services.search.documents import bought_terms, period_cover


def test_half_even_rounding():
    assert [round_half_even(n, 10) for n in (4, 5, 6, 15, 25, 35, 0)] == [0, 0, 1, 2, 2, 4, 0]
    assert round_half_even(2500 * 333, 1000) == 832          # 832.5 -> 832 (even)
    assert round_half_even(3500 * 333, 1000) == 1166         # 1165.5 -> 1166 (even)


def test_line_and_document_figures():
    # 2.5 x 123.45 = 308.625 -> 308.62; 10% off 30.862 -> 30.86; net 277.76; 22% = 61.1072 -> 61.11
    line = line_figures(2500, 12345, 2200, discount_bp=1000)
    assert line == {"gross": 30862, "discount": 3086, "net": 27776, "tax": 6111, "total": 33887}
    # an amount discount never exceeds the line
    assert line_figures(1000, 500, 0, discount_amount=900)["net"] == 0
    lines = [dict(line, tax_bp=2200), dict(line_figures(1000, 1000, 1000), tax_bp=1000),
             dict(line_figures(3000, 333, 2200), tax_bp=2200)]
    totals = document_totals(lines)
    # totals are sums of the lines, never recomputed from the sums
    assert totals["total"] == sum(l["total"] for l in lines)
    assert totals["tax"] == sum(l["tax"] for l in lines)
    assert [t["tax_bp"] for t in totals["taxes"]] == [1000, 2200]
    assert totals["taxes"][1]["tax"] == lines[0]["tax"] + lines[2]["tax"]


def test_decimals_of_the_api():
    assert scaled("2.5", 3) == 2500 and scaled(2, 3) == 2000 and scaled("0.001", 3) == 1
    assert scaled("1.0005", 3) is None and scaled("abc", 3) is None and scaled(True, 3) is None
    assert scaled("NaN", 3) is None and scaled("Infinity", 2) is None
    assert unscaled(2500, 3) == "2.5" and unscaled(2200, 2) == "22" and unscaled(1, 3) == "0.001"
    assert ItemIn().load({"product_id": "p", "quantity": "1.5"})["quantity_milli"] == 1500
    for bad in (-1, 0, "1e400", "2000000", "0.0001"):
        with pytest.raises(Exception):
            ItemIn().load({"product_id": "p", "quantity": bad})


@pytest.mark.parametrize("name", ["../../etc/passwd", "<script>.pdf", "a/b.txt", "..\\x.txt",
                                  ".htaccess", "", "bad\x00name.pdf", "x" * 300])
def test_file_names_that_are_not_plain_are_refused(name):
    with pytest.raises(ValidationFailed):
        check_filename(name)


def test_plain_file_names_pass():
    assert check_filename("Offerta 2026 (v2).pdf") == "Offerta 2026 (v2).pdf"
    assert check_filename("הצעה.pdf") == "הצעה.pdf"


def test_type_comes_from_the_content():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    assert sniff(png) == "image/png"
    assert sniff(b"%PDF-1.7\n...") == "application/pdf"
    assert sniff("ciao, привет".encode()) == "text/plain"
    assert sniff(b"\x00\x01\x02\xff") == "application/octet-stream"


def test_content_disposition_rfc5987():
    header = content_disposition("Счёт №5.pdf")
    assert header.startswith('attachment; filename="')
    assert "filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82%20%E2%84%965.pdf" in header
    assert 'filename="No5.pdf"' in header  # the ASCII fallback: no quote or path can get in
    assert 'filename="_script_.pdf"' in content_disposition('<script".pdf')


def test_money_formats():
    assert format_money(123456789, "EUR", "it") == "1.234.567,89"
    assert format_money(123456789, "EUR", "en") == "1,234,567.89"
    assert format_money(1234, "JPY", "en") == "1,234"
    assert format_money(1234, "KWD", "en") == "1.234"


def test_pdf_text_in_italian_and_hebrew():
    lines = []
    for name in ("Consulenza", "Licenza"):
        line = {"name": name, "quantity_milli": 2000, "unit_price": 10000, "tax_bp": 2200,
                "discount_bp": None, "discount_amount": None}
        line.update(line_figures(2000, 10000, 2200))
        lines.append(line)
    doc = {"kind": "invoice", "number": "INV-2026-00007", "version": 1, "currency": "EUR",
           "items": lines, "totals": document_totals(lines), "issue_date": "2026-01-02",
           "due_date": "2026-02-01", "seller": {"name": "ACME"}, "client": {"name": "Dana"},
           "notes": "<b>not markup</b>"}
    text = _text(render_pdf({**doc, "language": "it"}))
    assert "Fattura INV-2026-00007" in text and "Consulenza" in text
    assert "IVA 22% su 400,00: 88,00" in text and "Totale: 488,00 EUR" in text
    assert "<b>not markup</b>" in text
    hebrew = _text(render_pdf({**doc, "language": "he"}))
    assert "חשבונית" in hebrew and "488.00" in hebrew and 'סה"כ' in hebrew


def _text(data):
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_a_template_error_is_a_clear_4xx(monkeypatch):
    import jinja2
    from services.sales import pdf
    monkeypatch.setattr(pdf, "_env", jinja2.Environment(
        loader=jinja2.DictLoader({"document.html": "{{ broken"}), autoescape=True))
    with pytest.raises(ValidationFailed) as raised:
        render_pdf({"kind": "quote", "number": "Q-1", "currency": "EUR", "language": "en",
                    "lines": [], "totals": document_totals([])})
    assert raised.value.status == 422 and "template" in raised.value.details


def test_the_amount_beside_line_items():
    """services/deals/domain.amount_changes: the amount follows the lines unless set by hand."""
    plain = {"amount": 500}
    assert amount_changes(plain, {"amount": 700}) == {}                    # no lines: just set
    assert amount_changes(plain, {}, items_total=900) == {"items_total": 900, "amount": 900}
    lines = {"amount": 900, "items_total": 900}
    typed = amount_changes(lines, {"amount": 1000})
    assert typed == {"amount_override": True}                             # a hand-set amount
    pinned = {"amount": 1000, "items_total": 900, "amount_override": True}
    assert amount_changes(pinned, {}, items_total=1200) == {"items_total": 1200}   # it stays
    assert amount_changes(pinned, {"amount_override": False}) == {"amount_override": False,
                                                                  "amount": 900}
    assert amount_changes(lines, {}, items_total=900) == {}               # nothing changes
    assert amount_changes(lines, {"amount_override": True}) == {"amount_override": True}
    with pytest.raises(ValidationError):
        DealPatch().load({"amount": 5, "amount_override": False}, partial=True)


def test_bought_terms_and_period_cover():
    """services/search/documents.py: a purchase's year, month and day terms; a period as
    the fewest of them."""
    assert bought_terms({"p1": ["2026-03-15"]}) == [
        "bought=p1", "bought=p1@2026", "bought=p1@2026-03", "bought=p1@2026-03-15"]
    assert period_cover(date(2026, 3, 15), date(2026, 3, 15)) == ["2026-03-15"]
    assert period_cover(date(2025, 12, 30), date(2027, 2, 2)) == [
        "2025-12-30", "2025-12-31", "2026", "2027-01", "2027-02-01", "2027-02-02"]
    assert period_cover(date(2026, 2, 1), date(2026, 2, 28)) == ["2026-02"]
    assert period_cover(date(2026, 3, 2), date(2026, 3, 1)) == []
    assert len(period_cover(date(1970, 1, 1), date(2027, 6, 7))) < 80
    # every day of a period is covered once, and nothing outside it
    low, high = date(2024, 2, 27), date(2025, 3, 3)
    days = {low + timedelta(days=n) for n in range(-40, 420)}
    covered = {d for d in days for p in period_cover(low, high) if d.isoformat().startswith(p)}
    assert covered == {d for d in days if low <= d <= high}


def test_the_catalogue_reads_csv_and_xlsx_alike_and_refuses_what_is_neither():
    from openpyxl import Workbook
    book = Workbook()
    for row in (["sku", "name", "tax_rate", "price", "active"], ["A1", "Uno", 22, 1999, "yes"],
                [None, None, None, None, None], ["B2", "Due", 0.5, None, "no"]):
        book.active.append(row)
    sheet = io.BytesIO()
    book.save(sheet)
    from_xlsx, errors = parse_catalogue(sheet.getvalue())
    assert not errors
    from_csv, errors = parse_catalogue("sku;name;tax_rate;price;active\nA1;Uno;22;1999;yes\n\n"
                                       "B2;Due;0.5;;no\n".encode("cp1252"))
    assert not errors and from_xlsx == from_csv and len(from_csv) == 2
    with pytest.raises(Exception) as refused:
        parse_catalogue(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert getattr(refused.value, "status", None) in (400, 415, 422) or "CSV" in str(refused.value)
