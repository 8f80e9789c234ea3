"""Products, price lists and the line items of deals. Each write returns (result, events)."""
from crm_common import spreadsheets
from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.messaging.events import envelope
from crm_common.timeutil import utcnow
from crm_common.validation import load
from contracts import sales as schemas
from services.sales.money import MAX_LINES, MAX_TOTAL, document_totals, line_figures

SERVICE = "sales"
product_in, product_out = schemas.ProductIn(), schemas.ProductOut()
product_query = schemas.ProductListQuery()
price_list_in, price_list_out = schemas.PriceListIn(), schemas.PriceListOut()
prices_in = schemas.PricesIn()
item_in, item_patch, item_price_in = schemas.ItemIn(), schemas.ItemPatch(), schemas.ItemPriceIn()
items_out = schemas.DealItemsOut()
ITEM_INPUTS = ("quantity_milli", "discount_bp", "discount_amount")


def invalid(field, message):
    return ValidationFailed("Invalid input", {"fields": {field: [message]}})


def event(event_type, data, event_id=None):
    return envelope(SERVICE, event_type, data, event_id)


def dump_product(doc):
    return with_every_key(product_out, product_out.dump(doc), doc["_id"])


def dump_price_list(doc):
    out = price_list_out.dump({**doc, "prices": [
        {"product_id": k, "unit_price": v} for k, v in sorted((doc.get("prices") or {}).items())]})
    return with_every_key(price_list_out, out, doc["_id"])


def today():
    return utcnow().date().isoformat()


