"""Every rounding rule of line items and documents, written once (tests/test_sales_units.py).

Money is integer minor units of the document's currency. Quantities are integer thousandths
(`quantity_milli`: 2.5 units = 2500); rates (discount %, tax %) are integer basis points
(22% = 2200). Each line is rounded on its own, half to even, in this order:

    gross    = round(quantity_milli * unit_price / 1000)
    discount = discount_amount (at most gross), else round(gross * discount_bp / 10000)
    net      = gross - discount
    tax      = round(net * tax_bp / 10000)
    total    = net + tax

A document's figures are sums of its lines' (never recomputed from the sums), and its
tax breakdown sums the lines' tax per rate. The deal's amount is the document total (tax
included).
"""
MAX_PRICE = 10 ** 12            # one unit price, minor units
MAX_QUANTITY_MILLI = 10 ** 9    # a million units
MAX_TOTAL = 10 ** 15            # a deal's amount (contracts/deals.py's limit)
MAX_LINES = 200


def round_half_even(numerator, denominator):
    """numerator / denominator (non-negative integers) rounded to an integer, ties to even."""
    q, r = divmod(numerator, denominator)
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2 == 1):
        q += 1
    return q


def line_figures(quantity_milli, unit_price, tax_bp, discount_bp=0, discount_amount=None):
    gross = round_half_even(quantity_milli * unit_price, 1000)
    if discount_amount is not None:
        discount = min(discount_amount, gross)
    else:
        discount = round_half_even(gross * (discount_bp or 0), 10000)
    net = gross - discount
    tax = round_half_even(net * tax_bp, 10000)
    return {"gross": gross, "discount": discount, "net": net, "tax": tax, "total": net + tax}


def document_totals(lines):
    """Sums of the lines' figures and the tax per rate (by basis points, ascending)."""
    totals = {"gross": 0, "discount": 0, "net": 0, "tax": 0, "total": 0}
    by_rate = {}
    for line in lines:
        for key in totals:
            totals[key] += line[key]
        rate = by_rate.setdefault(line["tax_bp"], {"tax_bp": line["tax_bp"], "net": 0, "tax": 0})
        rate["net"] += line["net"]
        rate["tax"] += line["tax"]
    totals["taxes"] = [by_rate[k] for k in sorted(by_rate)]
    return totals
