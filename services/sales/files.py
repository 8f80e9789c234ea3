"""Files on any record: bytes in GridFS (bucket `files_fs`) written chunk by chunk as the
gateway streams them, the type sniffed from the content, the record's visibility asked of
the service that owns it, soft delete, and expiring signed links. No path is ever made
from a user's file name: it is only a label, checked and kept in the database."""
import base64
import math
import time
import unicodedata

import filetype

from crm_common.cursors import sign_token, verify_token
from crm_common.errors import NotFound, ValidationFailed
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.timeutil import to_iso, utcnow
from crm_common.validation import load
from contracts import sales as schemas
from services.sales.catalogue import event, invalid
from services.sales.store import CHUNK_BYTES, new_upload

file_out, list_query = schemas.FileOut(), schemas.FileListQuery()
upload_query, link_in = schemas.FileUploadQuery(), schemas.LinkIn()
# characters no file name may hold: path separators, markup, shell and Windows specials
FORBIDDEN = set('/\\<>:"|?*\x00')
MAX_NAME = 200
PAGE_BYTES = CHUNK_BYTES  # what one download RPC answers at most


def check_filename(name):
    """The name as given, if it is a plain name: 422 for a path (`../../etc/passwd`),
    markup (`<script>.pdf`), control characters or an empty/dot name."""
    if not isinstance(name, str):
        raise invalid("filename", "Missing file name.")
    name = unicodedata.normalize("NFC", name).strip()
    problems = []
    if not name or name in (".", ".."):
        problems.append("empty")
    if len(name) > MAX_NAME:
        problems.append(f"longer than {MAX_NAME}")
    if any(c in FORBIDDEN for c in name):
        problems.append('contains one of / \\ < > : " | ? *')
    if any(unicodedata.category(c)[0] == "C" for c in name):
        problems.append("contains control characters")
    if name.startswith(".") or ".." in name:
        problems.append("starts with a dot or contains ..")
    if problems:
        raise ValidationFailed("Invalid file name", {"fields": {"filename": [
            f"Not a plain file name: {', '.join(problems)}."]}})
    return name


def sniff(head):
    """The MIME type from the first bytes (magic numbers), never from the name; text that
    decodes as UTF-8 is text/plain; anything else application/octet-stream."""
    kind = filetype.guess(head)
    if kind is not None:
        return kind.mime
    sample = head[:8192]
    if sample and b"\x00" not in sample:
        try:
            sample.decode("utf-8")
            return "text/plain"
        except UnicodeDecodeError:
            # a cut multi-byte character at the end of the sample is still text
            try:
                sample[:-3].decode("utf-8")
                return "text/plain"
            except UnicodeDecodeError:
                pass
    return "application/octet-stream"


def dump_file(doc):
    return with_every_key(file_out, file_out.dump(doc), doc["_id"])