class Catalogue:
    def __init__(self, store, caller):
        self.store = store
        self.caller = caller

    # products
    def create_product(self, payload):
        data = load(product_in, payload, json_body=True)
        key = data["sku"].upper()
        if self.store.product_by_sku(key):
            raise Conflict("A product with this SKU exists", {"sku": data["sku"]})
        now = utcnow()
        doc = {"_id": new_id(), **data, "sku_key": key, "created_at": now, "updated_at": now}
        self.store.insert_product(doc)
        return dump_product(doc), []

    def get_product(self, product_id):
        doc = self.store.get_product(product_id)
        if not doc:
            raise NotFound("Product not found", {"id": product_id})
        return dump_product(doc)

    def update_product(self, product_id, payload):
        data = load(product_in, payload, partial=True, json_body=True)
        current = self.store.get_product(product_id)
        if not current:
            raise NotFound("Product not found", {"id": product_id})
        if "sku" in data:
            key = data["sku"].upper()
            other = self.store.product_by_sku(key)
            if other and other["_id"] != product_id:
                raise Conflict("A product with this SKU exists", {"sku": data["sku"]})
            data["sku_key"] = key
        doc = self.store.update_product(product_id, {**data, "updated_at": utcnow()})
        return dump_product(doc), []

    def list_products(self, params):
        query = load(product_query, params)
        filters = {"active": query.get("active")}
        if query.get("sku"):
            filters = {"sku_key": query["sku"].upper()}
        docs, cursor = self.store.list_products(filters, query["limit"], query.get("cursor"))
        return {"items": [dump_product(d) for d in docs], "next_cursor": cursor}

    # price lists
    def create_price_list(self, payload):
        data = load(price_list_in, payload, json_body=True)
        now = utcnow()
        doc = {"_id": new_id(), **data, "prices": {}, "created_at": now, "updated_at": now}
        if data["is_default"]:
            self.store.clear_default(data["currency"], doc["_id"])
            doc["default_key"] = data["currency"]
        self.store.insert_price_list(doc)
        return dump_price_list(doc), []

    def get_price_list(self, list_id):
        return dump_price_list(self._price_list(list_id))

    def _price_list(self, list_id):
        doc = self.store.get_price_list(list_id)
        if not doc:
            raise NotFound("Price list not found", {"id": list_id})
        return doc

    def update_price_list(self, list_id, payload):
        data = load(price_list_in, payload, partial=True, json_body=True)
        current = self._price_list(list_id)
        merged = {**current, **data}
        if merged.get("valid_from") and merged.get("valid_to") and merged["valid_to"] < merged["valid_from"]:
            raise invalid("valid_to", "valid_to is before valid_from.")
        default_key = None
        if merged.get("is_default"):
            self.store.clear_default(merged["currency"], list_id)
            default_key = merged["currency"]
        doc = self.store.update_price_list(list_id, {**data, "updated_at": utcnow()}, default_key)
        return dump_price_list(doc), []

    def set_prices(self, list_id, payload):
        data = load(prices_in, payload, json_body=True)
        self._price_list(list_id)
        ids = {p["product_id"] for p in data["prices"]}
        known = self.store.products_by_id(ids)
        unknown = sorted(ids - set(known))
        if unknown:
            raise ValidationFailed("Invalid input", {"fields": {"prices": [
                f"Unknown product: {', '.join(unknown[:10])}."]}})
        prices = {p["product_id"]: p["unit_price"] for p in data["prices"]}
        return dump_price_list(self.store.set_prices(list_id, prices, utcnow())), []

    def list_price_lists(self, params):
        query = load(schemas.PageQuery(), params)
        docs, cursor = self.store.list_price_lists({}, query["limit"], query.get("cursor"))
        return {"items": [dump_price_list(d) for d in docs], "next_cursor": cursor}

    # deal line items
    def items(self, deal):
        doc = self.store.get_items(deal["id"])
        return dump_items(deal["id"], doc, deal.get("currency"))

    def add_item(self, deal, payload):
        data = load(item_in, payload, json_body=True)
        product = self.store.get_product(data["product_id"])
        if not product or not product.get("active", True):
            raise invalid("product_id", "Unknown or inactive product.")
        price_list = self._price_list_for(deal["currency"], data.get("price_list_id"))
        price = (price_list.get("prices") or {}).get(product["_id"])
        if price is None:
            raise invalid("product_id", "The price list has no price for this product.")
        line = {"id": new_id(), "product_id": product["_id"], "sku": product["sku"],
                "name": product["name"], "unit": product.get("unit"),
                "quantity_milli": data["quantity_milli"], "unit_price": price,
                "price_list_id": price_list["_id"], "price_overridden": False,
                "discount_bp": data.get("discount_bp"), "discount_amount": data.get("discount_amount"),
                "tax_bp": product.get("tax_bp", 0)}
        return self._change(deal, lambda lines: lines + [line])

    def update_item(self, deal, item_id, payload):
        data = load(item_patch, payload, partial=True, json_body=True)
        if data.get("discount_bp") is not None and data.get("discount_amount") is not None:
            raise invalid("discount_amount", "Give discount_percent or discount_amount, not both.")

        def change(lines):
            line = _find(lines, item_id)
            line.update(data)
            if data.get("discount_bp") is not None:
                line["discount_amount"] = None
            if data.get("discount_amount") is not None:
                line["discount_bp"] = None
            return lines
        return self._change(deal, change)

    def set_item_price(self, deal, item_id, payload):
        data = load(item_price_in, payload, json_body=True)

        def change(lines):
            line = _find(lines, item_id)
            line.update(unit_price=data["unit_price"], price_overridden=True)
            return lines
        return self._change(deal, change)

    def remove_item(self, deal, item_id):
        return self._change(deal, lambda lines: [l for l in lines if l["id"] != _find(lines, item_id)["id"]])

    def _price_list_for(self, currency, list_id):
        if list_id:
            found = self.store.get_price_list(list_id)
            if not found:
                raise invalid("price_list_id", "Unknown price list.")
            if found["currency"] != currency:
                raise invalid("price_list_id", f"The price list is in {found['currency']}; "
                                               f"the deal is in {currency}.")
        else:
            found = self.store.default_price_list(currency)
            if not found:
                raise invalid("price_list_id", f"No default price list in {currency}: name one.")
        day = today()
        if (found.get("valid_from") and day < found["valid_from"]) or \
                (found.get("valid_to") and day > found["valid_to"]):
            raise invalid("price_list_id", "The price list is not valid today.")
        return found

    def _change(self, deal, change):
        """The new lines, figured and saved by a compare-and-set on the items' version (a
        concurrent change to the same deal: 409, try again)."""
        current = self.store.get_items(deal["id"]) or {"lines": [], "version": 0}
        lines = change([dict(l) for l in current["lines"]])
        if len(lines) > MAX_LINES:
            raise invalid("product_id", f"At most {MAX_LINES} lines per deal.")
        for line in lines:
            line.update(line_figures(line["quantity_milli"], line["unit_price"], line["tax_bp"],
                                     line.get("discount_bp") or 0, line.get("discount_amount")))
        totals = document_totals(lines)
        if totals["total"] > MAX_TOTAL:
            raise invalid("quantity", f"The deal's total would pass {MAX_TOTAL}.")
        version = current["version"] + 1
        doc = {"lines": lines, "totals": totals, "currency": deal["currency"], "version": version,
               "owner_id": deal.get("owner_id"), "contact_id": deal.get("contact_id"),
               "company_id": deal.get("company_id"), "updated_at": utcnow()}
        if not self.store.save_items(deal["id"], current["version"], doc):
            raise Conflict("The deal's items changed meanwhile; try again", {"deal_id": deal["id"]})
        result = dump_items(deal["id"], doc, deal["currency"])
        return result, [event("deal_items_changed", {
            "deal_id": deal["id"], "currency": deal["currency"], "total": totals["total"],
            "items_count": len(lines), "version": version, "owner_id": deal.get("owner_id"),
            "contact_id": deal.get("contact_id"), "actor_id": self.caller.user_id,
            "summary": f"{len(lines)} line(s), total {totals['total']} {deal['currency']}",
            "ref": {"type": "deal", "id": deal["id"]}})]


def _find(lines, item_id):
    for line in lines:
        if line["id"] == item_id:
            return line
    raise NotFound("Line item not found", {"id": item_id})


