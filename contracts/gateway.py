"""Users, API keys, sign-in and audit: the single schema source for validation and OpenAPI."""

from marshmallow import Schema, fields, validate

from contracts.events import Bool, EventData, Object, actor_field, ref_field, summary_field
from crm_common.fields import Pattern, timezone_field, cursor_field, PageOf, UtcDateTime, list_limit_field

ROLES = ("admin", "manager", "agent")
# what an API key may be given: <resource>:read|write for every resource tag of the API
SCOPE_PATTERN = r"^[a-z][a-z0-9_-]{0,39}:(read|write)$"


class LoginIn(Schema):
    email = fields.String(required=True, validate=validate.Length(3, 254))
    password = fields.String(required=True, validate=validate.Length(1, 200))


class ProfileIn(Schema):
    """What every user may change of their own profile (not the extension: an admin's)."""
    name = fields.String(validate=validate.Length(1, 200))
    phone = fields.String(allow_none=True, validate=validate.Length(max=40))
    telegram_chat_id = fields.String(allow_none=True, validate=validate.Length(max=64))
    language = fields.String(allow_none=True, validate=validate.Length(2, 10))
    timezone = timezone_field(allow_none=True)
    password = fields.String(validate=validate.Length(8, 200), load_only=True,
                             metadata={"description": "new password; needs current_password"})
    current_password = fields.String(validate=validate.Length(1, 200), load_only=True)


class UserIn(ProfileIn):
    """What an admin sets (PATCH accepts any subset)."""
    # e-mails and extensions are unique (409): a few, each created once
    OPENAPI_EXAMPLES = tuple(
        {"email": f"{name.lower()}@example.com", "name": name, "role": role,
         "password": "correct horse battery", "team": "Sales", "extension": extension}
        for name, role, extension in (("Grace", "agent", "2101"), ("Linus", "manager", "2102"),
                                      ("Radia", "agent", "2103"), ("Barbara", "agent", "2104")))
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.String(required=True, validate=validate.Length(1, 200))
    role = fields.String(required=True, validate=Pattern(
        r"^[a-z][a-z0-9_-]{1,39}$", error="admin, manager, agent or a role of /roles."),
        metadata={"description": "admin | manager | agent, or a custom role (/roles)"})
    team = fields.String(allow_none=True, validate=validate.Length(max=100))
    manager_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    active = fields.Boolean()
    password = fields.String(required=True, validate=validate.Length(8, 200), load_only=True)
    rate_limit_per_minute = fields.Integer(allow_none=True, validate=validate.Range(1, 1_000_000))
    # the PBX routes calls by it and telephony maps it to the agent: unique, set by admins
    extension = fields.String(allow_none=True, validate=[
        validate.Length(max=20), Pattern(r"^[0-9A-Za-z*#+_.-]*$")], metadata={
            "description": "phone extension on the PBX; unique (409 if another user has it)"})