class Files:
    def __init__(self, store, caller, owners, config):
        self.store = store
        self.caller = caller
        self.owners = owners  # record_type -> callable(record_id): raises NotFound if unseen
        self.config = config

    def check_record(self, record_type, record_id):
        """404 unless the caller sees the record (asked of its owning service)."""
        try:
            self.owners[record_type](record_id)
        except NotFound:
            raise NotFound(f"{record_type.capitalize()} not found",
                           {"record_type": record_type, "record_id": record_id})

    def begin(self, params, filename, declared_size=None):
        query = load(upload_query, params)
        name = check_filename(filename)
        if declared_size is not None and declared_size > self.config.file_max_bytes:
            raise ValidationFailed("File too large", {"limit_bytes": self.config.file_max_bytes})
        self.check_record(query["record_type"], query["record_id"])
        doc = new_upload(query["record_type"], query["record_id"], name, self.caller.user_id,
                         utcnow())
        self.store.start_upload(doc)
        return {"upload_id": doc["_id"], "chunk_bytes": CHUNK_BYTES}

    def chunk(self, upload_id, n, data_b64):
        data = base64.b64decode(data_b64)
        if len(data) > CHUNK_BYTES:
            raise invalid("data", f"A chunk is at most {CHUNK_BYTES} bytes.")
        result = self.store.add_chunk(upload_id, int(n), data, self.config.file_max_bytes)
        if result is None:
            raise NotFound("Upload not found or chunk out of order", {"upload_id": upload_id, "n": n})
        if result is False:
            self.store.drop_upload(upload_id)
            raise ValidationFailed("File too large", {"limit_bytes": self.config.file_max_bytes})
        return True

    def abort(self, upload_id):
        self.store.drop_upload(upload_id)
        return True

    def finish(self, upload_id, sha256=None):
        upload = self.store.get_upload(upload_id)
        if upload is None:
            raise NotFound("Upload not found", {"upload_id": upload_id})
        if upload["size"] == 0:
            self.store.drop_upload(upload_id)
            raise invalid("file", "The file is empty.")
        content_type = sniff(self.store.first_chunk(upload_id))
        now = utcnow()
        fs_doc = {"_id": upload_id, "length": upload["size"], "chunkSize": CHUNK_BYTES,
                  "uploadDate": now, "filename": upload_id,
                  "metadata": {"content_type": content_type}}
        record_key = f"{upload['record_type']}:{upload['record_id']}"
        file_doc = {"_id": upload_id, "record_type": upload["record_type"],
                    "record_id": upload["record_id"], "record_key": record_key,
                    "list_key": record_key + ":live", "filename": upload["filename"],
                    "content_type": content_type, "size": upload["size"], "sha256": sha256,
                    "uploaded_by": upload["uploaded_by"], "created_at": now, "deleted_at": None}
        self.store.finish_upload(upload, fs_doc, file_doc)
        return dump_file(file_doc), [self._event("file_uploaded", file_doc, size=file_doc["size"],
                                                 content_type=content_type)]

    def _event(self, event_type, doc, **extra):
        return event(event_type, {
            "file_id": doc["_id"], "record_type": doc["record_type"], "record_id": doc["record_id"],
            "filename": doc["filename"], "actor_id": self.caller.user_id,
            "contact_id": doc["record_id"] if doc["record_type"] == "contact" else None,
            "summary": f"{doc['filename']} ({event_type.split('_')[1]})",
            "ref": {"type": "file", "id": doc["_id"]}, **extra})

    def _visible_file(self, file_id, deleted=False):
        doc = self.store.get_file(file_id)
        if not doc or (bool(doc.get("deleted_at")) and not deleted):
            raise NotFound("File not found", {"id": file_id})
        self.check_record(doc["record_type"], doc["record_id"])
        return doc

    def get(self, file_id):
        return dump_file(self._visible_file(file_id))

    def list(self, params):
        query = load(list_query, params)
        self.check_record(query["record_type"], query["record_id"])
        key = f"{query['record_type']}:{query['record_id']}:" + ("deleted" if query["deleted"] else "live")
        docs, cursor = self.store.list_files(key, query["limit"], query.get("cursor"))
        return {"items": [dump_file(d) for d in docs], "next_cursor": cursor}

    def delete(self, file_id):
        doc = self._visible_file(file_id)
        new = self.store.set_file_deleted(file_id, utcnow(), doc["record_key"] + ":deleted")
        return dump_file(new), [self._event("file_deleted", new)]

    def restore(self, file_id):
        doc = self._visible_file(file_id, deleted=True)
        if not doc.get("deleted_at"):
            return dump_file(doc), []
        new = self.store.set_file_deleted(file_id, None, doc["record_key"] + ":live")
        return dump_file(new), [self._event("file_restored", new)]

    def info(self, file_id):
        return dump_file(self._visible_file(file_id))

    def read(self, file_id, start, length, check=True):
        doc = self._visible_file(file_id) if check else self.store.get_file(file_id)
        if not doc or doc.get("deleted_at"):
            raise NotFound("File not found", {"id": file_id})
        length = max(0, min(int(length), PAGE_BYTES, doc["size"] - int(start)))
        data = self.store.read_file(file_id, int(start), length) if length else b""
        return {"data": base64.b64encode(data).decode("ascii")}

    # links anyone may open until they expire
    def link(self, file_id, payload):
        data = load(link_in, payload or {}, json_body=True)
        self._visible_file(file_id)
        seconds = min(data["expires_in"], self.config.link_max_seconds)
        expires = math.ceil(time.time()) + seconds   # at least the time asked
        token = sign_token({"file": file_id, "exp": expires, "nonce": new_id()[:8]})
        return {"url": f"/api/v1/shared-files/{token}", "token": token,
                "expires_at": to_iso(utcnow().fromtimestamp(expires, utcnow().tzinfo))}

    def shared(self, token):
        """The file a link names, if the link is genuine and unexpired (404 otherwise, so a
        guess learns nothing)."""
        try:
            payload = verify_token(token)
        except ValidationFailed:
            raise NotFound("Link not found or expired", {})
        if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
            raise NotFound("Link not found or expired", {})
        doc = self.store.get_file(payload.get("file"))
        if not doc or doc.get("deleted_at"):
            raise NotFound("Link not found or expired", {})
        return dump_file(doc)


