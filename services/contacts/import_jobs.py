"""Import jobs: accepted by an RPC (file stored in the contacts database), then run in
batches by the service's job timer, resumable after a restart, undoable.

Resume without duplicates: a batch's effects are idempotent (each created contact carries
(import_id, import_row) under a unique index, errors have a (import, row, n) id,
before-images are written with $setOnInsert) and the job's `next_row` and `counts` are
saved together after the batch, so a replayed batch lands on the same state and counts.
"""
import base64
import binascii
import logging
from collections import defaultdict

import eventlet

from crm_common.cursors import decode_cursor, encode_cursor
from crm_common.custom_fields import import_values
from crm_common.errors import BadRequest, NotFound, ValidationFailed
from crm_common.messaging.events import envelope
from crm_common.ids import new_id
from crm_common.text import fold
from crm_common.timeutil import to_iso, utcnow
from crm_common.validation import load
from contracts import contacts as schemas
from services.contacts import imports
from services.contacts.domain import search_fields

log = logging.getLogger(__name__)

SERVICE = "contacts"
CHUNK_BYTES = 1024 * 1024
HEAD_BYTES = 64 * 1024
COUNT_KEYS = ("rows", "created", "updated", "skipped", "failed")
SCALARS = ("first_name", "last_name", "position", "source", "birthday", "owner_id")

import_start = schemas.ImportStart()
import_errors_query = schemas.ImportErrorsQuery()
import_list_query = schemas.ImportListQuery()


def dump_job(job, error_sample=()):
    out = {"id": job["_id"]}
    for key in ("status", "dry_run", "on_duplicate", "filename", "size", "format", "encoding",
                "delimiter", "columns", "mapping", "counts", "errors_count", "started_by",
                "companies_created", "error", "restored", "deleted", "kept"):
        out[key] = job.get(key)
    for key in ("created_at", "updated_at", "finished_at", "undone_at"):
        out[key] = to_iso(job.get(key))
    out["rows_done"] = max(job.get("next_row", 2) - 2, 0)
    out["errors"] = [dump_error(e) for e in error_sample]
    return out


def dump_error(doc):
    return {"row": doc["row"], "column": doc.get("column"), "field": doc.get("field"),
            "reason": doc.get("reason"), "value": doc.get("value")}


def _event(event_type, job, **extra):
    return envelope(SERVICE, event_type, {
        "import_id": job["_id"], "started_by": job.get("started_by"),
        "status": job.get("status"), "dry_run": job.get("dry_run"),
        "counts": job.get("counts"), "actor_id": job.get("started_by"), **extra})


