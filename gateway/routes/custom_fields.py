"""Typed custom fields: one API, each entity's fields kept by the service that owns it
(contracts/custom_fields.py OWNERS), which validates every write against them."""
from contracts import custom_fields as s
from crm_common.errors import NotFound, ValidationFailed
from gateway.calls import call
from gateway.routes import api

TAG = "custom-fields"
WRITE_ERRORS = (400, 403, 404, 409, 413, 415, 422, 503, 504)
ENTITY_PATH = {"entity": {"type": "string", "enum": list(s.ENTITIES)}}


def _owner(entity, field="entity"):
    if entity not in s.OWNERS:
        raise ValidationFailed("Invalid input", {"fields": {field: [
            f"One of {', '.join(s.ENTITIES)}."]}})
    return s.OWNERS[entity]


def _split(field_id):
    entity, _, key = field_id.partition(":")
    if entity not in s.OWNERS or not key:
        raise NotFound("Custom field not found", {"id": field_id})
    return entity, key


@api.route("/custom-fields", "GET", "An entity's custom fields (retired ones too, flagged)", TAG,
           query=s.CustomFieldQuery, response=s.CustomFieldPage, permission="custom-fields:read")
def list_fields(body, params):
    return call(_owner(params.get("entity")), "list_custom_fields", params)


@api.route("/custom-fields", "POST",
           "Define a typed custom field of an entity (admins; its key is stable, its label can change)",
           TAG, body=s.CustomFieldIn, response=s.CustomFieldOut, status=201, errors=WRITE_ERRORS,
           permission="custom-fields:manage")
def create_field(body, params):
    return call(_owner(body.get("entity")), "create_custom_field", body)


@api.route("/custom-fields/{field_id}", "GET", "A custom field (id = <entity>:<key>)", TAG,
           response=s.CustomFieldOut, permission="custom-fields:read")
def get_field(field_id, body, params):
    entity, key = _split(field_id)
    return call(_owner(entity), "get_custom_field", entity, key)


@api.route("/custom-fields/{field_id}", "PATCH",
           "Rename, change options, mark required, retire or bring back a custom field (values are kept)",
           TAG, body=s.CustomFieldPatch, response=s.CustomFieldOut, errors=WRITE_ERRORS,
           permission="custom-fields:manage")
def update_field(field_id, body, params):
    entity, key = _split(field_id)
    return call(_owner(entity), "update_custom_field", entity, key, body)


@api.route("/custom-fields/minimal/{entity}", "GET",
           "The minimal data set of an entity: standard fields plus the custom fields defined required",
           TAG, response=s.MinimalOut, permission="custom-fields:read",
           extra={"path_schemas": ENTITY_PATH})
def get_minimal(entity, body, params):
    return call(_owner(entity), "get_minimal_fields", entity)


@api.route("/custom-fields/minimal/{entity}", "PUT",
           "Set the standard fields of an entity's minimal data set (admins)", TAG,
           body=s.MinimalIn, response=s.MinimalOut, errors=WRITE_ERRORS,
           permission="custom-fields:manage", extra={"path_schemas": ENTITY_PATH})
def set_minimal(entity, body, params):
    return call(_owner(entity), "set_minimal_fields", entity, body)


@api.route("/reports/completeness", "GET",
           "Data completeness per owner: the share of their records with the whole minimal data set",
           "reports", query=s.CompletenessQuery, response=s.CompletenessReport,
           permission="reports:read")
def completeness(body, params):
    return call(_owner(params.get("entity")), "completeness_report", params)
