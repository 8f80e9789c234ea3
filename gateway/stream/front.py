"""The development front (`./crm up`, tests): with CRM_STREAM_UPSTREAM set, the stream
process forwards every request that is not the stream to the gateway, so the console, the
API and the stream share one origin without a reverse proxy on the machine.

In containers the `web` image (nginx) does this routing (deploy/nginx.conf: `/api/v1/stream`
to the stream service, unbuffered; `/api` and the rest to the gateway), and so does any
reverse proxy in front of the platform. Each forwarded request is a green thread here and
a plain request to gunicorn: the gateway's threads are never held by a stream."""
import http.client
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade"}
CHUNK = 64 * 1024


class Front:
    def __init__(self, upstream, timeout=120):
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout

    def __call__(self, environ, start_response):
        path = environ.get("RAW_PATH_INFO") or environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() not in HOP_BY_HOP and name.lower() != "host":
                    headers[name] = value
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        if body is not None:
            headers["Content-Length"] = str(len(body))
        headers["Host"] = environ.get("HTTP_HOST", f"{self.host}:{self.port}")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
            response = connection.getresponse()
        except OSError:
            connection.close()
            start_response("502 Bad Gateway", [("Content-Type", "application/json")])
            return [b'{"error":{"code":"bad_gateway","message":"The gateway does not answer",'
                    b'"details":{}}}']
        start_response(f"{response.status} {response.reason}",
                       [(k, v) for k, v in response.getheaders()
                        if k.lower() not in HOP_BY_HOP])
        return self._body(connection, response)

    @staticmethod
    def _body(connection, response):
        try:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            connection.close()
