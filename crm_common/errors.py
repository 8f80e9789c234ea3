"""Typed errors that cross RPC intact and map to one HTTP status each at the gateway.

nameko serialises an exception as its path and args; registering the class with
`deserialize_to_instance` makes a nameko RPC proxy in another service raise the same type,
and the gateway maps `exc_path` to the status below.
"""
from nameko.exceptions import deserialize_to_instance


class CrmError(Exception):
    code = "internal_error"
    status = 500

    def __init__(self, message, details=None):
        super().__init__(message, details or {})

    @property
    def message(self):
        return self.args[0]

    @property
    def details(self):
        return self.args[1]

    def to_dict(self):
        return {"code": self.code, "message": self.message, "details": self.details}


@deserialize_to_instance
class BadRequest(CrmError):
    code, status = "bad_request", 400


@deserialize_to_instance
class Forbidden(CrmError):
    code, status = "forbidden", 403


@deserialize_to_instance
class NotFound(CrmError):
    code, status = "not_found", 404


@deserialize_to_instance
class Conflict(CrmError):
    code, status = "conflict", 409


@deserialize_to_instance
class ValidationFailed(CrmError):
    code, status = "validation_error", 422


@deserialize_to_instance
class Unavailable(CrmError):
    code, status = "service_unavailable", 503


@deserialize_to_instance
class Timeout(CrmError):
    code, status = "service_timeout", 504


# Every type a service may raise on purpose; nameko then logs them as expected, not as crashes.
EXPECTED = (BadRequest, Forbidden, NotFound, Conflict, ValidationFailed)

BY_PATH = {f"{cls.__module__}.{cls.__name__}": cls
           for cls in (BadRequest, Forbidden, NotFound, Conflict, ValidationFailed,
                       Unavailable, Timeout)}


def from_marshmallow(error):
    """A marshmallow ValidationError as our 422 with per-field messages."""
    return ValidationFailed("Invalid input", {"fields": error.messages})
