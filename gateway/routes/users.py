"""Users, owned by the gateway. Admins manage everyone; a manager lists and reads the users
of their team; everyone reads and edits their own profile at /users/me. Every create or
update is announced as `user_upserted` for the services that keep a copy."""
from flask import g
from pymongo.errors import DuplicateKeyError

from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.timeutil import utcnow
from crm_common.validation import load
from gateway import auth, roles
from contracts.gateway import MeOut, ProfileIn, UserIn, UserListQuery, UserOut, UserPage
from gateway.routes import api

TAG = "users"
_user_in = UserIn()
_profile_in = ProfileIn()
_list_query = UserListQuery()
PROFILE_FIELDS = ("name", "phone", "telegram_chat_id", "language", "timezone")
ADMIN_FIELDS = PROFILE_FIELDS + ("email", "role", "team", "manager_id", "active",
                                 "rate_limit_per_minute", "extension")


def _invalid(field, message):
    return ValidationFailed("Invalid input", {"fields": {field: [message]}})


def _check_manager(store, manager_id, user_id=None):
    if manager_id is None:
        return
    if manager_id == user_id:
        raise _invalid("manager_id", "A user cannot be their own manager.")
    if not store.get_user(manager_id):
        raise _invalid("manager_id", "Unknown user.")


def _check_extension(store, data, user_id=None):
    """Extensions are unique (the PBX routes by them, telephony maps them to the agent);
    "" means none. The unique index decides under races; this answers the usual case."""
    if "extension" not in data:
        return
    data["extension"] = (data["extension"] or "").strip() or None
    other = store.get_user_by_extension(data["extension"]) if data["extension"] else None
    if other and other["_id"] != user_id:
        raise _taken({"keyPattern": {"extension": 1}}, data)


def _taken(details, data):
    if "extension" in ((details or {}).get("keyPattern") or {}):
        return Conflict("Another user has this extension", {"extension": data.get("extension")})
    return Conflict("A user with this email exists", {"email": (data.get("email") or "").lower()})


def _visible_ids():
    """None: every user (admin); else the ids this manager may see (self and team)."""
    identity = g.identity
    if identity["role"] == "admin":
        return None
    return [identity["user_id"], *identity["team_members"]]


@api.route("/users", "POST", "Create a user (admin)", TAG, body=UserIn, response=UserOut,
           status=201, errors=(400, 409, 413, 415, 422, 503), permission="users:write")
def create_user(body, params):
    data = load(_user_in, body)
    current = auth.current()
    store = current.ready()
    roles.check_role(store, data["role"])
    _check_manager(store, data.get("manager_id"))
    _check_extension(store, data)
    try:
        doc = current.save_user(store.insert_user, auth.new_user_doc(data))
    except DuplicateKeyError as error:
        raise _taken(error.details, data)
    return auth.dump_user(doc), 201


@api.route("/users", "GET", "List users (admin: all; manager: their team)", TAG,
           query=UserListQuery, response=UserPage,
           errors=(400, 422, 503), permission="users:read")
def list_users(body, params):
    q = load(_list_query, params)
    query = {k: q[k] for k in ("role", "team", "manager_id") if q.get(k)}
    if "active" in q:
        query["active"] = q["active"]
    visible = _visible_ids()
    if visible is not None:
        query["_id"] = {"$in": visible}
    docs, next_cursor = auth.current().store.page_users(query, q["limit"], q.get("cursor"))
    return {"items": [auth.dump_user(d) for d in docs], "next_cursor": next_cursor}


@api.route("/users/me", "GET", "The signed-in user, with what their role may do", TAG,
           response=MeOut, errors=(503,), permission="users:self")
def me(body, params):
    user = auth.dump_user(auth.current().store.get_user(g.identity["user_id"]))
    return {**user, "permissions": roles.permissions_of(g.identity),
            "fields": g.identity.get("fields") or {}}


@api.route("/users/me", "PATCH", "Change your own profile or password (password needs "
           "current_password and signs out your other sessions)", TAG, body=ProfileIn,
           partial=True, response=UserOut,
           errors=(400, 403, 413, 415, 422, 503), permission="users:self")
def update_me(body, params):
    data = load(_profile_in, body, partial=True)
    store = auth.current().store
    user = store.get_user(g.identity["user_id"])
    changes = {k: data[k] for k in PROFILE_FIELDS if k in data}
    inc = None
    if "password" in data:
        if not auth.verify_password(user.get("password_hash"), data.get("current_password", "")):
            raise _invalid("current_password", "Wrong current password.")
        changes["password_hash"] = auth.hash_password(data["password"])
        inc = {"token_version": 1}
    return _save(user["_id"], changes, inc)


@api.route("/users/{user_id}", "GET", "Get a user (admin; manager: their team)", TAG,
           response=UserOut, errors=(404, 503), permission="users:read")
def get_user(user_id, body, params):
    visible = _visible_ids()
    doc = auth.current().store.get_user(user_id)
    if not doc or (visible is not None and user_id not in visible):
        raise NotFound("User not found", {"id": user_id})
    return auth.dump_user(doc)


@api.route("/users/{user_id}", "PATCH", "Change a user (admin): role, team, manager, active, "
           "password...; disabling or a new password stops their tokens at once", TAG,
           body=UserIn, partial=True, response=UserOut,
           errors=(400, 404, 409, 413, 415, 422, 503), permission="users:write")
def update_user(user_id, body, params):
    data = load(_user_in, body, partial=True)
    store = auth.current().store
    if not store.get_user(user_id):
        raise NotFound("User not found", {"id": user_id})
    if user_id == g.identity["user_id"] and (data.get("active") is False
                                             or data.get("role", "admin") != "admin"):
        raise _invalid("_schema", "You cannot disable or demote yourself.")
    if "role" in data:
        roles.check_role(store, data["role"])
    if "manager_id" in data:
        _check_manager(store, data["manager_id"], user_id)
    _check_extension(store, data, user_id)
    changes = {k: data[k] for k in ADMIN_FIELDS if k in data}
    if "email" in changes:
        changes["email"] = changes["email"].strip().lower()
    inc = None
    if "password" in data:
        changes["password_hash"] = auth.hash_password(data["password"])
    if "password" in data or data.get("active") is False:
        inc = {"token_version": 1}
    return _save(user_id, changes, inc)


def _save(user_id, changes, inc):
    changes["updated_at"] = utcnow()
    current = auth.current()
    try:
        doc = current.save_user(current.store.update_user, user_id, changes, inc=inc)
    except DuplicateKeyError as error:
        raise _taken(error.details, changes)
    if not doc:
        raise NotFound("User not found", {"id": user_id})
    return auth.dump_user(doc)
