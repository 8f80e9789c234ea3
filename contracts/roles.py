"""Roles beyond the three built-in ones: an admin-defined role is a set of grants, per object
(the records a permission of gateway/permissions.py is about) and action, each with a
scope. The gateway authorizes with them and tells the services the scope of the request
(`user_scope`), which they apply in their queries as for the built-in roles."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_common.fields import PageOf

BUILT_IN = ("admin", "manager", "agent")
ACTIONS = ("read", "create", "edit", "delete", "export")
SCOPES = ("own", "team", "all")
# what a custom role can be granted: the record objects of the permission matrix
OBJECTS = ("contacts", "companies", "imports", "deals", "pipelines", "targets", "reports",
           "tasks", "task-rules", "notes", "calls", "search", "custom-fields", "lead-sources",
           "deal-settings")
OBJECTS += ("conversations",)  # read: the inbox; create: reply, write, assign, close, reopen
OBJECTS += ("products", "quotes", "invoices", "files")  # the sales service's
NAME = validate.Regexp(r"^[a-z][a-z0-9_-]{1,39}$",
                       error="Lowercase letters, digits, - and _, starting with a letter.")
_GRANTS = fields.Dict(
    keys=fields.String(validate=validate.OneOf(OBJECTS)),
    values=fields.Dict(keys=fields.String(validate=validate.OneOf(ACTIONS)),
                       values=fields.String(allow_none=True, validate=validate.OneOf(SCOPES))),
    metadata={"description": "{object: {action: own|team|all}}; an action left out is refused"})


class RoleIn(Schema):
    name = fields.String(required=True, validate=NAME, metadata={
        "description": "what users' `role` names; not admin, manager or agent"})
    label = fields.String(required=True, validate=validate.Length(1, 100))
    permissions = _GRANTS

    @validates_schema
    def grants_something(self, data, partial=False, **kwargs):
        if data.get("name") in BUILT_IN:
            raise ValidationError("A built-in role's name.", "name")
        if "permissions" in data and not any(
                scope for actions in data["permissions"].values() for scope in actions.values()):
            raise ValidationError("A role that grants nothing.", "permissions")


class RolePatch(Schema):
    label = fields.String(validate=validate.Length(1, 100))
    permissions = _GRANTS

    @validates_schema
    def grants_something(self, data, **kwargs):
        if "permissions" in data and not any(
                scope for actions in data["permissions"].values() for scope in actions.values()):
            raise ValidationError("A role that grants nothing.", "permissions")


class RoleOut(Schema):
    name = fields.String()
    label = fields.String()
    built_in = fields.Boolean()
    permissions = fields.Dict(metadata={
        "description": "custom roles: their grants; built-in roles: their cells of the matrix"})
    users = fields.Integer(metadata={"description": "users who have it"})


class RolePage(PageOf):
    items = fields.List(fields.Nested(RoleOut))
