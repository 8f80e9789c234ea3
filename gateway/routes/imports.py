"""Imports: the file goes to the contacts service over RPC (the gateway never touches the
contacts database); the job runs there in the background and is polled here."""
import base64
import csv
import io
import json

from flask import Response, request, stream_with_context

from crm_common.config import get_settings
from crm_common.errors import BadRequest, ValidationFailed
from gateway.api import UnsupportedMediaType, _validate
from gateway.calls import call
from gateway.routes import api
from contracts import contacts as s

TAG = "imports"
# the import route's own body limit (a file of tens of MB); the global limit stays small
MAX_BYTES = get_settings().contacts.import_max_bytes  # what contacts accepts
# storing tens of MB in the contacts database takes longer than a plain call
START_TIMEOUT = get_settings().gateway.import_rpc_timeout
options_schema = s.ImportOptions()


# the options' schema (s.ImportOptions) as multipart parts: text values
IMPORT_OPTION_PARTS = {
    "on_duplicate": {"type": "string", "enum": list(s.ON_DUPLICATE)},
    "dry_run": {"type": "string", "enum": ["true", "false"]},
    # an object part is sent as JSON text (OpenAPI's default for multipart), as the
    # server reads it
    "mapping": {"type": "object", "maxProperties": 500,
                "propertyNames": {"maxLength": 200, "pattern": r"^[^\x00]*$"},
                "additionalProperties": {"type": "string", "maxLength": 80, "pattern": (
                    r"^(first_name|last_name|full_name|email|phone|company|position|tags"
                    r"|owner_email|owner_id|source|status|birthday|do_not_contact|custom|ignore"
                    r"|(phone|email):(work|home|mobile|other)"
                    r"|custom\.[A-Za-z_][A-Za-z0-9_]{0,63})$")},
                "description": '{"column header": "target"}, as JSON text'},
    "default_owner_id": {"type": "string", "minLength": 1, "maxLength": 40}}


@api.route("/imports", "POST", "Start an import of a CSV or XLSX file (multipart `file`) "
           "whose first row names the columns; answers 202 with the job at once", TAG,
           query=s.ImportOptions, response=s.ImportJob,
           status=202, errors=(400, 413, 415, 422, 503, 504), max_body_bytes=MAX_BYTES,
           extra={"request_body": {"multipart/form-data": {"schema": {
               # the options may also come as parts; any other part is refused (422)
               "type": "object", "required": ["file"], "additionalProperties": False,
               "properties": {"file": {"type": "string", "format": "binary"},
                              **IMPORT_OPTION_PARTS}},
               # a valid import (a generator's random bytes rarely make a CSV with a name)
               "examples": {"example1": {"value": {
                   "file": "first_name,last_name,email\nAda,Lovelace,ada@example.org\n"
                           "Grace,Hopper,grace@example.org\n",
                   "on_duplicate": "skip"}}}}},
                  # ... or as query parameters: `mapping` is JSON text there too
                  "query_content": {"mapping": {"application/json": {
                      "schema": IMPORT_OPTION_PARTS["mapping"]}}}},
           permission="imports:write")
def start_import(body, params):
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("Send the file as multipart/form-data with a `file` part",
                                   {"content_type": request.content_type})
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("Invalid input", {"fields": {"file": ["Missing file part."]}})
    options = {**params, **request.form.to_dict()}
    _validate(options_schema, options)
    options = options_schema.load(options)
    mapping = {}
    if options.get("mapping"):
        try:
            mapping = json.loads(options["mapping"])
        except ValueError:
            raise ValidationFailed("Invalid input", {"fields": {"mapping": ["Not JSON."]}})
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValidationFailed("Invalid input", {"fields": {"mapping": [
                'Expected a JSON object {"column header": "target"}.']}})
    data = upload.read()
    if not data.strip():
        raise BadRequest("The file is empty", {"filename": upload.filename})
    payload = {"filename": upload.filename or "upload", "mapping": mapping,
               "content_b64": base64.b64encode(data).decode("ascii"),
               "on_duplicate": options["on_duplicate"], "dry_run": options["dry_run"]}
    if options.get("default_owner_id"):
        payload["default_owner_id"] = options["default_owner_id"]
    del data
    return call("contacts", "start_import", payload, timeout=START_TIMEOUT)


@api.route("/imports", "GET", "List imports (newest first)", TAG, query=s.ImportListQuery,
           response=s.ImportPage, permission="imports:read")
def list_imports(body, params):
    return call("contacts", "list_imports", params)


@api.route("/imports/{import_id}", "GET", "An import: status, progress, counts and the "
           "first row errors", TAG, response=s.ImportJob, permission="imports:read")
def get_import(import_id, body, params):
    return call("contacts", "get_import", import_id)


@api.route("/imports/{import_id}/errors", "GET", "Row errors of an import, as JSON pages",
           TAG, query=s.ImportErrorsQuery, response=s.ImportErrorPage, permission="imports:read")
def import_errors(import_id, body, params):
    return call("contacts", "import_errors", import_id, params)


@api.route("/imports/{import_id}/errors.csv", "GET", "Row errors of an import as a CSV "
           "download (row, column, field, reason, value)", TAG, permission="imports:read")
def import_errors_csv(import_id, body, params):
    first = call("contacts", "import_errors", import_id, {"limit": 2000})

    def rows():
        page = first
        yield "\ufeff"  # BOM: spreadsheet programs then read the file as UTF-8
        yield _csv_line(("row", "column", "field", "reason", "value"))
        while True:
            for e in page["items"]:
                yield _csv_line((e["row"], e["column"], e["field"], e["reason"], e["value"]))
            if not page["next_cursor"]:
                return
            page = call("contacts", "import_errors", import_id,
                        {"limit": 2000, "cursor": page["next_cursor"]})

    return Response(stream_with_context(rows()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="import-{import_id}-errors.csv"'})


@api.route("/imports/{import_id}/undo", "POST", "Undo a finished import: delete what it "
           "created, restore what it updated (runs in the background)", TAG,
           response=s.ImportJob, status=202, errors=(404, 409, 503, 504),
           permission="imports:write")
def undo_import(import_id, body, params):
    return call("contacts", "undo_import", import_id)


def _csv_line(values):
    out = io.StringIO()
    csv.writer(out).writerow([safe_cell(v) for v in values])
    return out.getvalue()


FORMULA_START = "=+-@"
BLANKS = " \t\r\n"


def safe_cell(value):
    """CSV injection: a text cell starting with = + - @, also after blanks, or with a tab,
    CR or LF would run as a formula in a spreadsheet; a leading ' makes it text."""
    if value is None:
        return ""
    text = str(value)
    if text and (text[0] in BLANKS[1:] or text.lstrip(BLANKS)[:1] in tuple(FORMULA_START)):
        return "'" + text
    return text
