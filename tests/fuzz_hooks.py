"""schemathesis hooks of the fuzz job (tests/test_schemathesis.py sets SCHEMATHESIS_HOOKS to
this module): what the OpenAPI document cannot tell a generator, said once, with the reason.

- Idempotency-Key: a valid key is replaced by a fresh one per request. The document says the
  same key with another request answers 422 (by design); generated keys repeat ("0"), so
  every later request with a generated key would be refused for that reason alone.
- Expected rejections of schema-valid requests (positive data acceptance): rules the server
  enforces that OpenAPI 3.0 cannot state, each matched on the field and message of the 422
  the server answers, so any other refusal still fails the run.
- Gunicorn's 414/431 (request line or headers over its limits, documented on every
  operation): a URL's total length is not a per-parameter bound a document can give.
- A body over the limits is refused 413 (documented), a status schemathesis' negative data
  check does not count among refusals.
- A list's free-form query object (`custom_filters`, `cf.<key>` entries): the generator
  does not apply its propertyNames, so an entry may take a named parameter's name with a
  value that parameter refuses (`status=`): refused as it should be.
- A deal line (POST /deals/{id}/items): half the valid ones name the job's product, priced
  in the default euro list (a product, a price and a deal: no one link gives them).
- The job's own user (PATCH /users/{its id}) gets no new password, rate limit or
  extension: its token would stop (401) or be throttled (429) for the rest of the job.
- X-Request-Id: advisory; one not of the documented pattern is replaced, never refused.
- DELETE /api-keys/{id} revokes and DELETE /tasks/{id} cancels: the key (revoked_at) and
  the task (canceled_at) stay readable (documented), which the use-after-free check would
  take for a deleted resource still served.
- 503/504 `service_unavailable` / `service_timeout`: the documented, bounded answers of a
  service that is not configured or did not answer in time (as in the default run)."""
import json
import os
import random
import re
import uuid

import jsonschema_rs
import schemathesis

from gateway.idempotency import HEADER, KEY_PATTERN

