"""What the deals service does, apart from how it is called. Each write returns the events
to announce; the entrypoint dispatches them only after the write succeeded."""
from datetime import timedelta


from crm_common import custom_fields
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.messaging.events import envelope
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.timeutil import to_iso, utcnow
from crm_common.validation import load
from contracts import deals as schemas
from services.deals import funnel as counters, summaries
from services.deals.domain import (amount_changes, build_stages, first_open_stage,
                                   funnel_order, is_rotting, people_of, period_range, ratio, stage_of)

SERVICE = "deals"
DEAL_SORTS = {"created_at": "created_at", "updated_at": "updated_at"}
MOVE_ATTEMPTS = 20
REPORT_DAYS = 30
DEFAULT_CURRENCY = "EUR"

deal_in, deal_patch, move_in = schemas.DealIn(), schemas.DealPatch(), schemas.MoveIn()
deal_out, history_out = schemas.DealOut(), schemas.HistoryEntry()
deal_list_query, history_query = schemas.DealListQuery(), schemas.HistoryQuery()
pipeline_in, pipeline_out = schemas.PipelineIn(), schemas.PipelineOut()
pipeline_list_query = schemas.PipelineListQuery()
settings_in = schemas.DealSettings()
target_in, target_out = schemas.TargetIn(), schemas.TargetOut()
target_list_query, progress_query = schemas.TargetListQuery(), schemas.ProgressQuery()
funnel_query, sales_query = schemas.FunnelQuery(), schemas.SalesQuery()
forecast_query = schemas.ForecastQuery()


def invalid(field, message):
    return ValidationFailed("Invalid input", {"fields": {field: [message]}})


def _event(event_type, data):
    return envelope(SERVICE, event_type, data)


def merged_people(deal, merged_ids, survivor_id):
    """A deal's contacts once `merged_ids` became `survivor_id`: each person once, the
    survivor keeping the first role met and primary if any of them was."""
    people, seen = [], {}
    for person in deal.get("contacts") or []:
        person = dict(person)
        if person["contact_id"] in merged_ids:
            person["contact_id"] = survivor_id
        if person["contact_id"] in seen:
            kept = seen[person["contact_id"]]
            kept["primary"] = kept["primary"] or person.get("primary", False)
            kept["role"] = kept.get("role") or person.get("role")
            continue
        seen[person["contact_id"]] = person
        people.append(person)
    return people


def check_required(stage, deal, contact_of):
    """422 listing what the stage requires and the deal (or its contact, asked with
    `contact_of(id)`) lacks: required fields per stage."""
    missing, contact = [], None
    needs_contact = any(f.startswith("contact.") for f in stage["required_fields"])
    if needs_contact and deal.get("contact_id"):
        contact = contact_of(deal["contact_id"])
    for name in stage["required_fields"]:
        if name.startswith("contact."):
            record, path = contact, name[len("contact."):]
        else:
            record, path = deal, name
        value = record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if custom_fields.is_empty(value) or (name == "amount" and value == 0):
            missing.append(name)
    if missing:
        raise ValidationFailed(f"Fill {', '.join(missing)} before moving to {stage['name']!r}", {
            "missing": missing, "stage_id": stage["id"],
            "fields": {name: ["Required in this stage."] for name in missing}})


