"""Files on any record (contact, company, deal, task, quote, invoice), kept by the sales
service in GridFS: the upload is read from the multipart body (werkzeug spools a large part
to a temporary file, bounded by the route's body limit) and handed on in 1 MiB RPC chunks;
downloads stream the same way. The record's visibility is asked of its owner each time."""
import base64
import hashlib

from flask import Response, request, stream_with_context

from contracts import sales as s
from crm_common.config import get_settings
from crm_common.errors import ValidationFailed
from gateway.api import UnsupportedMediaType
from gateway.calls import call
from gateway.downloads import content_disposition
from gateway.routes import api

TAG = "files"
MAX_FILE = get_settings().sales.file_max_bytes
MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries around the file
CHUNK = 1024 * 1024             # bytes per RPC (the service's GridFS chunk)
WRITE_ERRORS = (400, 404, 409, 413, 415, 422, 503, 504)


@api.route("/files", "POST", "Upload a file (multipart `file`) to a record the caller sees; "
           "its type is sniffed from the content, its name must be a plain file name", TAG,
           query=s.FileUploadQuery, response=s.FileOut, status=201, errors=WRITE_ERRORS,
           max_body_bytes=MAX_FILE + MULTIPART_OVERHEAD, permission="files:write",
           extra={"request_body": {"multipart/form-data": {"schema": {
               "type": "object", "required": ["file"],
               "properties": {"file": {"type": "string", "format": "binary"}}}}}})
def upload_file(body, params):
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("Send the file as multipart/form-data with a `file` part",
                                   {"content_type": request.content_type})
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("Invalid input", {"fields": {"file": ["Missing file part."]}})
    started = call("sales", "begin_upload", params, upload.filename)
    upload_id, digest, n = started["upload_id"], hashlib.sha256(), 0
    try:
        while True:
            piece = upload.stream.read(CHUNK)
            if not piece:
                break
            digest.update(piece)
            call("sales", "upload_chunk", upload_id, n, base64.b64encode(piece).decode("ascii"))
            n += 1
        return call("sales", "finish_upload", upload_id, digest.hexdigest()), 201
    except BaseException:
        try:
            call("sales", "abort_upload", upload_id)
        except Exception:  # noqa: BLE001 - the service's sweep drops it within the hour
            pass
        raise


@api.route("/files", "GET", "Files of a record (deleted=true: the deleted ones)", TAG,
           query=s.FileListQuery, response=s.FilePage, permission="files:read")
def list_files(body, params):
    return call("sales", "list_files", params)


@api.route("/files/{file_id}", "GET", "A file's details", TAG, response=s.FileOut,
           permission="files:read")
def get_file(file_id, body, params):
    return call("sales", "get_file", file_id)


@api.route("/files/{file_id}", "DELETE", "Delete a file (restorable)", TAG, response=s.FileOut,
           errors=WRITE_ERRORS, permission="files:write")
def delete_file(file_id, body, params):
    return call("sales", "delete_file", file_id)


@api.route("/files/{file_id}/restore", "POST", "Restore a deleted file", TAG,
           response=s.FileOut, errors=WRITE_ERRORS, permission="files:write")
def restore_file(file_id, body, params):
    return call("sales", "restore_file", file_id)


@api.route("/files/{file_id}/download", "GET", "The file's bytes (always as an attachment)",
           TAG, errors=(404, 503, 504), permission="files:read")
def download_file(file_id, body, params):
    found = call("sales", "get_file", file_id)
    return _stream(found, lambda start, size: call("sales", "file_range", file_id, start, size))


@api.route("/files/{file_id}/links", "POST", "A link anyone may download the file with until "
           "it expires", TAG, body=s.LinkIn, response=s.LinkOut, status=201,
           errors=WRITE_ERRORS, permission="files:read")
def file_link(file_id, body, params):
    return call("sales", "file_link", file_id, body), 201


@api.route("/shared-files/{token}", "GET", "Download a shared file (no sign-in; 404 once the "
           "link expired or the file was deleted)", TAG, errors=(404, 503, 504), public=True,
           permission="public")
def shared_file(token, body, params):
    found = call("sales", "shared_file", token)
    return _stream(found, lambda start, size: call("sales", "shared_file_range", token, start, size))


def _stream(found, read):
    size = found["size"]

    def chunks():
        position = 0
        while position < size:
            data = base64.b64decode(read(position, min(CHUNK, size - position))["data"])
            if not data:
                return
            yield data
            position += len(data)

    return Response(stream_with_context(chunks()), content_type=found["content_type"], headers={
        "Content-Disposition": content_disposition(found["filename"]),
        "Content-Length": str(size), "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=0"})