# (field, message regex, why the document cannot say it)
EXPECTED_REJECTIONS = (
    # cursors are signed by the server (crm_common.cursors): one of the documented pattern
    # that this list did not make is refused; only a previous page's next_cursor is valid
    ("cursor", r"^Not a cursor of this list"),
    # rules across two fields (from before to, end after start, a price list's valid_from
    # before valid_to, the deals list's closed_after / expected_close_from before their
    # ends): described in the fields' descriptions; JSON Schema cannot compare two values
    (r"(valid_)?(from|to)|end|end_at|closed_after|expected_close_from",
     r"must be before|must be after|is before|needs due_at"),
    # a purchase period (the contacts list's filters, a segment's, GET /contacts/export):
    # bought_from / bought_to need bought_product and run forwards. Two fields again: a
    # segment's document says the first (SegmentFilters' `dependencies`), query parameters
    # cannot, and neither can compare two dates
    (r"bought_product", r"^A purchase period needs bought_product\.$"),
    (r"bought_to", r"^bought_from is after bought_to\.$"),
    # a report's buckets: the range divided by the period, bounded (two parameters again)
    (r"period", r"^Too many periods in this range"),
    # "exactly one of" / "one of these with that": described, not expressible in the
    # marshmallow-generated schema (no oneOf)
    (r".*", r"^Give exactly one of|^Give \w+ and/or|needs (its|member_ids)|^A \w+ rule names|"
            r"^A channel route names|^A recurring task needs|^Give \w+ or \w+\.$"
            r"|^Give a body, html(,| or) a template|^Only select fields have options"
            r"|^A select field needs options|^An? \w+ trigger (names|needs)"
            r"|^Give \w+ or \w+, not both|^Exactly one primary|^Each \w+ once"
            r"|^Give an amount or amount_override: false, not both\.$"),
    # a quote or invoice is made of the deal's line items (run-time state); an uploaded
    # file's bytes must be UTF-8 text (binary content, not a schema's say)
    (r"deal_id|file", r"^The deal has no line items|^Not UTF-8 text|^The header needs"),
    # a template's e-mail parts (subject, html) and WhatsApp name belong to its channel
    # (said on each field): two fields again
    (r"subject|html|whatsapp_template", r"^Only an e-mail template has an? |"
                                        r"^Only a WhatsApp template names "),
    # an entity's standard fields depend on the entity in the path
    (r"standard", r"^Not standard fields of an? "),
    # list filters' extra parameters are `cf.<key>[.op]` (custom_filters' propertyNames);
    # the fuzzing phase's generator does not apply propertyNames to exploded query objects
    (r"(?!cf\.).*", r"^Unknown field\.$"),
    # an automation rule's actions and conditions, and a segment's filters, are free-form
    # objects in the document (each action type, operator and filter is described in the
    # field's description; the marshmallow contract has no per-type schema to generate)
    (r"actions\.\d+(\.\w+)*|conditions(\.\w+)*", r"."),
    (r"filters", r"^Unknown filters: |^\{"),
    # working hours: a day's own hours are for one of `days`, once (said on the field)
    (r"day_hours", r"^One entry per working day \(a day of `days`\)\.$"),
    # "at least one of these fields" / "items of each kind", "names unique across items"
    (r".*", r"^A contact needs a name|^A pipeline needs at least one stage of each kind"
            r"|^Stage names must be unique|^A stage id appears twice"
            r"|^One cost per month and currency"),
    # URLs are checked by marshmallow's URL validator (host, TLD, scheme); the document says
    # `format: url`, which JSON Schema generators do not apply
    (r"url|.*_url", r"^Not a valid URL\.$"),
    # keys of a free-form object (custom fields, per-event channels): OpenAPI 3.0 has no
    # propertyNames to state which keys are allowed (documented in the field's description)
    (r".*", r"^Key must be a letter or _"),
    # ... and their values' types: the custom fields' own schema (definitions, types per
    # field) is being made by issue 25; until then the document says only "an object"
    (r".*", r"^Value must be text, number, boolean, null"),
    # marshmallow's Dict key errors: the document states the same key field as
    # propertyNames (gateway/openapi.py _dict_keys), which the fuzzing phase's generator
    # does not always apply, in a JSON body either (a segment's filters.custom_filters)
    (r"key", r"^Must be one of: |^Length must be between|^String does not match expected"
             r" pattern\.$|^A key cannot hold a NUL character\.$|^Not a field of \w+: "),
    # a PATCH must change something; a webhook's secret is set once; a merge names others
    (r"_schema|secret|source_ids", r"^Nothing to change\.$|^The secret cannot be changed"
                                   r"|^Contains the survivor's id\.$"),
    # values configured at run time (lead sources, lost reasons in /deal-settings; a team
    # with active users; the signed-in user's own password and role; an active product, and
    # its price in the price list a deal line names)
    (r".*", r"^Not one of the configured|^No active user in this team"
            r"|^Unknown or inactive (user|product)\.$|^Wrong current password"
            r"|^The price list has no price for this product\.$"
            r"|^You cannot disable or demote yourself"),
    # a user's role: a built-in one or a custom role of /roles (defined at run time); a
    # custom role is not named as a built-in one (said on the field; a pattern that says
    # "not these words" needs a lookahead, which the generators do not apply)
    (r"role", r"^Unknown role; one of "),
    (r"name", r"^A built-in role's name\.$"),
    # stages are configured at run time: a new deal (or a form's deal) starts in an open
    # stage, a move goes to a stage of the deal's own pipeline
    (r"stage_id", r"^A new deal starts in an open stage|^Not an open stage"
                  r"|^Not a stage of this deal.s pipeline"),
    # one pipeline schema for create and change: stage ids name existing stages, which a
    # new pipeline has none of (described on the field)
    (r"stages", r"^A new pipeline's stages have no ids yet"),
    # "a way to reach the person": one of email, phone or messenger handle
    (r"_schema", r"^No email, phone or messenger handle"),
    # run-time state: a note's commitment is changed only on a note that holds one, a move
    # to a lost stage needs the lost reason and a move to another stage takes none (said
    # on the field; which stages are lost is configured), an upload holds a byte and an
    # import's first row names its columns (the file's content)
    (r"commitment", r"^This note holds no commitment\.$"),
    (r"lost_reason", r"^A lost deal needs a lost reason\.$"
                     r"|^Only a move to a lost stage takes a lost reason\.$"),
    (r"file", r"^The file is empty\.$|^The first row must name the columns\.$"),
    # a deal's stage changes only through POST /deals/{id}/move (described on the field)
    (r".*", r"^Use POST /deals/\{id\}/move"),
    # the stateful phase feeds a previous answer's fields into the next body: an error
    # answer's `error` lands in a PATCH /tasks or PUT /notification-preferences body whose
    # schema has no such property (additionalProperties: false), and the server says so
    (r"error", r"^Unknown field\.$"),
    # an import's mapping names the file's own columns, and one of them must give a name,
    # an email or a phone: what the uploaded file holds, not a schema's say
    (r".*", r"^No such column in the file|^No column maps to a name|^Map at least one column"),
    # a message's template is for one channel, the message names another: the template's
    # channel is run-time state (a created template's id lands in the body: the links)
    (r"template_id", r"^This template is for \w+, not \w+\.$"),
    # a deal line's price list is in the deal's currency, a currency has a default list
    # only once one is made, and a list is valid between the dates set on it: run-time state
    (r"price_list_id", r"^The price list is in \w+; the deal is in \w+\.$"
                       r"|^No default price list in \w+: name one\.$"
                       r"|^The price list is not valid today\.$"),
    # a rule's trigger field names a field of the record, custom ones included (configured
    # at run time)
    (r"trigger\.field", r"^unknown field "),
    # "mean it" flags and content rules: a segment with no filter needs allow_everyone; a
    # role must grant something; a marketing e-mail carries its unsubscribe link
    (r".*", r"^A segment with no filter matches every contact|^A role that grants nothing"
            r"|^A marketing e-mail carries"),
    # a decimal (quantities, percentages) as text or number: a pattern cannot bound a
    # number written as text, and a JSON number's decimals have no exact multipleOf
    (r".*", r"^Must be between \d|^A decimal with at most \d decimals"),
    # "this only with that" between two parameters
    (r".*", r"^Required with "),
    # a channel's route_id: Telegram bots only (two fields again, said on the field), and
    # the route named must be a Telegram route (run-time state)
    (r"route_id", r"^Only a Telegram bot has an inbound route\.$"
                  r"|^The route is not a Telegram route\.$"),
    # phone numbers are parsed (libphonenumber): no pattern says which digits make a number
    (r"phone|phones|to|from|number", r"^Not a phone number"),
    # ids and names that must exist (a pipeline, stage, user, contact...): a generator
    # cannot know them; 404 is already an accepted answer, these are body/query references
    (r".*", r"^Unknown (pipeline|stage|user|owner|contact|company|deal|team|source|form|product)"
            r"|not found|does not exist|^No such|^No agent with"),
)
# the same, where the 422's message names the rule and its fields list the offending values
EXPECTED_REJECTION_MESSAGES = (
    r"^Unknown or deleted source contacts$",  # merge: ids that must exist
)
_KEY = re.compile(KEY_PATTERN)