class Deals:
    def __init__(self, store, caller, contacts=None):
        self.store = store
        self.caller = caller
        self.contacts = contacts  # RPC proxy to the contacts service

    # visibility
    def _visible(self):
        return self.caller.owner_filter("owner_id")

    def _require_manager(self):
        if self.caller.role not in (None, "admin", "manager"):
            raise Forbidden("Only managers and admins change the sales setup")

    # settings: lead sources (the registry's active names, see sources.py), lost reasons and
    # the currency of deals the service opens itself
    def get_settings(self):
        lists = self.store.get_lists()
        return {"lead_sources": self.store.active_lead_source_names(),
                "lost_reasons": lists.get("lost_reasons") or [],
                "default_currency": lists.get("default_currency") or DEFAULT_CURRENCY}

    def update_settings(self, payload):
        self._require_manager()
        data = load(settings_in, payload, partial=True)
        if "lead_sources" in data:
            names = list(dict.fromkeys(v.strip() for v in data["lead_sources"] if v.strip()))
            if not names:
                raise invalid("lead_sources", "At least one lead source.")
            self.store.set_active_lead_sources(names, utcnow())
        if "lost_reasons" in data:
            self.store.set_list("lost_reasons",
                                list(dict.fromkeys(v.strip() for v in data["lost_reasons"])))
        if "default_currency" in data:
            self.store.set_list("default_currency", data["default_currency"])
        return self.get_settings()

    # pipelines
    def dump_pipeline(self, doc):
        out = pipeline_out.dump(doc)
        out["is_default"] = bool(doc.get("is_default"))
        return with_every_key(pipeline_out, out, doc["_id"])

    def list_pipelines(self, params):
        query = load(pipeline_list_query, params)
        docs, next_cursor = self.store.page_pipelines(query["limit"], query.get("cursor"))
        return {"items": [self.dump_pipeline(d) for d in docs], "next_cursor": next_cursor}

    def _pipeline(self, pipeline_id, field="pipeline_id"):
        doc = self.store.get_pipeline(pipeline_id) if pipeline_id else self.store.default_pipeline()
        if not doc:
            if field:
                raise invalid(field, "Unknown pipeline.")
            raise NotFound("Pipeline not found", {"id": pipeline_id})
        return doc

    def get_pipeline(self, pipeline_id):
        return self.dump_pipeline(self._pipeline(pipeline_id, field=None))

    def create_pipeline(self, payload):
        self._require_manager()
        data = load(pipeline_in, payload)
        if any(s.get("id") for s in data["stages"]):
            raise invalid("stages", "A new pipeline's stages have no ids yet.")
        now = utcnow()
        doc = {"name": data["name"].strip(), "stages": build_stages(data["stages"], {}),
               "removed_stages": [], "is_default": False, "deleted_at": None, "version": 1,
               "created_at": now, "updated_at": now, "created_by": self.caller.user_id}
        return self.dump_pipeline(self.store.insert_pipeline(doc))

    def update_pipeline(self, pipeline_id, payload):
        """Rename, reorder, add, change or remove stages. Stages keep their ids, so deals
        and history stay attached; a removed stage with deals needs a target stage of the
        same kind (`move_deals_to`), so no deal changes status behind anyone's back."""
        self._require_manager()
        # top-level fields are optional; a stage, when given, is whole (not partial)
        data = load(pipeline_in, payload, partial=("name", "stages"))
        current = self._pipeline(pipeline_id, field=None)
        now = utcnow()
        changes = {"updated_at": now}
        if "name" in data:
            changes["name"] = data["name"].strip()
        reassign = []
        if "stages" in data:
            existing = {s["id"]: s for s in current["stages"]}
            unknown = [s["id"] for s in data["stages"] if s.get("id") and s["id"] not in existing]
            if unknown:
                raise invalid("stages", f"Unknown stage id(s): {', '.join(unknown)}.")
            stages = build_stages(data["stages"], existing)
            by_id = {s["id"]: s for s in stages}
            for old in existing.values():
                new = by_id.get(old["id"])
                if new and new["kind"] != old["kind"] and self.store.any_deal_in(pipeline_id, [old["id"]]):
                    raise invalid("stages", f"Stage {old['name']!r} has deals: its kind cannot change.")
            removed = [s for s in current["stages"] if s["id"] not in by_id]
            occupied = self.store.any_deal_in(pipeline_id, [s["id"] for s in removed]) if removed else set()
            moves = data.get("move_deals_to") or {}
            for stage in removed:
                if stage["id"] not in occupied:
                    continue
                target = by_id.get(moves.get(stage["id"]))
                if not target:
                    raise invalid("move_deals_to", f"Stage {stage['name']!r} has deals: name a target stage for them.")
                if target["kind"] != stage["kind"]:
                    raise invalid("move_deals_to", f"Deals of {stage['name']!r} need a target stage of kind {stage['kind']}.")
                reassign.append((stage["id"], target))
            changes["stages"] = stages
            changes["removed_stages"] = (current.get("removed_stages") or []) + removed
        doc = self.store.update_pipeline(pipeline_id, current["version"], changes)
        if not doc:
            raise Conflict("The pipeline changed meanwhile; read it again", {"id": pipeline_id})
        for from_id, target in reassign:
            self.store.reassign_stage(pipeline_id, from_id, target, now)
        if "stages" in data:
            old = {s["id"]: s for s in current["stages"]}
            for stage in doc["stages"]:
                if stage["id"] in old and old[stage["id"]]["probability"] != stage["probability"]:
                    self.store.set_stage_probability(pipeline_id, stage, stage["probability"])
        return self.dump_pipeline(doc)

    def delete_pipeline(self, pipeline_id):
        self._require_manager()
        current = self._pipeline(pipeline_id, field=None)
        if current.get("is_default"):
            raise Conflict("The default pipeline cannot be deleted", {"id": pipeline_id})
        if self.store.any_deal_in(pipeline_id):
            raise Conflict("The pipeline has deals; move or delete them first", {"id": pipeline_id})
        doc = self.store.update_pipeline(pipeline_id, current["version"],
                                         {"deleted_at": utcnow(), "updated_at": utcnow()})
        if not doc:
            raise Conflict("The pipeline changed meanwhile; read it again", {"id": pipeline_id})
        return self.dump_pipeline(doc)

    # deals
    def dump_deal(self, doc, pipeline=None, now=None):
        out = deal_out.dump(doc)
        stage = stage_of(pipeline, doc["stage_id"]) if pipeline else None
        out["rotting"] = is_rotting(doc, stage, now or utcnow())
        out["contacts"] = people_of(doc)
        out["custom"] = doc.get("custom") or {}
        out["amount_override"] = bool(doc.get("amount_override"))
        return with_every_key(deal_out, out, doc["_id"])

    def _dump_many(self, docs):
        pipelines = self.store.pipelines_by_id({d["pipeline_id"] for d in docs})
        now = utcnow()
        return [self.dump_deal(d, pipelines.get(d["pipeline_id"]), now) for d in docs]

    def _deal_contact(self, contact_id):
        """The deal's contact as the contacts service answers it (None: not visible/gone)."""
        try:
            return self.contacts.get_contact(contact_id)
        except NotFound:
            return None

    def completeness_records(self, entity, fields, owner_id):
        return self.store.completeness_records(custom_fields.projection(fields), owner_id,
                                               self.caller.person_ids())

    def typed_custom(self, values):
        """A write's custom values checked against the deal's typed custom fields."""
        return custom_fields.check_values(self.store.custom_fields.of("deal"), values,
                                          users=self.store.active_user_ids)

    def _check_refs(self, data):
        """Contact and company must exist in the contacts service (asked over RPC)."""
        for key, method in (("contact_id", "get_contact"), ("company_id", "get_company")):
            if data.get(key):
                try:
                    getattr(self.contacts, method)(data[key])
                except NotFound:  # the contacts service's typed error, re-raised by the proxy
                    raise invalid(key, f"Unknown {key[:-3]}.")

    def _check_source(self, source):
        if not source:
            return
        known = self.store.lead_source_by_name(source)
        if not known or not known.get("active"):
            raise invalid("source", "Not one of the configured lead sources (see /deal-settings).")

    def create(self, payload):
        data = load(deal_in, payload)
        pipeline = self._pipeline(data.get("pipeline_id"))
        if data.get("stage_id"):
            stage = stage_of(pipeline, data["stage_id"])
            if not stage:
                raise invalid("stage_id", "Unknown stage in this pipeline.")
            if stage["kind"] != "open":
                raise invalid("stage_id", "A new deal starts in an open stage; move it to close it.")
        else:
            stage = first_open_stage(pipeline)
        self._check_source(data.get("source"))
        if data.get("owner_id"):
            self.caller.check_assign(data["owner_id"], "owner_id")
        if "custom" in data:
            data["custom"] = self.typed_custom(data["custom"])
        self._check_refs(data)
        now = utcnow()
        doc = {**data, "_id": new_id(), "pipeline_id": pipeline["_id"], "stage_id": stage["id"],
               "probability": stage["probability"], "status": "open",
               "owner_id": data.get("owner_id") or self.caller.user_id,
               "expected_close_date": data["expected_close_date"].isoformat()
               if data.get("expected_close_date") else None,
               "lost_reason": None, "lost_note": None, "closed_at": None,
               "stage_entered_at": now, "created_at": now, "updated_at": now,
               "deleted_at": None, "created_by": self.caller.user_id, "version": 1}
        doc["funnel_no"] = self.store.next_funnel_no(doc["pipeline_id"], doc["owner_id"])
        doc["possible_duplicates"] = (self.store.open_deals_of(doc["contact_id"], pipeline["_id"])
                                      if doc.get("contact_id") else [])
        doc["last_history"] = self._history_entry(doc, None, now, None)
        self.store.insert_deal(doc)
        self.record_history(doc["last_history"])
        result = self.dump_deal(doc, pipeline, now)
        return result, [self._deal_event("deal_created", result, f"Deal created: {doc['title']}",
                                         pipeline_id=doc["pipeline_id"], stage_id=doc["stage_id"])]

    def get(self, deal_id):
        doc = self._current(deal_id)
        return self.dump_deal(doc, self.store.get_pipeline(doc["pipeline_id"]))

    def update(self, deal_id, payload, items_total=None):
        """A compare-and-set on the deal's version (retried when another write won the
        race), so the write replaces exactly the deal read (the report summaries it changes
        are those of what it read and of the result). `items_total`: the sales service's
        line items total (set_items_total), the amount unless a person set one."""
        data = load(deal_patch, payload, partial=True)
        current = self._current(deal_id)
        if "source" in data:
            self._check_source(data["source"])
        if "owner_id" in data and data["owner_id"] != current.get("owner_id"):
            self.caller.check_assign(data["owner_id"], "owner_id")
        if "custom" in data:
            data["custom"] = self.typed_custom(data["custom"])
        self._check_refs({k: v for k, v in data.items() if current.get(k) != v})
        changes = dict(data)
        if "expected_close_date" in data:
            changes["expected_close_date"] = (data["expected_close_date"].isoformat()
                                              if data["expected_close_date"] else None)
        number = None  # the deal's number in the new owner's funnel counters, taken once
        for attempt in range(MOVE_ATTEMPTS):
            if attempt:
                current = self._current(deal_id)
            amount = amount_changes(current, data, items_total)
            if items_total is not None and not data and all(
                    current.get(k) == v for k, v in amount.items()):
                return self.dump_deal(current, self.store.get_pipeline(current["pipeline_id"])), []
            write = {**changes, **amount, "updated_at": utcnow()}
            reassigned = "owner_id" in data and current.get("owner_id") != data["owner_id"]
            if reassigned:
                if number is None:
                    number = self.store.next_funnel_no(current["pipeline_id"], data["owner_id"])
                write["funnel_no"] = number
            if self.store.change_deal(current, write, self._visible()):
                doc = {**current, **write, "version": current["version"] + 1}
                break
        else:
            raise Conflict("The deal keeps changing; try again", {"id": deal_id})
        if reassigned:
            self._reassign_history(deal_id, doc)
        result = self.dump_deal(doc, self.store.get_pipeline(doc["pipeline_id"]))
        events = [_event("deal_updated", {
            "deal": result, "deal_id": deal_id, "owner_id": doc.get("owner_id"),
            "contact_id": doc.get("contact_id"),
            "changed": sorted(set(data) | {k for k, v in amount.items() if current.get(k) != v}),
            "actor_id": self.caller.user_id, "ref": {"type": "deal", "id": deal_id}})]
        if reassigned:
            events.append(_event("deal_assigned", {
                "deal": result, "owner_id": doc.get("owner_id"),
                "previous_owner_id": current.get("owner_id"), "contact_id": doc.get("contact_id"),
                "actor_id": self.caller.user_id, "ref": {"type": "deal", "id": deal_id}}))
        return result, events

    def set_items_total(self, deal_id, total):
        return self.update(deal_id, {}, items_total=total)

    def _current(self, deal_id, deleted=False):
        doc = self.store.get_deal(deal_id, self._visible(), deleted=deleted)
        if not doc:
            raise NotFound("Deal not found", {"id": deal_id})
        return doc

    def delete(self, deal_id):
        return self._set_deleted(deal_id, True)

    def restore(self, deal_id):
        """A deleted deal back as it was (a deal not deleted is answered unchanged)."""
        return self._set_deleted(deal_id, False)

    def _set_deleted(self, deal_id, deleting):
        for _ in range(MOVE_ATTEMPTS):
            current = self._current(deal_id, deleted=not deleting)
            if not deleting and current.get("deleted_at") is None:
                return self.dump_deal(current), []  # not deleted: restoring changes nothing
            now = utcnow()
            changes = {"deleted_at": now if deleting else None, "updated_at": now}
            if self.store.change_deal(current, changes, self._visible(), live=deleting):
                result = self.dump_deal({**current, **changes, "version": current["version"] + 1})
                kind = "deal_deleted" if deleting else "deal_restored"
                return result, [_event(kind, {
                    "deal_id": deal_id, "deal": result, "owner_id": current.get("owner_id"),
                    "contact_id": current.get("contact_id"), "actor_id": self.caller.user_id,
                    "ref": {"type": "deal", "id": deal_id}})]
        raise Conflict("The deal keeps changing; try again", {"id": deal_id})

    def move(self, deal_id, payload):
        """Compare-and-set on the deal's version, retried on a lost race: each successful
        move writes exactly one history entry, whose id (deal:version) makes it idempotent."""
        data = load(move_in, payload)
        for _ in range(MOVE_ATTEMPTS):
            current = self._current(deal_id)
            if data.get("expected_version") not in (None, current["version"]):
                raise Conflict("The deal changed meanwhile", {"version": current["version"]})
            pipeline = self.store.get_pipeline(current["pipeline_id"])
            stage = stage_of(pipeline, data["stage_id"])
            if not stage:
                raise invalid("stage_id", "Not a stage of this deal's pipeline.")
            reason = data.get("lost_reason")
            if stage["kind"] == "lost":
                if not reason:
                    raise invalid("lost_reason", "A lost deal needs a lost reason.")
                if reason not in self.store.get_lists().get("lost_reasons", []):
                    raise invalid("lost_reason", "Not one of the configured lost reasons (see /deal-settings).")
            elif reason:
                raise invalid("lost_reason", "Only a move to a lost stage takes a lost reason.")
            if stage["id"] == current["stage_id"]:
                return self.dump_deal(current, pipeline), []  # already there: nothing happens
            if stage.get("required_fields"):
                check_required(stage, current, self._deal_contact)
            now = utcnow()
            closing = stage["kind"] in ("won", "lost")
            if current.get("funnel_no") is None:  # not numbered yet (see funnel.py)
                current["funnel_no"] = self.store.next_funnel_no(current["pipeline_id"],
                                                                 current.get("owner_id"))
            changes = {"stage_id": stage["id"], "probability": stage["probability"],
                       "status": stage["kind"], "stage_entered_at": now, "updated_at": now,
                       "closed_at": (current.get("closed_at") if current["status"] == stage["kind"]
                                     else now) if closing else None,
                       "lost_reason": reason if stage["kind"] == "lost" else None,
                       "lost_note": data.get("lost_note") if stage["kind"] == "lost" else None,
                       "funnel_no": current["funnel_no"]}
            # the entry rides in the same atomic update, so a crash before it is written to
            # deal_history loses nothing: reading the history writes it (idempotent upsert)
            moved = {**current, **changes, "version": current["version"] + 1}
            changes["last_history"] = self._history_entry(moved, current, now, data)
            if self.store.change_deal(current, changes):
                doc = {**moved, "last_history": changes["last_history"]}
                break
        else:
            raise Conflict("The deal keeps changing; try again", {"id": deal_id})
        self.record_history(doc["last_history"])
        result = self.dump_deal(doc, pipeline, now)
        from_stage = stage_of(pipeline, current["stage_id"]) or {"name": "?"}
        events = [self._deal_event(
            "deal_stage_changed", result, f"Deal {doc['title']}: {from_stage['name']} -> {stage['name']}",
            deal_id=deal_id, pipeline_id=doc["pipeline_id"], from_stage_id=current["stage_id"],
            to_stage_id=stage["id"])]
        if stage["kind"] in ("won", "lost") and current["status"] != stage["kind"]:
            extra = {"amount": doc["amount"], "currency": doc["currency"]}
            if stage["kind"] == "lost":
                extra["lost_reason"] = reason
            verb = "won" if stage["kind"] == "won" else f"lost ({reason})"
            events.append(self._deal_event(f"deal_{stage['kind']}", result,
                                           f"Deal {verb}: {doc['title']}", **extra))
        return result, events

    def list(self, params):
        query_in = load(deal_list_query, params)
        custom, sort_field, direction = custom_fields.list_order(
            lambda: self.store.custom_fields.of("deal"), query_in, DEAL_SORTS, "-created_at")
        filters = {key: query_in[key] for key in ("pipeline_id", "stage_id", "owner_id", "status",
                                                  "contact_id", "company_id", "source", "currency")
                   if query_in.get(key)}
        filters.update(list_ranges(query_in))
        query = self.store.deal_filter({**filters, **custom}, self.caller.person_ids())
        docs, next_cursor = self.store.page_deals(query, sort_field, direction,
                                                  query_in["limit"], query_in.get("cursor"))
        out = {"items": self._dump_many(docs), "next_cursor": next_cursor}
        if query_in["include_total"]:
            out["total"] = self.store.count_deals(query, sort_field)
        return out

    def history(self, deal_id, params):
        query_in = load(history_query, params)
        deal = self._current(deal_id)
        if deal.get("last_history"):
            self.record_history(deal["last_history"])  # repairs a move cut short by a crash
        docs, next_cursor = self.store.page_history(deal_id, query_in["limit"], query_in.get("cursor"))
        items = [{**history_out.dump(d), "id": d["_id"]} for d in docs]
        return {"items": items, "next_cursor": next_cursor}

    def contacts_merged(self, data):
        merged = [i for i in data["merged_ids"] if i != data["survivor_id"]]
        if not merged:
            return 0
        moved = self.store.repoint_contact(merged, data["survivor_id"], utcnow())
        for doc in self.store.deals_with_participants(merged):  # several contacts per deal
            self.store.set_participants(doc["_id"], merged_people(doc, merged, data["survivor_id"]))
        return moved

    def record_history(self, entry):
        """The one writer of deal_history: the call that inserts the entry (never a retry
        or a repair that finds it) adds it to the funnel counters."""
        if self.store.add_history(entry):
            self.store.count_history(entry)

    def _reassign_history(self, deal_id, doc):
        """History follows the deal's new owner, and so do its funnel counters: each entry
        leaves the old owner's counters and joins the new owner's under the new number."""
        entries = self.store.history_of(deal_id)
        self.store.set_history_owner(deal_id, doc.get("owner_id"), doc.get("funnel_no"))
        for entry in entries:
            self.store.count_history(entry, sign=-1)
            self.store.count_history({**entry, "owner_id": doc.get("owner_id"),
                                      "funnel_no": doc.get("funnel_no")})

    def _history_entry(self, doc, previous, now, move):
        return {"_id": f"{doc['_id']}:{doc['version']}", "deal_id": doc["_id"],
                "pipeline_id": doc["pipeline_id"], "owner_id": doc.get("owner_id"),
                "funnel_no": doc.get("funnel_no"),
                "from_stage_id": previous["stage_id"] if previous else None,
                "to_stage_id": doc["stage_id"], "to_kind": doc["status"],
                "actor_id": self.caller.user_id, "at": now,
                "seconds_in_from_stage": int((now - previous["stage_entered_at"]).total_seconds())
                if previous else None,
                "lost_reason": doc.get("lost_reason") if move else None,
                "lost_note": doc.get("lost_note") if move else None}

    def _deal_event(self, event_type, deal, summary, **extra):
        """Contacts puts these on the contact's timeline (contact_id, summary, actor, ref)."""
        return _event(event_type, {"deal": deal, "contact_id": deal.get("contact_id"),
                                   "owner_id": deal.get("owner_id"), "summary": summary,
                                   "actor_id": self.caller.user_id,
                                   "ref": {"type": "deal", "id": deal["id"]}, **extra})

    # targets
    def _visible_targets(self):
        return self.caller.owner_filter("user_id", "member_ids")

    def dump_target(self, doc):
        return with_every_key(target_out, target_out.dump(doc), doc["_id"])

    def _check_target_people(self, data):
        """A target reveals the won deals of its people: a manager names only their team."""
        if data.get("user_id"):
            self.caller.check_assign(data["user_id"], "user_id")
        for member in data.get("member_ids") or []:
            self.caller.check_assign(member, "member_ids")

    def create_target(self, payload):
        self._require_manager()
        data = load(target_in, payload)
        self._check_target_people(data)
        if data.get("pipeline_id"):
            self._pipeline(data["pipeline_id"])
        start, end = period_range(data["period"])
        now = utcnow()
        doc = {"user_id": None, "team": None, "member_ids": [], "deals_count": None,
               "amount": None, "currency": None, "pipeline_id": None, **data,
               "period_start": start, "period_end": end, "created_at": now, "updated_at": now,
               "created_by": self.caller.user_id}
        if doc["user_id"]:
            doc["member_ids"] = [doc["user_id"]]
        return self.dump_target(self.store.insert_target(doc))

    def get_target(self, target_id):
        doc = self.store.get_target(target_id, self._visible_targets())
        if not doc:
            raise NotFound("Target not found", {"id": target_id})
        return self.dump_target(doc)

    def update_target(self, target_id, payload):
        self._require_manager()
        data = load(target_in, payload, partial=True)
        current = self.store.get_target(target_id, self._visible_targets())
        if not current:
            raise NotFound("Target not found", {"id": target_id})
        self._check_target_people(current)
        self._check_target_people(data)
        merged = {**current, **data}
        if merged.get("amount") and not merged.get("currency"):
            raise invalid("currency", "An amount target needs its currency.")
        if data.get("user_id"):
            data["member_ids"] = [data["user_id"]]
        if "period" in data:
            data["period_start"], data["period_end"] = period_range(data["period"])
        data["updated_at"] = utcnow()
        return self.dump_target(self.store.update_target(target_id, self._visible_targets(), data))

    def delete_target(self, target_id):
        self._require_manager()
        current = self.store.get_target(target_id, self._visible_targets())
        if current:
            self._check_target_people(current)
        doc = self.store.delete_target(target_id, self._visible_targets())
        if not doc:
            raise NotFound("Target not found", {"id": target_id})
        return self.dump_target(doc)

    def _target_query(self, q):
        query = {key: q[key] for key in ("user_id", "team", "period") if q.get(key)}
        return {**query, **self._visible_targets()} if self._visible_targets() else query

    def list_targets(self, params):
        q = load(target_list_query, params)
        docs, next_cursor = self.store.page_targets(self._target_query(q), q["limit"], q.get("cursor"))
        return {"items": [self.dump_target(d) for d in docs], "next_cursor": next_cursor}

    def progress(self, params):
        """Plan vs actual for every target the caller may see that matches the filters."""
        q = load(progress_query, params)
        items = []
        for target in self.store.targets_for(self._target_query(q)):
            won = self.store.won_totals(target["member_ids"], target["period_start"],
                                        target["period_end"], target.get("currency"),
                                        target.get("pipeline_id"))
            parts = []
            if target.get("deals_count"):
                parts.append(f"{won['count']} of {target['deals_count']} won")
            if target.get("amount"):
                parts.append(f"{won['amount']} of {target['amount']} {target['currency']}")
            items.append({
                "target": self.dump_target(target), "won_count": won["count"],
                "won_amount": won["amount"],
                "count_percent": _percent(won["count"], target.get("deals_count")),
                "amount_percent": _percent(won["amount"], target.get("amount")),
                "summary": "; ".join(parts)})
        return {"items": items}

    # reports
    def _report_owners(self, owner_id):
        """The owners a report counts: what the caller may see (None: everyone), narrowed to
        `owner_id` when given (to nobody when the caller may not see that owner)."""
        visible = self.caller.person_ids()
        if not owner_id:
            return visible
        return [owner_id] if visible is None or owner_id in visible else []

    def _period(self, q):
        end = q.get("to") or utcnow()
        try:
            start = q.get("from_") or end - timedelta(days=REPORT_DAYS)
        except OverflowError:
            raise invalid("to", "Out of range.")
        if start >= end:
            raise invalid("from", "`from` must be before `to`.")
        return start, end

    def funnel(self, params, explain=False, exact=False):
        """From the funnel counters (funnel.py); exact=True runs the aggregation over the
        history instead (the definition; tests compare the two)."""
        q = load(funnel_query, params)
        pipeline_doc = self._pipeline(q.get("pipeline_id"))
        start, end = self._period(q)
        owners = self._report_owners(q.get("owner_id"))
        if explain and not exact:
            return self._funnel_plan(pipeline_doc["_id"], start, end, owners)
        if exact:
            facets = self.store.funnel_definition(pipeline_doc["_id"], start, end, owners, explain)
            if explain:
                return facets
            entered = {r["_id"]: r for r in facets["entered"]}
            times = {r["_id"]: r for r in facets["time"]}
        else:
            entered, times = funnel_counts(self.store, pipeline_doc["_id"], start, end, owners)
        order = funnel_order(pipeline_doc)
        stages = []
        for index, stage in enumerate(pipeline_doc["stages"]):
            row = entered.get(stage["id"], {"entered": 0, "won": 0})
            following = None
            if stage["kind"] == "open" and stage in order:
                position = order.index(stage)
                if position + 1 < len(order):
                    following = order[position + 1]
            time = times.get(stage["id"])
            stages.append({
                "stage_id": stage["id"], "name": stage["name"], "kind": stage["kind"],
                "entered": row["entered"], "won": row["won"],
                "conversion_to_next": ratio(entered.get(following["id"], {"entered": 0})["entered"],
                                            row["entered"]) if following else None,
                "conversion_to_won": ratio(row["won"], row["entered"]),
                "avg_seconds_in_stage": round(time["avg"], 1) if time else None,
                "moves_out": time["moves_out"] if time else 0})
        return {"pipeline_id": pipeline_doc["_id"], "from": _iso(start), "to": _iso(end),
                "stages": stages}

    def _funnel_plan(self, pipeline_id, start, end, owners):
        """The query plan of each read of the counter-based funnel."""
        owners = counters.owners_of(owners)
        owner = next(iter(owners)) if owners and len(owners) == 1 else None
        plans = []
        for source, first, last in counters.split(start, end):
            name = "deal_history" if source == "history" else source
            plans.append({"collection": name, "plan": self.store.explain_funnel_read(
                source, pipeline_id, owner, first, last)})
        return {"reads": plans}

    def rebuild_funnel_counters(self):
        if self.caller.role not in (None, "admin"):
            raise Forbidden("Only admins rebuild the funnel counters")
        return self.store.rebuild_funnel_counters(utcnow())

    def rebuild_report_summaries(self):
        if self.caller.role not in (None, "admin"):
            raise Forbidden("Only admins rebuild the report summaries")
        return summaries.Summaries(self.store).rebuild()

    def sales(self, params, explain=False, exact=False):
        """From the report summaries (summaries.py); exact=True runs the aggregation over
        the deals instead (the definition; tests compare the two)."""
        q = load(sales_query, params)
        start, end = self._period(q)
        filters = {k: q[k] for k in ("pipeline_id", "currency") if q.get(k)}
        owners = self._report_owners(q.get("owner_id"))
        if exact:
            rows = self.store.sales_definition(q["group_by"], start, end, filters, owners, explain)
            if explain:
                return rows
        else:
            reader = summaries.Summaries(self.store)
            if explain:
                return reader.plan(summaries.sales_parts(start, end), filters, owners,
                                   lambda a, b: self.store.sales_definition_rows(
                                       q["group_by"], a, b, filters, owners, explain=True))
            rows = summaries.sales_answer_rows(reader.sales_rows(q["group_by"], start, end,
                                                                 filters, owners))
        totals = {}
        for row in rows:
            for amount in row["amounts"]:
                totals[amount["currency"]] = totals.get(amount["currency"], 0) + amount["won_amount"]
        out = []
        for row in rows:
            amounts = [{"currency": a["currency"], "won_amount": a["won_amount"],
                        "avg_deal_size": round(a["won_amount"] / a["won"], 2) if a["won"] else None,
                        "share": ratio(a["won_amount"], totals[a["currency"]])}
                       for a in sorted(row["amounts"], key=lambda a: a["currency"]) if a["won"]]
            out.append({"key": row["_id"], "won_count": row["won"], "lost_count": row["lost"],
                        "win_rate": _round(row["win_rate"]),
                        "avg_cycle_days": _round(row["avg_cycle_days"], 2), "amounts": amounts})
        return {"group_by": q["group_by"], "from": _iso(start), "to": _iso(end), "rows": out}

    def forecast(self, params, explain=False, exact=False):
        """From the report summaries (summaries.py); exact=True runs the aggregation over
        the open deals instead (the definition)."""
        q = load(forecast_query, params)
        filters = {}
        if q.get("pipeline_id"):
            filters["pipeline_id"] = self._pipeline(q["pipeline_id"])["_id"]
        owners = self._report_owners(q.get("owner_id"))
        if exact:
            rows = self.store.forecast_definition(
                filters, q["from_"].isoformat() if q.get("from_") else None,
                q["to"].isoformat() if q.get("to") else None, owners, explain)
            if explain:
                return rows
        else:
            reader = summaries.Summaries(self.store)
            parts = summaries.forecast_parts(q.get("from_"), q.get("to"))
            if explain:
                return reader.plan(parts, filters, owners)
            rows = reader.forecast_rows(filters, q.get("from_"), q.get("to"), owners)
        return {"rows": [{"month": r["_id"]["month"] or None, "currency": r["_id"]["currency"],
                          "open_count": r["open_count"], "open_amount": r["open_amount"],
                          "weighted_amount": int(round(r["weighted"] / 100))} for r in rows]}


