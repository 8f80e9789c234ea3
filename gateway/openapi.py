"""The OpenAPI document, generated from the route declarations and their marshmallow
schemas (the same ones the services validate with), so it cannot drift from the code."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from marshmallow import fields as ma_fields

from crm_common import fields as crm_fields
from gateway.api import ErrorBody
from gateway.idempotency import HEADER, KEY_PATTERN, METHODS

_PATH_PARAM = re.compile(r"{(\w+)}")
ERROR_TEXT = {400: "Bad request (malformed JSON, invalid cursor, request line too long: "
                   "code uri_too_long)", 401: "Not signed in",
              403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Body too large",
              415: "Unsupported media type", 422: "Invalid input, with per-field errors",
              429: "Too many requests",
              431: "Request headers too large",
              503: "A service or the broker is unavailable",
              504: "A service did not answer in time"}


def _schema_name(schema):
    cls = resolve_schema_cls(schema)
    name = cls.__name__
    if getattr(schema, "partial", False) is True:
        name += "Patch"
    return name


def _dict_keys(self, field, **kwargs):
    """The keys a Dict field accepts (its key field's enum, pattern, lengths; custom fields'
    identifiers) as JSON Schema's propertyNames: OpenAPI 3.0 cannot name them, but its
    generators and validators (schemathesis) apply them."""
    if isinstance(field, crm_fields.CustomFields):
        return {"propertyNames": {"pattern": crm_fields._CUSTOM_KEY.pattern},
                "maxProperties": crm_fields.MAX_CUSTOM_KEYS}
    key_field = getattr(field, "key_field", None)
    if not isinstance(field, ma_fields.Dict) or key_field is None:
        return {}
    names = {k: v for k, v in self.field2property(key_field).items()
             if k in ("enum", "pattern", "minLength", "maxLength")}
    return {"propertyNames": names} if names else {}


def _one_of(self, field, **kwargs):
    """A typed union (contracts.automation.OneOf): oneOf its variants' schemas, with the
    discriminator when one key names the variant."""
    variants = getattr(field, "variants", None)
    if not isinstance(field, ma_fields.Field) or not isinstance(variants, dict):
        return {}
    refs = {}
    for value, schema in variants.items():
        refs.setdefault(value, self.resolve_nested_schema(schema))
    out = {"oneOf": list({ref["$ref"]: ref for ref in refs.values()}.values())}
    if getattr(field, "key", None):
        out["discriminator"] = {"propertyName": field.key,
                                "mapping": {value: ref["$ref"] for value, ref in refs.items()}}
    if field.allow_none:
        out = {"anyOf": [out, {"type": "object", "nullable": True, "enum": [None]}]}
    return out


def build_spec(api, ops_paths):
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(title="CRM platform API", version="1.0.0", openapi_version="3.0.3",
                   plugins=[plugin],
                   info={"description": "Gateway API of the CRM platform. Errors are "
                                        '{"error": {"code", "message", "details"}}.'})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header",
                                               "name": "X-API-Key"})
    plugin.converter.add_attribute_function(_dict_keys)
    plugin.converter.add_attribute_function(_one_of)
    spec.components.schema("Error", schema=ErrorBody)
    for route in api.routes:
        spec.path(path=route.path, operations={route.method.lower(): _operation(route)})
    for path, method, summary in ops_paths:
        spec.path(path=path, operations={method: {
            "summary": summary, "tags": ["ops"], "responses": {"200": {"description": "OK"},
                                                              "503": {"description": "Not ready"}}}})
    out = spec.to_dict()
    # a schema's own JSON Schema keywords the fields cannot give (e.g. `dependencies`: a
    # filter that needs another): OpenAPI 3.0 has no word for them, schemathesis applies them
    for key, name in plugin.converter.refs.items():
        extra = getattr(key[0], "OPENAPI_EXTRA", None)
        if extra and name in out["components"]["schemas"]:
            out["components"]["schemas"][name].update(extra)
    for route in api.routes:
        # a query parameter sent as JSON text: its content and schema replace `string`
        for param in out["paths"][route.path][route.method.lower()]["parameters"]:
            content = route.extra.get("query_content", {}).get(param["name"])
            if param["in"] == "query" and content:
                param.pop("schema", None)
                param["content"] = content
    add_links(out)
    return _strict_nullable_refs(out)


def _strict_nullable_refs(node):
    """apispec writes a nullable nested schema as anyOf [{type: object, nullable}, $ref],
    whose first branch admits any object; the server admits null or the nested schema."""
    if isinstance(node, dict):
        branches = node.get("anyOf")
        if isinstance(branches, list) and len(branches) == 2:
            refs = [b for b in branches if set(b) == {"$ref"}]
            nulls = [b for b in branches if b == {"type": "object", "nullable": True}]
            if len(refs) == 1 and len(nulls) == 1:
                node["anyOf"] = [refs[0], {"type": "object", "nullable": True, "enum": [None]}]
        for value in node.values():
            _strict_nullable_refs(value)
    elif isinstance(node, list):
        for value in node:
            _strict_nullable_refs(value)
    return node


# links the path structure cannot give: (source path, method), the collection whose items
# it leads to, and where the item's key is in the source's answer
EXTRA_LINKS = (
    # a message sent to a contact opens (or joins) its conversation
    ("/api/v1/contacts/{contact_id}/messages", "post", "/api/v1/conversations",
     "$response.body#/conversation_id"),
    # a file's share link is a token for the public download
    ("/api/v1/files/{file_id}/links", "post", "/api/v1/shared-files", "$response.body#/token"),
    # a Telegram lead form's key is its bot's webhook route
    ("/api/v1/forms", "post", "/api/v1/inbound/telegram", "$response.body#/key"),
    # a listed message's stored attachment
    ("/api/v1/conversations/{conversation_id}/messages", "get",
     "/api/v1/conversations/{conversation_id}/attachments",
     "$response.body#/items/0/attachments/0/id"),
)


# body fields naming a user (a created user's id goes there)
PEOPLE = {"owner", "assignee", "agent", "manager", "user"}


def add_links(out):
    """OpenAPI links, so a stateful client (schemathesis) chains operations as a user would:
    what a POST creates, and each item of a list, goes into the operations of that item and
    its sub-resources (path `<collection>/{param}[/words]`); the parameters of the
    collection's own path come from the request. A singleton's GET links to its changes;
    a created id goes into the create bodies naming it."""
    paths, schemas = out["paths"], out["components"]["schemas"]

    def props(schema):
        while isinstance(schema, dict) and "$ref" in schema:
            schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return schema.get("properties", {}) if isinstance(schema, dict) else {}

    def answer(op):
        for status, response in op["responses"].items():
            if status.startswith("2") and "content" in response:
                schema = response["content"].get("application/json", {}).get("schema")
                if schema is not None:
                    return status, response, props(schema)
        return None, None, {}

    def link(response, target_path, method, parameters):
        target = paths[target_path][method]
        response.setdefault("links", {})[target["operationId"]] = {
            "operationId": target["operationId"],
            "parameters": {f"path.{name}": value for name, value in parameters.items()}}

    def under(collection):
        """(path, method, param) of the item operations of a collection: one more placeholder
        segment, then words only."""
        depth = len(collection.split("/"))
        for path, ops in paths.items():
            parts = path.split("/")
            if (len(parts) > depth and path.startswith(collection + "/")
                    and _PATH_PARAM.fullmatch(parts[depth])
                    and not any(_PATH_PARAM.search(part) for part in parts[depth + 1:])):
                for method in ops:
                    yield path, method, _PATH_PARAM.fullmatch(parts[depth]).group(1)

    def key_of(param, fields):
        # `{key}`, `{name}`, `{token}`: that field of the item; `{..._id}`: its id
        return param if not param.endswith("_id") and param in fields else "id"

    for collection, ops in paths.items():
        own = {name: f"$request.path.{name}" for name in _PATH_PARAM.findall(collection)}
        for method in ("post", "get"):
            if method not in ops:
                continue
            status, response, fields = answer(ops[method])
            if response is None:
                continue
            listed = props(fields.get("items", {}).get("items", {})) \
                if fields.get("items", {}).get("type") == "array" else {}
            for path, target, param in under(collection):
                if method == "post" and key_of(param, fields) in fields:
                    pointer = f"/{key_of(param, fields)}"
                elif listed:  # a list, or a create that answers the whole list
                    key = key_of(param, listed)
                    pointer = f"/items/0/{key}" if key in listed else None
                else:
                    pointer = None
                if pointer:
                    link(response, path, target,
                         {**own, param: f"$response.body#{pointer}"})
        # a singleton (settings, preferences, me): its GET leads to its changes
        shown = answer(ops["get"])[2] if "get" in ops else {}
        parent, _, last = collection.rpartition("/")
        item = _PATH_PARAM.fullmatch(last) and parent in paths
        if shown and "post" not in ops and "items" not in shown and not item:
            for method in ("patch", "put"):
                if method in ops:
                    link(answer(ops["get"])[1], collection, method, own)
        # a deleted item is read again (404). Not restored (POST .../restore): schemathesis'
        # use-after-free check would take the restored item's next read for a deleted one
        if "delete" in ops and "get" in ops and answer(ops["delete"])[1] is not None:
            link(answer(ops["delete"])[1], collection, "get", own)
    # a created item's id into the create bodies that name it (`contact_id` of POST /deals):
    # merged into the generated body (schemathesis' `merge_body`), so a note, deal, quote...
    # refers to something that exists
    created = {collection.rsplit("/", 1)[-1]: answer(ops["post"])[1]
               for collection, ops in paths.items()
               if "post" in ops and "{" not in collection and "id" in answer(ops["post"])[2]}
    for path, ops in paths.items():
        post = ops.get("post", {})
        if not post or "{" in path:
            continue
        content = post.get("requestBody", {}).get("content", {}).get("application/json", {})
        examples = [e["value"] for e in content.get("examples", {}).values()]
        # the body's fields, and the query's (an upload names its record there: POST /files)
        sources = [("body", props(content.get("schema")))] if "schema" in content else []
        query = {p["name"]: p.get("schema", {}) for p in post.get("parameters", [])
                 if p["in"] == "query"}
        if query:
            sources.append(("query", query))
        for where, fields in sources:
            for field in fields:
                name = field[:-3] if field.endswith("_id") else None
                # a record of any kind (notes, files): `record_type` says which
                kinds = fields["record_type"].get("enum", []) if field == "record_id" and \
                    "record_type" in fields else [name]
                for kind in kinds:
                    plural = "users" if kind in PEOPLE else "companies" if kind == "company" \
                        else f"{kind}s".replace("_", "-")
                    if kind is None or created.get(plural) is None:
                        continue
                    # the field itself when the item has one (a call's provider `call_id`)
                    key = field if field in answer(paths[f"/api/v1/{plural}"]["post"])[2] else "id"
                    value = {field: f"$response.body#/{key}"}
                    if kind != name:
                        value["record_type"] = kind
                    links = created[plural].setdefault("links", {})
                    name_ = f'{post["operationId"]}.{field}'
                    if where == "query":
                        links[name_] = {"operationId": post["operationId"], "parameters": {
                            f"query.{k}": v for k, v in value.items()}}
                        continue
                    links[name_] = {"operationId": post["operationId"], "requestBody": value,
                                    "x-schemathesis": {"merge_body": True}}
                    # ... and the create's first example naming it, whole: a generated body
                    # rarely makes a valid note or deal, which the operations of the created
                    # item need (merged, the generated rest varies)
                    if examples and field in examples[0]:
                        links[name_ + ".example"] = {
                            "operationId": post["operationId"],
                            "requestBody": {**examples[0], **value},
                            "x-schemathesis": {"merge_body": False}}
    for source, method, collection, expression in EXTRA_LINKS:
        own = {name: f"$request.path.{name}" for name in _PATH_PARAM.findall(collection)}
        response = answer(paths[source][method])[1]
        for path, target, param in under(collection):
            link(response, path, target, {**own, param: expression})
    return out


def _operation(route):
    # a path parameter's schema: text, unless the route states one (e.g. an enum)
    path_schemas = route.extra.get("path_schemas", {})
    parameters = [{"in": "path", "name": name, "required": True,
                   "schema": path_schemas.get(name, {"type": "string"})}
                  for name in _PATH_PARAM.findall(route.path)]
    if route.query:
        parameters.append({"in": "query", "schema": route.query})
    parameters.append({"in": "header", "name": "X-Request-Id", "required": False,
                       "description": "kept when it is a plain token (letters, digits, . _ : -, at "
                                      "most 64, starting with a letter or digit), else replaced",
                       "schema": {"type": "string", "pattern": r"^[\x20-\x7e]*$"}})
    parameters += route.extra.get("parameters", [])  # e.g. a Range header the route reads
    idempotent = route.method in METHODS and not route.public
    if idempotent:
        parameters.append({"in": "header", "name": HEADER, "required": False, "description": (
            "Per caller, 24 h: the same key with the same request answers the stored first "
            "answer again (Idempotent-Replayed: true); with another request 422; while the "
            "first still runs 409 (retry)"),
            "schema": {"type": "string", "minLength": 1, "maxLength": 200,
                       "pattern": KEY_PATTERN}})
    responses = {str(route.status): {"description": "Success"}}
    if route.response:
        responses[str(route.status)]["content"] = {"application/json": {"schema": route.response}}
    # every signed-in route may answer 401 (no/bad credentials), 403 (role or key scope)
    # and 429 (rate limit)
    # every public route is rate limited (429); any request may be refused by gunicorn for
    # its request line or headers (400, 431)
    statuses = set(route.errors) | {400, 429, 431}
    if not route.public:
        statuses |= {401, 403}
    if idempotent:
        statuses |= {409, 422}  # Idempotency-Key still in use / used for another request
    for status in sorted(statuses):
        responses[str(status)] = {"description": ERROR_TEXT[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for status, answer in route.extra.get("responses", {}).items():  # non-JSON answers
        responses[str(status)] = answer
    operation = {"summary": route.summary, "tags": [route.tag], "parameters": parameters,
                 "responses": responses, "operationId": route.endpoint,
                 "security": [] if route.public else [{"bearer": []}, {"apiKey": []}]}
    if route.body:
        schema = route.body(partial=True) if route.partial else route.body
        content = {"schema": schema}
        # a create's valid examples (the contract's OPENAPI_EXAMPLES): what a client can copy,
        # and what a generator (schemathesis' examples and stateful phases) starts from when
        # random data rarely makes a valid create (tests/test_gateway_ops.py checks them)
        examples = () if route.partial else getattr(route.body, "OPENAPI_EXAMPLES", ())
        if examples:
            content["examples"] = {f"example{i}": {"value": value}
                                   for i, value in enumerate(examples, 1)}
        operation["requestBody"] = {"required": True, "content": {"application/json": content}}
    elif "request_body" in route.extra:  # a body the route reads itself (forms, files)
        operation["requestBody"] = {"required": True, "content": {
            media: _upload_example(media, content)
            for media, content in route.extra["request_body"].items()}}
    return operation


# an upload's example: a small text file, one the catalogue import (POST /products/import)
# reads as well as a file on a record stores
UPLOAD_EXAMPLE = "sku,name,unit\nLIC-EXAMPLE,Example licence,pcs\n"


def _upload_example(media, content):
    """A multipart upload (a binary part) gets a valid example, as a create's JSON body
    does: a generator's random bytes are refused for their content, not their shape."""
    schema = content.get("schema", {})
    binary = [name for name, prop in schema.get("properties", {}).items()
              if prop.get("format") == "binary"]
    if media != "multipart/form-data" or not binary or "examples" in content:
        return content
    value = {name: UPLOAD_EXAMPLE for name in binary}
    return {**content, "examples": {"example1": {"value": value}}}


# bodies of routes that read them themselves, for their declarations' extra["request_body"]
FIELDS = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 2000}}
FORM_BODY = {"application/x-www-form-urlencoded": {"schema": FIELDS}}
JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