PRODUCT = os.environ.get("CRM_FUZZ_PRODUCT_ID")  # the job's product priced in euros
ME = os.environ.get("CRM_FUZZ_USER_ID")  # the admin every request of the job is sent as
SESSION_FIELDS = ("password", "rate_limit_per_minute", "extension")
_LINES = "/api/v1/deals/{deal_id}/items"
_pick = random.Random(19)


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if headers and isinstance(headers.get(HEADER), str) and _KEY.match(headers[HEADER]):
        headers[HEADER] = uuid.uuid4().hex
    # a valid deal line names a product priced in the deal's currency: ids no link gives
    # (the product, the price list and the deal are three records), so half the valid
    # lines name the job's product at its default list's price
    meta = getattr(case, "_meta", None)
    if (PRODUCT and case.operation.path == _LINES and case.method.upper() == "POST"
            and isinstance(case.body, dict) and meta is not None
            and meta.generation.mode.name == "POSITIVE" and _pick.random() < 0.5):
        case.body["product_id"] = PRODUCT
        case.body.pop("price_list_id", None)
    # the job's own user keeps its session and pace: a new password stops its token (every
    # later call 401), a rate limit throttles it to 429s, a new extension unplugs its
    # click-to-call; none of them tests anything more (set on another user, they are kept)
    if (ME and case.method.upper() == "PATCH" and case.operation.path == "/api/v1/users/{user_id}"
            and (case.path_parameters or {}).get("user_id") == ME and isinstance(case.body, dict)):
        for name in SESSION_FIELDS:
            case.body.pop(name, None)


def _field_errors(response):
    try:
        error = json.loads(response.content)["error"]
        return error["code"], error.get("details", {}).get("fields") or {}
    except Exception:  # noqa: BLE001 - not our error body
        return None, {}


