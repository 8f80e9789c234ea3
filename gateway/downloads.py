"""How the gateway serves bytes named by someone else (an uploader, a client's mail): the
file name as a header may carry it, and the content type only when it is a plain one."""
import re
import unicodedata
from urllib.parse import quote

from crm_common.fields import MIME_TYPE

# a stored type (a sender's may hold anything) is served only as a header may carry it
SERVABLE_TYPE = re.compile(MIME_TYPE)


def content_disposition(filename, disposition="attachment"):
    """RFC 6266 with RFC 5987's filename* for any name; the plain filename= keeps only safe
    ASCII for old clients."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = "".join(c if c.isalnum() or c in " ._-()" else "_" for c in ascii_name).strip()
    return (f'{disposition}; filename="{ascii_name or "download"}"; '
            f"filename*=UTF-8''{quote(filename, safe='')}")


def servable_type(content_type):
    """The type to answer with: the given one if it is plain, else bytes."""
    return content_type if SERVABLE_TYPE.fullmatch(content_type or "") else "application/octet-stream"
