"""Roles: the three built-in ones and those admins define (gateway/roles.py)."""
from flask import g

from contracts import roles as s
from crm_common.validation import load
from gateway import auth, roles
from gateway.routes import api

TAG = "roles"
WRITE_ERRORS = (400, 404, 409, 413, 415, 422, 503)


@api.route("/roles", "GET", "Roles: built-in ones with their cells, custom ones with their grants",
           TAG, response=s.RolePage, permission="roles:manage")
def list_roles(body, params):
    return roles.list_roles(auth.current().ready())


@api.route("/roles", "POST",
           "Define a role: grants per object and action (read, create, edit, delete, export) with a scope (own, team, all)",
           TAG, body=s.RoleIn, response=s.RoleOut, status=201, errors=WRITE_ERRORS,
           permission="roles:manage")
def create_role(body, params):
    data = load(s.RoleIn(), body)
    return roles.create_role(auth.current().ready(), data, g.identity.get("user_id")), 201


@api.route("/roles/{name}", "GET", "A role", TAG, response=s.RoleOut, permission="roles:manage")
def get_role(name, body, params):
    return roles.get(auth.current().ready(), name)


@api.route("/roles/{name}", "PATCH",
           "Change a custom role's label or grants (holds from its users' next request)", TAG,
           body=s.RolePatch, response=s.RoleOut, errors=WRITE_ERRORS, permission="roles:manage")
def update_role(name, body, params):
    return roles.update_role(auth.current().ready(), name, load(s.RolePatch(), body))


@api.route("/roles/{name}", "DELETE", "Delete a custom role nobody has (409 otherwise)", TAG,
           response=s.RoleOut, errors=(404, 409, 503), permission="roles:manage")
def delete_role(name, body, params):
    return roles.delete_role(auth.current().ready(), name)