class Imports:
    def __init__(self, store, caller, settings):
        self.store = store  # ImportStore
        self.caller = caller
        self.settings = settings
        self.region = settings.default_region

    # RPC side
    def start(self, payload, max_bytes):
        data_in = load(import_start, payload)
        try:
            data = base64.b64decode(data_in["content_b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("The file content is not valid base64", {})
        if not data.strip():
            raise BadRequest("The file is empty", {"filename": data_in["filename"]})
        if len(data) > max_bytes:
            raise BadRequest("The file is larger than the import limit",
                             {"limit_bytes": max_bytes, "received_bytes": len(data)})
        info = imports.inspect(data_in["filename"], data[:HEAD_BYTES])
        header = self._header(info, data)
        plan = imports.resolve_mapping(header, data_in.get("mapping"))
        default_owner = self._default_owner(data_in.get("default_owner_id"))
        now = utcnow()
        job = {"_id": new_id(), "status": "pending", "dry_run": data_in["dry_run"],
               "on_duplicate": data_in["on_duplicate"], "filename": data_in["filename"],
               "size": len(data), **info, "columns": [name for _, name, _ in plan],
               "mapping": [{"column": name, "target": target} for _, name, target in plan],
               "counts": dict.fromkeys(COUNT_KEYS, 0), "errors_count": 0,
               "companies_created": 0, "next_row": 2, "started_by": self.caller.user_id,
               "default_owner_id": default_owner, "visibility_role": self.caller.role,
               "editable_owners": self._editable_owners(),
               # owners the file's owner_email / owner_id may name (None: anyone known)
               "assignable_owners": self.caller.person_ids(), "created_at": now, "updated_at": now,
               "finished_at": None, "lease_until": None, "lease_owner": None}
        chunks = (data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES))
        self.store.insert_job(job, chunks)
        return dump_job(job)

    def _header(self, info, data):
        rows = (imports.xlsx_rows(data) if info["format"] == "xlsx" else
                imports.csv_rows([data[:HEAD_BYTES * 4]], info["encoding"], info["delimiter"]))
        try:
            for _, cells in rows:
                if any(imports._text(c) for c in cells):
                    return [imports._text(c) for c in cells]
                break
        finally:
            rows.close()
        raise ValidationFailed("The file has no header row",
                               {"fields": {"file": ["The first row must name the columns."]}})

    def get(self, import_id):
        job = self._visible_job(import_id)
        return dump_job(job, self.store.page_errors(import_id, 100))

    def list(self, params):
        query_in = load(import_list_query, params)
        docs, next_cursor = self.store.page_jobs(self._visibility(), query_in["limit"],
                                                 query_in.get("cursor"))
        return {"items": [dump_job(d) for d in docs], "next_cursor": next_cursor}

    def errors(self, import_id, params):
        query_in = load(import_errors_query, params)
        self._visible_job(import_id)
        after = None
        if query_in.get("cursor"):  # signed like every cursor (crm_common.cursors)
            _, after = decode_cursor(query_in["cursor"], "_id", 1, "import_errors")
        docs = self.store.page_errors(import_id, query_in["limit"] + 1, after)
        more = len(docs) > query_in["limit"]
        docs = docs[:query_in["limit"]]
        return {"items": [dump_error(d) for d in docs],
                "next_cursor": encode_cursor("_id", 1, docs[-1], "import_errors")
                if more else None}

    def request_undo(self, import_id):
        job = self._visible_job(import_id)
        updated = self.store.request_undo(import_id, self._visibility())
        if not updated:
            from crm_common.errors import Conflict
            raise Conflict("Only a finished import that was not a dry run can be undone",
                           {"status": job["status"], "dry_run": job.get("dry_run")})
        return dump_job(updated)

    def _visibility(self):
        return self.caller.owner_filter("started_by")

    def _default_owner(self, owner_id):
        """The owner of rows that name none: the importer, or whom they may give it to
        (the assignment rule, docs/auth.md) among the users this service knows."""
        if not owner_id:
            return self.caller.user_id
        self.caller.check_assign(owner_id, "default_owner_id")
        if self.caller.person_ids() is None and not self.store.get_user(owner_id):
            raise ValidationFailed("Invalid input", {"fields": {"default_owner_id": [
                "Unknown user."]}})
        return owner_id

    def _editable_owners(self):
        """Owners of the contacts this importer may change (the rule of PATCH /contacts,
        docs/auth.md): None = any (admin, API key); a manager also owner-less ones."""
        owners = self.caller.person_ids()
        if owners is None:
            return None
        return owners + [None] if self.caller.role == "manager" else owners

    def _visible_job(self, import_id):
        job = self.store.get_job(import_id, self._visibility())
        if not job:
            raise NotFound("Import not found", {"id": import_id})
        return job

    # runner side (the job timer)
    def run_all(self, owner, lease_seconds, batch_size, should_stop, announce):
        """Run the jobs that need work one after the other, until none is left or the
        service stops."""
        while not should_stop() and self.run_next(owner, lease_seconds, batch_size,
                                                  should_stop, announce):
            pass

    def run_next(self, owner, lease_seconds, batch_size, should_stop, announce):
        """Claim one job that needs work and run it until it ends or the service stops.
        Returns True when a job was found."""
        job = self.store.claim_job(owner, lease_seconds)
        if not job:
            return False
        runner = JobRunner(self, job, owner, lease_seconds, batch_size, should_stop, announce)
        try:
            if job["status"] in ("undo_pending", "undoing"):
                runner.undo()
            else:
                runner.run()
        except Exception as exc:  # noqa: BLE001 - a broken file fails its job, not the service
            log.exception("import %s failed", job["_id"])
            failed = self.store.update_job(job["_id"], {
                "status": "failed", "error": str(exc)[:500], "finished_at": utcnow(),
                "updated_at": utcnow(), "lease_until": None}, owner)
            if failed:
                announce(_event("import_finished", failed))
        return True


class JobRunner:
    def __init__(self, imports_, job, owner, lease_seconds, batch_size, should_stop, announce):
        self.store = imports_.store
        self.region = imports_.region
        self.job = job
        self.id = job["_id"]
        self.owner = owner
        self.lease = lease_seconds
        self.batch_size = batch_size
        self.should_stop = should_stop
        self.announce = announce
        self.plan = [(i, m["column"], m["target"]) for i, m in enumerate(job["mapping"])]
        self.companies = {}      # folded name -> company id, for the whole job
        self.would_create = set()  # dry run: companies it would create
        self.seen = {}           # dry run: duplicate key -> row, across batches
        self.written = {"contact_ids": [], "company_ids": []}   # ids the last batch wrote

    def _save(self, changes):
        changes["updated_at"] = utcnow()
        job = self.store.update_job(self.id, changes, self.owner, self.lease)
        if job is None:
            raise LeaseLost(self.id)
        self.job = job
        return job

    def _rows(self):
        if self.job["format"] == "xlsx":
            return imports.xlsx_rows(b"".join(self.store.file_chunks(self.id)))
        return imports.csv_rows(self.store.file_chunks(self.id), self.job["encoding"],
                                self.job["delimiter"])

    def run(self):
        if self.job["status"] == "pending" or self.job.get("dry_run"):
            # a dry run keeps its duplicate memory only in this process: replay it whole
            self._save({"status": "running", "next_row": 2,
                        "counts": dict.fromkeys(COUNT_KEYS, 0)} if self.job.get("dry_run")
                       else {"status": "running"})
        next_row = self.job["next_row"]
        batch = []
        rows = self._rows()
        # the rows of a batch are read and converted while the previous batch's queries
        # and writes are in flight (the database, not this process, is what an import
        # waits on); batches still commit one after the other, in order
        writing = None
        try:
            for number, cells in rows:
                if number < next_row:
                    continue
                if not any(imports._text(c) for c in cells):
                    continue  # blank lines are not rows
                batch.append((number, cells))
                if len(batch) >= self.batch_size:
                    converted = self._convert(batch)
                    if writing is not None:
                        writing.wait()
                    writing = eventlet.spawn(self._commit, batch, converted)
                    eventlet.sleep(0)  # it starts now, and sends its first query
                    batch = []
                    if self.should_stop():
                        writing.wait()
                        self._release()
                        return
            if writing is not None:
                writing.wait()
        finally:
            rows.close()
            if writing is not None and not writing.dead:
                writing.kill()  # an error here: no write of this job goes on behind it
        if batch:
            self._commit(batch, self._convert(batch))
        job = self._save({"status": "done", "finished_at": utcnow(), "lease_until": None,
                          "errors_count": self.store.count_errors(self.id)})
        self.store.drop_file(self.id)
        self.announce(_event("import_finished", job))

    def _release(self):
        """Stopping: hand the job back at once, so a restarted service resumes it."""
        self.store.update_job(self.id, {"lease_until": None}, self.owner)

    def _commit(self, batch, converted):
        self.written = {"contact_ids": [], "company_ids": []}
        counts, errors = self._process(*converted)
        self.store.add_errors(self.id, errors)
        total = {k: self.job["counts"].get(k, 0) + counts.get(k, 0) for k in COUNT_KEYS}
        job = self._save({"counts": total, "next_row": batch[-1][0] + 1,
                          "companies_created": self.job.get("companies_created", 0)
                          + counts.get("companies_created", 0)})
        # the batch's records by id: the search index reads them (no event per contact)
        self.announce(_event("import_progress", job, **self.written))

    # one batch
    def _convert(self, batch):
        """The batch's rows as contact fields -> (rows [(number, fields)], counts, errors):
        no write, no state of the job (it runs beside the previous batch's commit)."""
        counts = defaultdict(int)
        errors = []
        rows = []
        definitions = self.store.custom_fields.of("contact")  # typed custom fields
        for n, (number, cells) in enumerate(batch):
            if n % 50 == 49:
                eventlet.sleep(0)  # the previous batch's commit goes on as its answers come
            fields, row_errors = imports.convert_row(cells, self.plan, self.region)
            errors += [{"row": number, **e} for e in row_errors]
            counts["rows"] += 1
            if not imports.reachable(fields):
                counts["failed"] += 1
                errors.append({"row": number, "column": None, "field": "_row",
                               "reason": "The row has no valid name, email or phone.",
                               "value": None})
                continue
            if definitions and fields.get("custom"):
                fields["custom"], bad = import_values(definitions, fields["custom"],
                                                      self.region, self.store.active_user_ids)
                if bad:  # a wrong typed value refuses the whole row: nothing half-saved
                    counts["failed"] += 1
                    errors += [{"row": number, "column": None, "field": f"custom.{key}",
                                "reason": reason, "value": str(fields["custom"].get(key))[:200]}
                               for key, reason in bad.items()]
                    continue
            rows.append((number, fields))
        return rows, counts, errors

    def _process(self, rows, counts, errors):
        job = self.job
        dry = job.get("dry_run")
        policy = job["on_duplicate"]
        owners = self._owners(rows, errors)
        companies = self._companies(rows, counts)

        # the base's contacts sharing a key with this batch: one query per key type
        index = defaultdict(list)
        for field in ("email_keys", "phone_keys"):
            values = [v for _, f in rows for kind, v in imports.row_keys(f) if kind == field]
            for doc in self.store.find_by_key_values(field, values):
                for value in doc.get(field, []):
                    index[(field, value)].append(doc)
        replayed = {}
        if policy == "update" and not dry:
            matched = {d["_id"] for docs in index.values() for d in docs}
            replayed = self.store.before_images_of(self.id, matched)

        now = utcnow()
        pending = {}        # key -> new doc of this batch
        new_docs, new_ids = [], set()
        working = {}        # contact id -> (original, current) for updates
        images = {}         # contact id -> (before doc, [rows])
        for number, fields in rows:
            keys = imports.row_keys(fields)
            base = sorted({d["_id"]: d for k in keys for d in index.get(k, [])}.values(),
                          key=lambda d: d["_id"])
            own = next((d for d in base if d.get("import_id") == self.id
                        and d.get("import_row") == number), None)
            if own is not None:  # created by this very row before a restart
                counts["created"] += 1
                continue
            match = base[0] if base else next((pending[k] for k in keys if k in pending), None)
            if match is None and dry:
                match = next((self.seen[k] for k in keys if k in self.seen), None)
            if match is not None and policy == "skip":
                counts["skipped"] += 1
                continue
            if match is not None and policy == "update":
                if isinstance(match, int):  # dry run: an earlier row of the file
                    counts["updated"] += 1
                    continue
                editable = job.get("editable_owners")
                if (editable is not None and match["_id"] not in new_ids
                        and match.get("owner_id") not in editable):
                    counts["skipped"] += 1
                    errors.append({"row": number, "column": None, "field": "_row",
                                   "reason": "Matches a contact you may not change (another "
                                             "owner's); left as it is.", "value": None})
                    continue
                if match["_id"] in new_ids:
                    fill(match, fields, companies, owners.get(number))
                    counts["updated"] += 1
                    continue
                original, current = working.get(match["_id"], (match, dict(match)))
                changes = fill(current, fields, companies, owners.get(number))
                if changes or number in replayed.get(match["_id"], {}).get("rows", []):
                    working[match["_id"]] = (original, current)
                    if original.get("import_id") != self.id:
                        image = images.setdefault(match["_id"], (original, []))
                        image[1].append(number)
                    counts["updated"] += 1
                else:
                    counts["skipped"] += 1
                continue
            doc = self._new_doc(number, fields, companies, owners.get(number), now)
            doc["possible_duplicates"] = [d["_id"] for d in base][:10]
            new_docs.append(doc)
            new_ids.add(doc["_id"])
            counts["created"] += 1
            for key in keys:
                pending.setdefault(key, doc)
                if dry:
                    self.seen.setdefault(key, number)
        if not dry:
            updates = {}
            for contact_id, (original, current) in working.items():
                changes = {k: v for k, v in current.items() if original.get(k) != v
                           and k not in ("_id", "version")}
                if changes:
                    changes["updated_at"] = now
                    updates[contact_id] = changes
            self.store.save_before_images(self.id, images)
            for doc in new_docs:
                doc.update(search_fields(doc))
            self.store.apply_batch(new_docs, updates)
            self.written["contact_ids"] = sorted(new_ids | set(updates))
        return counts, errors

    def _owners(self, rows, errors):
        """Each row's owner from owner_email or owner_id: a known user the importer may give
        contacts to (the assignment rule), else a row error and the job's default owner."""
        wanted = {f["owner_email"] for _, f in rows if f.get("owner_email")}
        found = self.store.users_by_emails(wanted)
        ids = {f["owner_id"] for _, f in rows if f.get("owner_id")}
        known = self.store.active_user_ids(ids) if ids else set()
        allowed = self.job.get("assignable_owners")
        owners = {}
        for number, fields in rows:
            email = fields.pop("owner_email", None)
            owner_id = fields.pop("owner_id", None)
            if email:
                target, value, owner = "owner_email", email, found.get(email)
                unknown = "No user with this email."
            elif owner_id:
                target, value, owner = "owner_id", owner_id, owner_id
                unknown = "No user with this id."
                if owner_id not in known and (allowed is None or owner_id not in allowed):
                    owner = None
            else:
                continue
            if owner is None:
                reason = unknown
            elif allowed is not None and owner not in allowed:
                reason = "You cannot give a contact to this user; the default owner has it."
            else:
                owners[number] = owner
                continue
            errors.append({"row": number, "column": self._column_of(target), "field": "owner",
                           "reason": reason, "value": value})
        return owners

    def _column_of(self, target):
        return next((name for _, name, t in self.plan if t == target), None)

    def _companies(self, rows, counts):
        """Company names of the batch -> ids: linked to an existing company of that name,
        else created (once per job, tagged with the import so undo removes it)."""
        names = {}
        for _, fields in rows:
            name = fields.get("company")
            if name and fold(name) not in self.companies:
                names.setdefault(fold(name), name)
        if names:
            for doc in self.store.companies_by_names(set(names.values())):
                self.companies.setdefault(fold(doc["name"]), (doc["_id"], doc["name"]))
            now = utcnow()
            new = []
            for key, name in names.items():
                if key in self.companies:
                    continue
                if self.job.get("dry_run"):
                    self.would_create.add(key)
                    self.companies[key] = (None, name)
                    continue
                new.append({"name": name, "emails": [], "phones": [], "tags": [], "custom": {},
                            "owner_id": self.job.get("default_owner_id"), "created_at": now,
                            "updated_at": now, "deleted_at": None, "import_id": self.id,
                            "created_by": self.job.get("started_by")})
            for company in self.store.insert_companies(new):
                self.written["company_ids"].append(company["_id"])
                self.companies[fold(company["name"])] = (company["_id"], company["name"])
                counts["companies_created"] += 1
        return {fields["company"]: self.companies[fold(fields["company"])]
                for _, fields in rows if fields.get("company")}

    def _new_doc(self, number, fields, companies, owner_id, now):
        doc = {"_id": new_id(), "emails": fields["emails"], "phones": fields["phones"],
               "tags": fields["tags"], "custom": fields["custom"],
               "status": fields.get("status", "lead"),
               "do_not_contact": fields.get("do_not_contact", False),
               "source": fields.get("source") or "import",
               "owner_id": owner_id or self.job.get("default_owner_id"),
               "company_id": None, "company_name": None, "created_at": now, "updated_at": now,
               "deleted_at": None, "last_contacted_at": None,
               "created_by": self.job.get("started_by"), "version": 1,
               "import_id": self.id, "import_row": number}
        for key in ("first_name", "last_name", "position", "birthday"):
            if fields.get(key):
                doc[key] = fields[key]
        doc["birthday_md"] = doc["birthday"][5:10] if doc.get("birthday") else None
        if fields.get("company"):
            doc["company_id"], doc["company_name"] = companies[fields["company"]]
        return doc

    # undo
    def undo(self):
        """Put back what the import changed, except what people changed since: a contact
        edited after the import finished (updated_at later) is kept as it is now, and a
        created one that was edited is kept and detached from the import."""
        self._save({"status": "undoing"})
        cutoff = self.job.get("finished_at") or utcnow()
        restored = deleted = kept = 0
        after = None
        while True:
            images = self.store.before_images(self.id, 500, after)
            if not images:
                break
            current = {d["_id"]: d for d in self.store.contacts_by_ids([i["contact_id"] for i in images])}
            # back as before, as a change of now (readers of changes, e.g. search, see it)
            now = utcnow()
            untouched = [dict(i["before"], updated_at=now,
                              version=(current[i["contact_id"]].get("version") or 0) + 1)
                         for i in images if _unchanged_since(current.get(i["contact_id"]), cutoff)]
            self.store.restore_contacts(untouched)
            restored += len(untouched)
            kept += len(images) - len(untouched)
            after = images[-1]["_id"]
            job = self._save({})
            if untouched:  # the restored contacts by id: the search index reads them
                self.announce(_event("import_progress", job,
                                     contact_ids=sorted(d["_id"] for d in untouched)))
        while True:
            ids = self.store.created_ids(self.id, 1000)
            if not ids:
                break
            docs = self.store.contacts_by_ids(ids)
            deleted += self.store.delete_contacts([d["_id"] for d in docs if _unchanged_since(d, cutoff)])
            edited = [d["_id"] for d in docs if not _unchanged_since(d, cutoff)]
            self.store.detach_from_import(edited)
            kept += len(edited)
            self._save({})
        self.store.delete_imported_companies(self.id)
        job = self._save({"status": "undone", "undone_at": utcnow(), "lease_until": None,
                          "restored": restored, "deleted": deleted, "kept": kept})
        self.announce(_event("import_undone", job, restored=restored, deleted=deleted, kept=kept))


def _unchanged_since(doc, cutoff):
    """Nobody changed this contact after the import finished (an import write sets
    updated_at to its batch time, before finished_at)."""
    return doc is not None and (doc.get("updated_at") is None or doc["updated_at"] <= cutoff)


class LeaseLost(Exception):
    """Another runner took the job (this one was too slow to renew its lease)."""


def fill(doc, fields, companies, owner_id):
    """The update policy: fill empty fields, add new emails, phones, tags and custom keys;
    never delete or overwrite. Changes `doc` in place and returns the changed names."""
    changed = set()
    for key in SCALARS:
        value = owner_id if key == "owner_id" and owner_id else fields.get(key)
        if value and not doc.get(key):
            doc[key] = value
            changed.add(key)
    if fields.get("do_not_contact") and not doc.get("do_not_contact"):
        doc["do_not_contact"] = True
        changed.add("do_not_contact")
    if fields.get("company") and not doc.get("company_id"):
        company_id, name = companies[fields["company"]]
        if company_id:
            doc["company_id"], doc["company_name"] = company_id, name
            changed.add("company_id")
    emails = {e["email"] for e in doc.get("emails", [])}
    new_emails = [e for e in fields["emails"] if e["email"] not in emails]
    if new_emails:
        doc["emails"] = list(doc.get("emails", [])) + new_emails
        changed.add("emails")
    phones = {p.get("e164") for p in doc.get("phones", [])}
    new_phones = [p for p in fields["phones"] if p["e164"] not in phones]
    if new_phones:
        doc["phones"] = list(doc.get("phones", [])) + new_phones
        changed.add("phones")
    tags = sorted(set(doc.get("tags", [])) | set(fields["tags"]))
    if tags != sorted(doc.get("tags", [])):
        doc["tags"] = tags
        changed.add("tags")
    custom = dict(doc.get("custom") or {})
    for key, value in fields["custom"].items():
        if custom.get(key) in (None, ""):
            custom[key] = value
    if custom != (doc.get("custom") or {}):
        doc["custom"] = custom
        changed.add("custom")
    if changed:
        doc.update(search_fields(doc))
        if "birthday" in changed:
            doc["birthday_md"] = doc["birthday"][5:10]  # the birthdays list's key
    return changed
