"""Roles beyond the three built-in ones: an admin-defined role is a set of grants, per object
(the records a permission of gateway/permissions.py is about) and action, each with a
scope. The gateway authorizes with them and tells the services the scope of the request
(`user_scope`), which they apply in their queries as for the built-in roles."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_common.fields import Pattern, PageOf
from contracts.contacts import CompanyOut, ContactOut
from contracts.deals import DealOut
from contracts.tasks import TaskOut

BUILT_IN = ("admin", "manager", "agent")
ACTIONS = ("read", "create", "edit", "delete", "export")
SCOPES = ("own", "team", "all")
# what a custom role can be granted: the record objects of the permission matrix
OBJECTS = ("contacts", "companies", "imports", "deals", "pipelines", "targets", "reports",
           "tasks", "task-rules", "notes", "calls", "search", "custom-fields", "lead-sources",
           "deal-settings")
OBJECTS += ("conversations",)  # read: the inbox; create: reply, write, assign, close, reopen
OBJECTS += ("templates",)  # read: message templates and filling them; create/edit/delete: write them
OBJECTS += ("products", "quotes", "invoices", "files")  # the sales service's
NAME = Pattern(r"^[a-z][a-z0-9_-]{1,39}$",
                       error="Lowercase letters, digits, - and _, starting with a letter.")
# field-level grants: per object, a field the role may only read, or may not see at all
# (a field left out follows the object's grants); `custom.<key>`: a typed custom field
FIELD_ACCESS = ("read", "hidden")
_NOT_RESTRICTED = {"id", "version", "updated_at", "deleted_at", "possible_duplicates"}
FIELD_NAMES = {obj: tuple(sorted(set(out().fields) - _NOT_RESTRICTED)) for obj, out in (
    ("contacts", ContactOut), ("companies", CompanyOut), ("deals", DealOut), ("tasks", TaskOut))}


def _grants_of(obj):
    """{field: read|hidden} of one object: the key's pattern names its fields, so the
    document states what the server accepts."""
    names = Pattern(r"^(custom\.[a-z][a-z0-9_]{0,39}|" + "|".join(FIELD_NAMES[obj]) + r")$",
                    error=f"Not a field of {obj}: {{input!r}} (custom.<key> or one of "
                          f"{', '.join(FIELD_NAMES[obj])}).")
    return fields.Dict(keys=fields.String(validate=names),
                       values=fields.String(validate=validate.OneOf(FIELD_ACCESS)))


class FieldGrants(Schema):
    contacts = _grants_of("contacts")
    companies = _grants_of("companies")
    deals = _grants_of("deals")
    tasks = _grants_of("tasks")


_FIELDS = fields.Nested(
    FieldGrants, data_key="fields",
    metadata={"description": "{object: {field: read|hidden}}: `read` shows the field but "
              "refuses writes to it (403), `hidden` also leaves it out of every read, list, "
              "search result, export, report figure and stream event; objects: contacts, "
              "companies, deals, tasks; `custom.<key>` names a typed custom field"})
_GRANTS = fields.Dict(
    keys=fields.String(validate=validate.OneOf(OBJECTS)),
    values=fields.Dict(keys=fields.String(validate=validate.OneOf(ACTIONS)),
                       values=fields.String(allow_none=True, validate=validate.OneOf(SCOPES))),
    metadata={"description": "{object: {action: own|team|all}}; an action left out is refused"})


class RoleIn(Schema):
    # names are unique (409): a few, each created once, again after its DELETE
    OPENAPI_EXAMPLES = tuple(
        {"name": name, "label": label, "permissions": grants}
        for name, label, grants in (
            ("auditor", "Auditor", {"contacts": {"read": "all"}, "deals": {"read": "all"}}),
            ("support-desk", "Support desk",
             {"conversations": {"read": "team", "create": "team"}, "contacts": {"read": "team"}}),
            ("field_sales", "Field sales", {"deals": {"read": "own", "create": "own",
                                                      "edit": "own"}})))
    name = fields.String(required=True, validate=NAME, metadata={
        "description": "what users' `role` names; not admin, manager or agent"})
    label = fields.String(required=True, validate=validate.Length(1, 100))
    permissions = _GRANTS
    field_grants = _FIELDS

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
    field_grants = _FIELDS

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
    field_grants = fields.Dict(data_key="fields", metadata={"description": "field-level grants {object: {field: "
                                   "read|hidden}}; built-in roles: none"})
    users = fields.Integer(metadata={"description": "users who have it"})


class RolePage(PageOf):
    items = fields.List(fields.Nested(RoleOut))
