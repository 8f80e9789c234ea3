"""Quotes and invoices as PDF: templates/document.html (Jinja2, autoescaped) rendered by
fpdf2's HTML subset with DejaVu Sans (Latin, Cyrillic, Hebrew). Hebrew is right to left:
each text is put in display order (python-bidi) and the table's columns are mirrored."""
import os

import jinja2
from bidi import get_display
from fpdf import FPDF

from contracts.sales import unscaled
from crm_common.errors import ValidationFailed
from services.sales.labels import LABELS, RTL, SEPARATORS

HERE = os.path.dirname(os.path.abspath(__file__))
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu")
# ISO 4217 currencies whose minor unit is not a hundredth
EXPONENTS = {**{c: 0 for c in "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split()},
             **{c: 3 for c in "BHD IQD JOD KWD LYD OMR TND".split()}}
COLUMNS = (("description", 34), ("quantity", 10), ("unit_price", 16), ("discount", 12),
           ("tax", 10), ("amount", 18))
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                          autoescape=True)


def _font(name):
    for folder in FONT_DIRS:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise RuntimeError(f"font {name} not found (Debian: fonts-dejavu-core)")


def format_money(amount, currency, language):
    exponent = EXPONENTS.get(currency, 2)
    decimal_sep, thousands = SEPARATORS.get(language, SEPARATORS["en"])
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10 ** exponent)
    text = f"{units:,}".replace(",", thousands)
    if exponent:
        text += decimal_sep + str(minor).rjust(exponent, "0")
    return sign + text


def render_html(doc):
    language = doc.get("language") or "en"
    labels = LABELS[language]
    rtl = language in RTL

    def money(value):
        return format_money(value, doc["currency"], language)

    def percent(bp):
        return unscaled(bp, 2).replace(".", SEPARATORS[language][0])

    def t(text):
        return get_display(str(text)) if rtl else str(text)

    rows = []
    for item in doc.get("lines") or doc.get("items") or []:
        discount = item.get("discount") or 0
        row = [(item["name"], "left"),
               (unscaled(item["quantity_milli"], 3).replace(".", SEPARATORS[language][0]), "right"),
               (money(item["unit_price"]), "right"), (money(discount) if discount else "", "right"),
               (percent(item["tax_bp"]) + "%", "right"), (money(item["net"]), "right")]
        rows.append(row[::-1] if rtl else row)
    columns = COLUMNS[::-1] if rtl else COLUMNS
    if rtl:
        rows = [[(text, "right" if align == "left" else "left") for text, align in row] for row in rows]
    try:
        return _env.get_template("document.html").render(
            doc=doc, kind=doc["kind"], L=labels, t=t, money=money, percent=percent, rows=rows,
            columns=columns, start="right" if rtl else "left", end="left" if rtl else "right")
    except jinja2.TemplateError as exc:
        raise ValidationFailed("The document template failed", {"template": str(exc)})


def render_pdf(doc):
    html = render_html(doc)
    pdf = FPDF()
    pdf.add_font("DejaVu", "", _font("DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", _font("DejaVuSans-Bold.ttf"))
    pdf.set_font("DejaVu", size=9)
    pdf.set_title(f"{doc['kind']} {doc['number']}")
    pdf.add_page()
    pdf.write_html(html, font_family="DejaVu")
    return bytes(pdf.output())


def pdf_alone(rows):
    """The same page drawn with fpdf2 directly (no template): the bench's reference."""
    pdf = FPDF()
    pdf.add_font("DejaVu", "", _font("DejaVuSans.ttf"))
    pdf.set_font("DejaVu", size=9)
    pdf.add_page()
    for row in rows:
        pdf.cell(0, 5, "  ".join(str(c) for c in row), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