def _error_message(response):
    try:
        return str(json.loads(response.content)["error"]["message"])
    except Exception:  # noqa: BLE001 - not our error body
        return ""


def _messages(fields):
    """(field, message) of a nested marshmallow error dict."""
    for name, value in fields.items():
        if isinstance(value, dict):
            yield from _messages(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from _messages(item)
                else:
                    yield str(name), str(item)
        else:
            yield str(name), str(value)


def _revoked(response):
    try:
        answer = json.loads(response.content)
        return bool(answer.get("revoked_at") or answer.get("canceled_at"))
    except Exception:  # noqa: BLE001 - not our answer
        return False


def _from_free_form_query(case, name):
    """The query's `name` holds a value its own parameter's schema does not admit: it came
    from a free-form object parameter's entries (a list's `custom_filters`), whose
    propertyNames the generator does not apply, so it can be any name, a named one too."""
    query = case.query if isinstance(case.query, dict) else {}
    if name not in query:
        return False
    free_form = named = None
    for parameter in case.operation.query:
        schema = parameter.definition.get("schema") or {}
        if parameter.name == name:
            named = schema
        elif schema.get("type") == "object":
            free_form = schema
    if free_form is None or named is None:
        return False
    try:
        return not jsonschema_rs.validator_for(named).is_valid(query[name])
    except Exception:  # noqa: BLE001 - a schema the validator cannot take: not ours to judge
        return False


def _expected_rejection(response, case=None):
    code, fields = _field_errors(response)
    if response.status_code != 422 or code != "validation_error" or not fields:
        return False
    if any(re.search(rule, _error_message(response)) for rule in EXPECTED_REJECTION_MESSAGES):
        return True
    # re.S: a generated key (the field name of a dict entry) may hold a line break
    return all(any(re.fullmatch(field_re, name, re.S) and re.search(message_re, message)
                   for field_re, message_re in EXPECTED_REJECTIONS)
               or (case is not None and _from_free_form_query(case, name))
               for name, message in _messages(fields))


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False drops the failure (see the module's docstring for each reason)."""
    if response is None:
        return True
    kind = type(failure).__name__
    if response.status_code in (414, 431):
        return False
    if response.status_code == 400 and _field_errors(response)[0] == "uri_too_long":
        return False  # gunicorn's 414, answered 400 uri_too_long (gateway.limits)
    if kind == "ServerError" and response.status_code in (503, 504):
        code, _ = _field_errors(response)
        return code not in ("service_unavailable", "service_timeout")
    if kind == "AcceptedNegativeData" and "`X-Request-Id` in header" in str(failure.message):
        return False  # documented: a request id not of the pattern is replaced, not refused
    if kind == "UseAfterFree" and _revoked(response):
        return False  # a revoked key, a canceled task: kept and readable (documented)
    if kind == "AcceptedNegativeData" and response.status_code == 413:
        return False  # refused, for its size (documented 413): not in schemathesis' 4xx list
    if kind == "RejectedPositiveData":
        code, _ = _field_errors(response)
        if response.status_code == 400 and code == "bad_request" and any(
                text in response.content for text in (
                    # an uploaded file's name must end .csv/.xlsx and its bytes be such a
                    # file (more than blanks): not a schema's say about binary content
                    b"Not a CSV or XLSX file", b"The file is empty", b"Not a readable XLSX",
                    b"Old .xls files are not supported",
                    # the unsubscribe link's token is signed by the server, like a cursor
                    b"This unsubscribe link is not valid",
                    # `cf.<key>` list filters name custom fields defined at run time, with
                    # values of their type
                    b"No custom field ", b"Combine an equality with nothing else",
                    b"Bad value for cf.", b"Not a custom field filter: cf.",
                    b"Cannot sort by 'cf.",
                    b"Sorts and ranges of custom fields (cf.<key>) cannot be combined")):
            return False
        return not _expected_rejection(response, case)
    return True


TRACE = os.environ.get("CRM_FUZZ_TRACE")  # set by the fuzz job: one line per call


@schemathesis.hook
def after_call(context, case, response):
    """[phase, operation, status] of each call, for the job's coverage summary (which
    operations the stateful phase reached)."""
    if TRACE:
        meta = getattr(case, "_meta", None)
        phase = str(meta.phase.name) if meta is not None else None
        with open(TRACE, "a") as handle:
            handle.write(json.dumps([phase, case.operation.label, response.status_code]) + "\n")