class UserOut(Schema):
    id = fields.String()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    team = fields.String(allow_none=True)
    manager_id = fields.String(allow_none=True)
    active = fields.Boolean()
    extension = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    telegram_chat_id = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    timezone = fields.String(allow_none=True)
    rate_limit_per_minute = fields.Integer(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    last_login_at = UtcDateTime(allow_none=True)


class MeOut(UserOut):
    permissions = fields.Dict(keys=fields.String(), values=fields.String(), metadata={
        "description": "what your role may do: {permission: scope (all|team|own|self)}, "
                       "refused ones left out (docs/auth.md); the API still checks each call"})
    field_grants = fields.Dict(data_key="fields", metadata={
        "description": "a custom role's field grants {object: {field: read|hidden}} (fields "
                       "to show read-only or not at all); {} for others"})


class TokenOut(Schema):
    access_token = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds until the token expires"})
    user = fields.Nested(UserOut)


class StreamTicketOut(Schema):
    ticket = fields.String(metadata={"description": "single use: GET /api/v1/stream?ticket="})
    expires_in = fields.Integer(metadata={"description": "seconds it stays valid"})
    expires_at = UtcDateTime()
    url = fields.String(metadata={"description": "the stream's URL with this ticket"})


class UserListQuery(Schema):
    limit = list_limit_field()
    cursor = cursor_field()
    role = fields.String(validate=validate.Length(1, 40))
    team = fields.String(validate=validate.Length(1, 100))
    manager_id = fields.String(validate=validate.Length(1, 40))
    active = fields.Boolean()


class UserPage(PageOf):
    items = fields.List(fields.Nested(UserOut))


class ApiKeyIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    scopes = fields.List(fields.String(validate=Pattern(SCOPE_PATTERN)), required=True,
                         validate=validate.Length(1, 50),
                         metadata={"description": "e.g. telephony:write, contacts:read"})
    rate_limit_per_minute = fields.Integer(allow_none=True, validate=validate.Range(1, 1_000_000))


class ApiKeyOut(Schema):
    id = fields.String()
    name = fields.String()
    prefix = fields.String(metadata={"description": "the key's first characters, to recognise it"})
    scopes = fields.List(fields.String())
    rate_limit_per_minute = fields.Integer(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = UtcDateTime()
    last_used_at = UtcDateTime(allow_none=True)
    revoked_at = UtcDateTime(allow_none=True)


class ApiKeyCreated(ApiKeyOut):
    key = fields.String(metadata={"description": "the secret key: shown once, never again"})


class ApiKeyListQuery(Schema):
    limit = list_limit_field()
    cursor = cursor_field()
    include_revoked = fields.Boolean(load_default=False)


class ApiKeyPage(PageOf):
    items = fields.List(fields.Nested(ApiKeyOut))


class AuditEntry(Schema):
    id = fields.String()
    at = UtcDateTime()
    actor_id = fields.String(allow_none=True)
    actor_email = fields.String(allow_none=True)
    actor_role = fields.String(allow_none=True)
    api_key_id = fields.String(allow_none=True)
    method = fields.String()
    path = fields.String()
    route = fields.String(allow_none=True)
    resource = fields.String(allow_none=True)
    resource_id = fields.String(allow_none=True)
    changed = fields.List(fields.String(), data_key="fields", attribute="fields",
                          metadata={"description": "the body keys of the request (never values)"})
    status = fields.Integer()
    request_id = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    record_updated_at = fields.String(allow_none=True, metadata={
        "description": "the written record's updated_at (contacts, companies, deals, tasks, "
                       "calls)"})


class AuditQuery(Schema):
    limit = list_limit_field()
    cursor = cursor_field()
    actor_id = fields.String(validate=validate.Length(1, 40))
    api_key_id = fields.String(validate=validate.Length(1, 40))
    resource = fields.String(validate=validate.Length(1, 50))
    resource_id = fields.String(validate=validate.Length(1, 100))
    method = fields.String(validate=validate.OneOf(("POST", "PATCH", "PUT", "DELETE")))
    request_id = fields.String(validate=validate.Length(1, 100))
    from_ = UtcDateTime(data_key="from")
    to = UtcDateTime()


class AuditPage(PageOf):
    items = fields.List(fields.Nested(AuditEntry))


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class UserCopy(EventData):
    """A user as other services keep a copy of it (the gateway's UserOut, announced fields)."""
    id = fields.String(required=True)
    email = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    role = fields.String(allow_none=True, metadata={"description": " | ".join(ROLES)})
    team = fields.String(allow_none=True)
    manager_id = fields.String(allow_none=True)
    active = Bool(metadata={"description": "false: the user gets nothing and is offered nothing"})
    extension = fields.String(allow_none=True, metadata={"description": "the PBX extension"})
    phone = fields.String(allow_none=True)
    telegram_chat_id = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    timezone = fields.String(allow_none=True)


class UserUpserted(EventData):
    """A user was created or changed; re-announced for every user when the gateway starts."""
    user = Object(UserCopy, required=True)
    actor_id = actor_field()
    ref = ref_field("user")
    summary = summary_field()


EVENTS = {"user_upserted": UserUpserted}
