"""Load input through a marshmallow schema, raising our typed 422 on failure."""
from marshmallow import ValidationError

from crm_common.errors import ValidationFailed, from_marshmallow


def load(schema, payload, partial=False):
    if not isinstance(payload, dict):
        raise ValidationFailed("Expected a JSON object", {"fields": {"_schema": ["Not an object."]}})
    if partial is True:
        # only the top-level fields may be left out: an item of a nested list (a phone in
        # a PATCH) still needs its required fields (marshmallow's True reaches them too)
        partial = tuple(schema.fields)
    try:
        return schema.load(payload, partial=partial)
    except ValidationError as error:
        raise from_marshmallow(error)