def list_ranges(query_in):
    """The deal list's closed_at and expected_close_date ranges as field conditions
    (closed_at a time; expected_close_date an ISO date string, which orders as text)."""
    out = {}
    for field, low, high, text in (("closed_at", "closed_after", "closed_before", False),
                                   ("expected_close_date", "expected_close_from",
                                    "expected_close_to", True)):
        bounds = {op: (query_in[name].isoformat() if text else query_in[name])
                  for op, name in (("$gte", low), ("$lt", high)) if query_in.get(name)}
        if bounds:
            out[field] = bounds
    return out


def funnel_counts(store, pipeline_id, start, end, owners):
    """The funnel's per-stage rows for [start, end) from the counters: whole months and
    days from funnel_months / funnel_days, the partial days at the two ends from the
    history itself (an indexed range of at most two days), everything folded per owner
    (funnel.Tally). Same rows as the history aggregation: ({stage: {entered, won}},
    {stage: {avg, moves_out}})."""
    owners = counters.owners_of(owners)
    # one owner: an equality on the owner-led indexes; a team: the pipeline's range, kept here
    owner = next(iter(owners)) if owners and len(owners) == 1 else None
    tally = counters.Tally()
    for source, first, last in counters.split(start, end):
        if source == "history":
            found, add = store.history_between(pipeline_id, owner, first, last), tally.add_entry
        else:
            found, add = store.funnel_docs(source, pipeline_id, owner, first, last), tally.add_doc
        for doc in found:
            if owners is None or doc.get("owner_id") in owners:
                add(doc)
    return tally.rows()


def _percent(actual, plan):
    return round(100.0 * actual / plan, 1) if plan else None


def _round(value, digits=4):
    return None if value is None else round(value, digits)


def _iso(value):
    return to_iso(value)
