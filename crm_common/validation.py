"""Load input through a marshmallow schema, raising our typed 422 on failure."""
from marshmallow import ValidationError, fields

from crm_common.errors import ValidationFailed, from_marshmallow


def load(schema, payload, partial=False, json_body=False):
    """`json_body`: the payload is a parsed JSON body, whose types are strict (a boolean is
    only true/false, an integer only a JSON integer, a number only a number), as the OpenAPI
    document says; query parameters arrive as text and are parsed as before."""
    if not isinstance(payload, dict):
        raise ValidationFailed("Expected a JSON object", {"fields": {"_schema": ["Not an object."]}})
    if partial is True:
        # only the top-level fields may be left out: an item of a nested list (a phone in
        # a PATCH) still needs its required fields (marshmallow's True reaches them too)
        partial = tuple(schema.fields)
    if json_body:
        errors = json_type_errors(schema, payload)
        if errors:
            raise from_marshmallow(ValidationError(errors))
    try:
        return schema.load(payload, partial=partial)
    except ValidationError as error:
        raise from_marshmallow(error)


def json_type_errors(schema, data):
    """{field: [message]} for each value of `data` whose JSON type is not its field's
    (recursing into nested objects, lists and dicts); {} when every type fits."""
    errors = {}
    by_key = {field.data_key or name: field for name, field in schema.fields.items()
              if not field.dump_only}
    for key, value in data.items():
        field = by_key.get(key)
        if field is not None:
            error = _type_error(field, value)
            if error:
                errors[key] = error
    return errors


def _type_error(field, value):
    if value is None:
        return None  # allow_none is marshmallow's to check
    if isinstance(field, fields.Boolean):
        return None if isinstance(value, bool) else ["Not a valid boolean (true or false)."]
    if isinstance(field, fields.Integer):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, float) and not value.is_integer()):
            return ["Not a valid integer."]
        return None
    if isinstance(field, (fields.Float, fields.Decimal, fields.Number)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return ["Not a valid number."]
        return None
    if isinstance(field, fields.Nested):
        nested = field.schema
        if field.many or getattr(nested, "many", False):
            if not isinstance(value, list):
                return None
            found = {i: e for i, item in enumerate(value) if isinstance(item, dict)
                     for e in [json_type_errors(nested, item)] if e}
            return found or None
        return (json_type_errors(nested, value) or None) if isinstance(value, dict) else None
    if isinstance(field, fields.List) and isinstance(value, list):
        found = {i: e for i, item in enumerate(value)
                 for e in [_type_error(field.inner, item)] if e}
        return found or None
    if isinstance(field, fields.Dict) and isinstance(value, dict) and field.value_field:
        found = {k: e for k, item in value.items()
                 for e in [_type_error(field.value_field, item)] if e}
        return found or None
    return None
