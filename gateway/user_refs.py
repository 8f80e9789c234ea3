"""The one check that a write names real people: every `UserId` field of a request's schema
(an owner, assignee, agent, a target's person; crm_common.fields.UserId) and every custom
field of type `user` must name an active user of the gateway's own users, else 422 naming
the field, before any RPC (so nothing changes). Whom the caller may name (the assignment
rule) stays with the services (crm_common.context.Caller.check_assign)."""
from functools import lru_cache

from flask import g
from marshmallow import fields

from crm_common.errors import ValidationFailed
from crm_common.fields import CustomFields, UserId

MESSAGE = "Unknown or inactive user."
REFRESH_SECONDS = 1
# the entity whose custom fields a schema's `custom` holds, by the schema's name
# (contracts: ContactIn, CompanyIn, DealIn/DealPatch, TaskIn)
CUSTOM_ENTITIES = (("Company", "company"), ("Contact", "contact"), ("Deal", "deal"),
                   ("Task", "task"))


@lru_cache(maxsize=None)
def _paths(schema_class):
    """(path, kind) of the schema's user references: kind "one" (a UserId), "many" (a list
    of them), or ("custom", entity) for a CustomFields of an entity; nested schemas walked."""
    found = []
    for name, field in schema_class().fields.items():
        key = field.data_key or name
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested):
            nested = type(inner.schema)
            found += [((key, *path), kind) for path, kind in _paths(nested)]
        elif isinstance(inner, UserId):
            found.append(((key,), "many" if inner is not field else "one"))
        elif isinstance(field, CustomFields):
            entity = next((e for prefix, e in CUSTOM_ENTITIES
                           if schema_class.__name__.startswith(prefix)), None)
            if entity:
                found.append(((key,), ("custom", entity)))
    return tuple(found)


def _values(data, path):
    """The values at `path` in a JSON body (lists of nested objects walked)."""
    if isinstance(data, list):
        for item in data:
            yield from _values(item, path)
        return
    if not isinstance(data, dict) or path[0] not in data:
        return
    if len(path) == 1:
        yield data[path[0]]
    else:
        yield from _values(data[path[0]], path[1:])


def _user_keys(entity, keys):
    """The keys of type user among `keys`; a key the kept definitions do not know (a field
    defined a moment ago) has them asked again, at most once a second."""
    from gateway.custom_fields_doc import defined_fields
    defined = defined_fields().get(entity) or []
    if not set(keys) <= {f["key"] for f in defined}:
        defined = defined_fields(max_age=REFRESH_SECONDS).get(entity) or []
    return {f["key"] for f in defined if f.get("type") == "user" and not f.get("retired")}


def references(schema_class, data):
    """{field path: [user ids]} a validated request names."""
    named = {}
    for path, kind in _paths(schema_class):
        for value in _values(data, path):
            if isinstance(kind, tuple):  # custom fields: only the keys of type user
                if not isinstance(value, dict) or not any(
                        isinstance(item, str) and item for item in value.values()):
                    continue  # no text value: no user named (no definitions asked for)
                user_keys = _user_keys(kind[1], [k for k, item in value.items()
                                                 if isinstance(item, str) and item])
                for key, item in value.items():
                    if key in user_keys and isinstance(item, str) and item:
                        named.setdefault((*path, key), []).append(item)
                continue
            ids = value if kind == "many" and isinstance(value, list) else [value]
            ids = [i for i in ids if isinstance(i, str) and i]
            if ids:
                named.setdefault(path, []).extend(ids)
    return named


def check(schema_class, data):
    """422 unless every user the request names is an active user (the caller is)."""
    if not _paths(schema_class):
        return
    named = references(schema_class, data)
    if not named:
        return
    me = (g.get("identity") or {}).get("user_id")
    wanted = {i for ids in named.values() for i in ids if i != me}
    if not wanted:
        return
    from gateway import auth
    users = auth.current().ready().get_users(wanted)
    active = {u["_id"] for u in users if u.get("active", True) is not False}
    errors, unknown = {}, set()
    for path, ids in named.items():
        missing = [i for i in ids if i != me and i not in active]
        if missing:
            unknown.update(missing)
            node = errors
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = [MESSAGE]
    if errors:
        raise ValidationFailed("Invalid input", {"fields": errors,
                                                 "unknown_users": sorted(unknown)})
