"""Custom roles (contracts/roles.py): stored in the gateway's `roles` collection, loaded into
a user's identity when it is resolved (a change bumps the auth epoch, so it holds from the
caller's next request), and looked up by `grant_for` when a route is authorized: the route's
permission names the object, its method (or `/export`) the action."""
from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.timeutil import utcnow
from contracts import roles as schemas
from gateway import permissions

WRITE_ACTIONS = {"POST": "create", "PATCH": "edit", "PUT": "edit", "DELETE": "delete"}


def is_custom(role):
    return bool(role) and role not in schemas.BUILT_IN


def grant_for(identity, permission, route):
    """The scope a custom role's grants give on this route (None: refused)."""
    if permission.manager is None and permission.agent is None:
        return None  # what only admins do (users, keys, audit, settings...)
    if permission.agent == permissions.SELF:
        return permissions.SELF  # one's own profile, session, inbox, stream
    obj, _, kind = permission.name.partition(":")
    if obj not in schemas.OBJECTS:
        return None
    if kind in ("read", "sources"):
        action = "export" if route.path.endswith("/export") else "read"
    else:
        action = WRITE_ACTIONS.get(route.method)
    return ((identity.get("grants") or {}).get(obj) or {}).get(action) if action else None


WIDEST = (permissions.ALL, permissions.TEAM, permissions.OWN)


def permissions_of(identity):
    """{permission: scope} the caller holds (GET /users/me, so a console hides what they may
    not do): a built-in role's cells of the matrix; for a custom role what its grants give,
    as `grant_for` reads them (a write permission: the widest of create / edit / delete)."""
    role = identity.get("role")
    if not is_custom(role):
        return permissions.granted(role)
    grants, out = identity.get("grants") or {}, {}
    for permission in permissions.MATRIX.values():
        if permission.manager is None and permission.agent is None:
            continue
        if permission.agent == permissions.SELF:
            out[permission.name] = permissions.SELF
            continue
        obj, _, kind = permission.name.partition(":")
        actions = grants.get(obj) or {} if obj in schemas.OBJECTS else {}
        held = [actions.get("read")] if kind in ("read", "sources") else [
            actions.get(a) for a in ("create", "edit", "delete")]
        scope = next((s for s in WIDEST if s in held), None)
        if scope:
            out[permission.name] = scope
    return out


# the object whose read grant a search hit of each type needs (contracts/search.py TYPES)
SEARCH_OBJECTS = {"contact": "contacts", "company": "companies", "deal": "deals",
                  "task": "tasks", "call": "calls", "note": "notes"}


def searchable_types(identity, asked):
    """The types of `asked` a custom role reads (its search must not show the others);
    every type asked for a built-in role."""
    if not is_custom(identity.get("role")):
        return asked
    grants = identity.get("grants") or {}
    return tuple(t for t in asked if (grants.get(SEARCH_OBJECTS[t]) or {}).get("read"))


def needs_team(grants):
    return any(scope == "team" for actions in (grants or {}).values() for scope in actions.values())


def _collection(store):
    return store.db["roles"]


def get_role(store, name):
    return _collection(store).find_one({"_id": name}) if is_custom(name) else None


def check_role(store, name, field="role"):
    """422 unless `name` is a built-in role or a defined one."""
    if name in schemas.BUILT_IN or get_role(store, name):
        return name
    raise ValidationFailed("Invalid input", {"fields": {field: [
        f"Unknown role; one of {', '.join(schemas.BUILT_IN)} or a role of /roles."]}})


def dump_role(doc, users=0):
    return {"name": doc["_id"], "label": doc.get("label") or doc["_id"], "built_in": False,
            "permissions": doc.get("permissions") or {}, "fields": doc.get("fields") or {},
            "users": users}


def built_in_roles(store):
    out = []
    for role in schemas.BUILT_IN:
        out.append({"name": role, "label": role.capitalize(), "built_in": True,
                    "permissions": permissions.granted(role), "fields": {}, "users": store.users.count_documents({"role": role})})
    return out


def list_roles(store):
    custom = [dump_role(d, store.users.count_documents({"role": d["_id"]}))
              for d in _collection(store).find({}).sort("_id", 1)]
    return {"items": built_in_roles(store) + custom, "next_cursor": None}


def create_role(store, data, actor_id):
    now = utcnow()
    doc = {"_id": data["name"], "label": data["label"].strip(),
           "permissions": _clean(data.get("permissions")),
           "fields": _clean(data.get("field_grants")), "created_at": now,
           "updated_at": now, "created_by": actor_id}
    if not doc["permissions"]:
        raise ValidationFailed("Invalid input", {"fields": {"permissions": [
            "A role that grants nothing."]}})
    result = _collection(store).update_one({"_id": doc["_id"]}, {"$setOnInsert": doc},
                                           upsert=True)
    if result.upserted_id is None:
        raise Conflict("A role with this name exists", {"name": doc["_id"]})
    return dump_role(doc)


def update_role(store, name, data):
    current = _existing(store, name)
    changes = {"updated_at": utcnow()}
    if "label" in data:
        changes["label"] = data["label"].strip()
    if "permissions" in data:
        changes["permissions"] = _clean(data["permissions"])
    if "field_grants" in data:
        changes["fields"] = _clean(data["field_grants"])
    _collection(store).update_one({"_id": name}, {"$set": changes})
    store.auth_epoch.bump()  # every cached identity drops: the next request sees the change
    return dump_role({**current, **changes}, store.users.count_documents({"role": name}))


def delete_role(store, name):
    current = _existing(store, name)
    users = store.users.count_documents({"role": name})
    if users:
        raise Conflict("Users have this role; give them another first", {"users": users})
    _collection(store).delete_one({"_id": name})
    store.auth_epoch.bump()
    return dump_role(current)


def get(store, name):
    if name in schemas.BUILT_IN:
        return next(r for r in built_in_roles(store) if r["name"] == name)
    return dump_role(_existing(store, name), store.users.count_documents({"role": name}))


def _existing(store, name):
    if name in schemas.BUILT_IN:
        raise Conflict("Built-in roles cannot be changed", {"name": name})
    doc = get_role(store, name)
    if not doc:
        raise NotFound("Role not found", {"name": name})
    return doc


def _clean(grants):
    """Only the actions granted (a null scope is no grant); field grants alike."""
    out = {}
    for obj, actions in (grants or {}).items():
        kept = {action: scope for action, scope in actions.items() if scope}
        if kept:
            out[obj] = kept
    return out
