"""Load input through a marshmallow schema, raising our typed 422 on failure."""
from marshmallow import ValidationError

from crm_common.errors import ValidationFailed, from_marshmallow


def load(schema, payload, partial=False):
    if not isinstance(payload, dict):
        raise ValidationFailed("Expected a JSON object", {"fields": {"_schema": ["Not an object."]}})
    try:
        return schema.load(payload, partial=partial)
    except ValidationError as error:
        raise from_marshmallow(error)