def dump_items(deal_id, doc, currency):
    doc = doc or {"lines": [], "totals": document_totals([]), "version": 0, "currency": currency}
    return items_out.dump({"deal_id": deal_id, "currency": doc.get("currency") or currency,
                           "items": doc["lines"], "totals": doc["totals"],
                           "version": doc["version"]})


# the catalogue as CSV or XLSX: sku, name, description, unit, tax_rate, active, price (optional)
IMPORT_COLUMNS = ("sku", "name", "description", "unit", "tax_rate", "active", "price")
MAX_IMPORT_ROWS = 5000
TRUE, FALSE = {"1", "true", "yes", "y", "si", "sì", "да"}, {"0", "false", "no", "n", "нет"}


def catalogue_rows(data):
    """(header, rows of cells) of a catalogue file, CSV or XLSX (told by its content): read
    through the same readers and bounds as the contacts import."""
    fmt = spreadsheets.inspect("catalogue", data[:64 * 1024])
    if fmt["format"] == "xlsx":
        rows = (cells for _, cells in spreadsheets.xlsx_rows(data))
    else:
        rows = (cells for _, cells in spreadsheets.csv_rows([data], fmt["encoding"], fmt["delimiter"]))
    header = next(rows, None) or []
    return [_cell(h).lower() for h in header], rows


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a spreadsheet gives 1999 back as 1999.0
    return str(value).strip()


def parse_catalogue(data):
    """(rows as dicts, errors): every row checked as the API would; nothing is written
    unless every row is good. CSV (`,` `;` tab or `|`, its encoding detected) or XLSX."""
    header, cells_of_rows = catalogue_rows(data)
    if "sku" not in header or "name" not in header:
        raise invalid("file", "The header needs at least sku and name.")
    unknown = [h for h in header if h and h not in IMPORT_COLUMNS]
    if unknown:
        raise invalid("file", f"Unknown columns: {', '.join(unknown[:10])}.")
    reader = ({name: _cell(cells[i]) if i < len(cells) else "" for i, name in enumerate(header) if name}
              for cells in cells_of_rows if any(_cell(c) for c in cells))
    rows, errors, seen = [], [], set()
    for number, raw in enumerate(reader, start=1):
        if number > MAX_IMPORT_ROWS:
            raise invalid("file", f"At most {MAX_IMPORT_ROWS} rows.")
        values = {k: (v or "").strip() for k, v in raw.items() if k}
        payload = {k: values[k] for k in ("sku", "name", "unit") if values.get(k)}
        if values.get("description"):
            payload["description"] = values["description"]
        if values.get("tax_rate"):
            payload["tax_rate"] = values["tax_rate"].replace(",", ".")
        if values.get("active"):
            flag = values["active"].lower()
            if flag not in TRUE | FALSE:
                errors.append({"row": number, "field": "active", "message": "Not yes/no."})
                continue
            payload["active"] = flag in TRUE
        try:
            loaded = product_in.load(payload)
        except Exception as exc:  # marshmallow's ValidationError: one error per field
            for field, messages in getattr(exc, "messages", {"_": [str(exc)]}).items():
                errors.append({"row": number, "field": field, "message": " ".join(map(str, messages))})
            continue
        key = loaded["sku"].upper()
        if key in seen:
            errors.append({"row": number, "field": "sku", "message": "Repeated in the file."})
            continue
        seen.add(key)
        if values.get("price"):
            price = values["price"]
            if not price.isdigit() or int(price) > 10 ** 12:
                errors.append({"row": number, "field": "price",
                               "message": "Minor units, 0..10^12 (e.g. 1999 for 19.99)."})
                continue
            loaded["price"] = int(price)
        rows.append(loaded)
    return rows, errors


class CatalogueImport:
    def __init__(self, store):
        self.store = store

    def run(self, data, price_list_id=None):
        rows, errors = parse_catalogue(data)
        if errors:
            raise ValidationFailed("Some rows are invalid; nothing was imported",
                                   {"rows": errors[:100], "invalid_rows": len({e["row"] for e in errors})})
        if any("price" in r for r in rows):
            if not price_list_id or not self.store.get_price_list(price_list_id):
                raise invalid("price_list_id", "A price column needs an existing price_list_id.")
        now = utcnow()
        known = self.store.products_by_sku({r["sku"].upper() for r in rows})
        docs, prices, created = [], {}, 0
        for row in rows:
            price = row.pop("price", None)
            key = row["sku"].upper()
            if key in known:
                doc = {**row, "_id": known[key]["_id"], "sku_key": key, "updated_at": now, "_known": True}
            else:
                doc = {"_id": new_id(), **row, "sku_key": key, "created_at": now, "updated_at": now}
                created += 1
            if price is not None:
                prices[doc["_id"]] = price
            docs.append(doc)
        self.store.upsert_products(docs)
        if prices:
            self.store.set_prices(price_list_id, prices, now)
        return {"created": created, "updated": len(docs) - created, "prices": len(prices)}, []
