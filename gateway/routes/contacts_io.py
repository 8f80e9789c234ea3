"""Export (streamed CSV/XLSX), probable duplicates and merge of contacts."""
import csv
import io
import json
import re
import tempfile

from flask import Response, g, stream_with_context

from crm_common.config import get_settings
from crm_common.custom_fields import to_cell
from crm_common.errors import Timeout, Unavailable
from gateway import field_access
from gateway.calls import call
from gateway.lists import custom_keys
from gateway.routes import api
from gateway.routes.imports import safe_cell
from contracts import contacts as s

TAG = "contacts"
PAGE = 500
COLUMNS = ("id", "first_name", "last_name", "emails", "phones", "company_name", "position",
           "owner_id", "tags", "source", "status", "do_not_contact", "birthday", "custom",
           "created_at", "updated_at", "last_contacted_at")
PAGING_KEYS = ("format", "limit", "cursor", "include_total")
EXPORT_PAGE = 500
# one page of 500 full contacts can take longer than a plain call on a busy database
PAGE_TIMEOUT = get_settings().gateway.export_page_timeout


def typed_fields():
    """The contacts' typed custom fields in use (not retired): one column each, headed by
    its label, in the form the import reads back (by label)."""
    found = call("contacts", "list_custom_fields", {"entity": "contact",
                                                    "include_retired": "false"})
    return [f for f in found["items"] if not f.get("retired")]


def export_row(contact, typed=(), columns=COLUMNS):
    """One contact as flat cells; lists joined with "; " (the import splits them back);
    then one cell per typed custom field."""
    values = {
        **{k: contact.get(k) for k in COLUMNS},
        "emails": "; ".join(e["email"] for e in contact.get("emails") or []),
        "phones": "; ".join(p.get("e164") or p.get("raw") or ""
                            for p in contact.get("phones") or []),
        "tags": "; ".join(contact.get("tags") or []),
        "custom": json.dumps(contact["custom"], ensure_ascii=False) if contact.get("custom")
        else "",
        "do_not_contact": "yes" if contact.get("do_not_contact") else "no",
    }
    custom = contact.get("custom") or {}
    return [safe_cell(values[k]) for k in columns] + [
        safe_cell(to_cell(f, custom.get(f["key"]))) for f in typed]


def header_row(typed=(), columns=COLUMNS):
    """The columns, then each typed custom field's label: a label is anyone's text, guarded
    as a cell is (formulas)."""
    return [safe_cell(name) for name in list(columns) + [f["label"] for f in typed]]


def contacts_pages(params):
    """Every contact the list would give for these filters, a page at a time from one
    cursor the contacts service keeps open for this export, so memory stays flat whatever
    the count (visibility applies as in the list). Words in `q` are searched in the
    search service's index: such an export pages through it (keyset pages)."""
    query = {k: v for k, v in params.items() if k not in PAGING_KEYS}
    # a custom role's hidden fields never make a contact match `q` (as in the list)
    access = field_access.search_access(g.get("identity"), ("contact",), custom_keys)
    hints = {"access": access} if access else None

    def from_owner(cursor):
        return call("contacts", "export_page", query, cursor, timeout=PAGE_TIMEOUT)

    def from_index(cursor):
        paging = {"limit": EXPORT_PAGE, **({"cursor": cursor} if cursor else {})}
        return call("search", "list_records", "contact", dict(query, **paging), None, hints,
                    timeout=PAGE_TIMEOUT)

    # the first page is asked before the response starts, so a refused filter is a 4xx
    if query.get("q"):
        try:
            return _pages(from_index(None), from_index)
        except (Unavailable, Timeout):  # the index is being rebuilt: the owner's list
            pass
    return _pages(from_owner(None), from_owner)


def _pages(first, ask):
    def pages():
        page = first
        while True:
            yield page["items"]
            if not page["next_cursor"]:
                return
            page = ask(page["next_cursor"])

    return pages()


@api.route("/contacts/export", "GET", "Export contacts as CSV or XLSX (same filters as the "
           "list), streamed", TAG, query=s.ExportQuery, permission="contacts:read")
def export_contacts(body, params):
    fmt = params.get("format", "csv")
    pages = contacts_pages(params)
    typed = typed_fields()
    # a custom role's hidden fields (gateway/field_access.py): neither columns nor values
    names, (keys, all_custom) = field_access.hidden_columns(g.get("identity"), "contacts")
    columns = tuple(c for c in COLUMNS if c not in names)
    if names:
        typed = [f for f in typed if not all_custom and f["key"] not in keys]
        pages = ([field_access.strip(c, names) for c in items] for items in pages)
    if fmt == "xlsx":
        return Response(stream_with_context(_xlsx(pages, typed, columns)), mimetype=(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            headers={"Content-Disposition": 'attachment; filename="contacts.xlsx"'})
    return Response(stream_with_context(_csv(pages, typed, columns)), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="contacts.csv"'})


def _csv(pages, typed=(), columns=COLUMNS):
    out = io.StringIO()
    writer = csv.writer(out)
    out.write("\ufeff")  # BOM: spreadsheet programs then read the file as UTF-8
    writer.writerow(header_row(typed, columns))
    for items in pages:
        for contact in items:
            writer.writerow(export_row(contact, typed, columns))
        yield out.getvalue()
        out.seek(0)
        out.truncate()


# what XML 1.0 cannot hold (C0 controls but tab, LF, CR; lone surrogates; U+FFFE/FFFF):
# one such character in a cell would make openpyxl refuse the whole file
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value):
    return _NOT_XML.sub("", value) if isinstance(value, str) else value


def _xlsx(pages, typed=(), columns=COLUMNS):
    """openpyxl's write-only workbook keeps rows in a temporary file, not in memory; the
    finished file is then sent in chunks."""
    from openpyxl import Workbook
    book = Workbook(write_only=True)
    sheet = book.create_sheet("contacts")
    sheet.append([xml_text(v) for v in header_row(typed, columns)])
    for items in pages:
        for contact in items:
            sheet.append([xml_text(v) for v in export_row(contact, typed, columns)])
    with tempfile.TemporaryFile() as handle:
        book.save(handle)
        handle.seek(0)
        while True:
            chunk = handle.read(256 * 1024)
            if not chunk:
                return
            yield chunk


@api.route("/contacts/duplicates", "GET", "Groups of probable duplicates (same email, phone, "
           "or name and company), scored", TAG, query=s.DuplicatesQuery,
           response=s.DuplicateGroups, permission="contacts:read")
def duplicates(body, params):
    return call("contacts", "find_duplicates", params,
                timeout=get_settings().gateway.duplicates_rpc_timeout)


@api.route("/contacts/{contact_id}/merge", "POST", "Merge duplicates into this contact "
           "(the survivor); sources are soft-deleted with merged_into and restorable", TAG,
           body=s.MergeIn, response=s.MergeOut, errors=(400, 403, 404, 409, 413, 415, 422, 503,
                                                       504), permission="contacts:write")
def merge(contact_id, body, params):
    return call("contacts", "merge_contacts", contact_id, body)
