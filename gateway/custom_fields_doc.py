"""The OpenAPI document describes the company's custom fields: each entity's `custom`
object lists the fields defined now (asked of their owning services, kept a few seconds)."""
import copy
import logging
import time

from contracts.custom_fields import ENTITIES, OWNERS
from crm_common.custom_fields import json_schema
from crm_common.errors import CrmError
from gateway.calls import call

log = logging.getLogger(__name__)
CACHE_SECONDS = 10
# the component schemas of each entity that carry `custom`
PREFIXES = {"contact": "Contact", "company": "Company", "deal": "Deal", "task": "Task"}
_cache = {"at": 0.0, "fields": None}


def defined_fields(max_age=CACHE_SECONDS):
    """{entity: [its custom fields]}, asked of their owning services, kept a few seconds."""
    if _cache["fields"] is not None and time.monotonic() - _cache["at"] < max_age:
        return _cache["fields"]
    found = {}
    for entity in ENTITIES:
        try:
            found[entity] = call(OWNERS[entity], "list_custom_fields", {"entity": entity},
                                 timeout=2)["items"]
        except CrmError:  # a service down: its entity's fields stay undescribed this time
            log.warning("custom fields of %s unavailable for the OpenAPI document", entity)
    _cache.update(at=time.monotonic(), fields=found)
    return found


def describe(spec):
    """`spec` with each entity's `custom` property describing its fields."""
    found = defined_fields()
    if not any(found.values()):
        return spec
    out = copy.deepcopy(spec)
    schemas = out.get("components", {}).get("schemas", {})
    for entity, items in found.items():
        if not items:
            continue
        properties = {f["key"]: json_schema(f) for f in items}
        for name, schema in schemas.items():
            custom = (schema.get("properties") or {}).get("custom")
            if name.startswith(PREFIXES[entity]) and custom is not None and not any(
                    name.startswith(p) for e, p in PREFIXES.items()
                    if e != entity and p.startswith(PREFIXES[entity])):
                custom.update({"type": "object", "properties": properties,
                               "additionalProperties": True,
                               "description": "custom fields by key (typed ones listed)"})
    return out
