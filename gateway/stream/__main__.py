"""`python -m gateway.stream`: the stream process (STREAM_BIND, default 0.0.0.0:8001)."""
import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402 - after the monkey patch, as everything below

import eventlet.wsgi  # noqa: E402

from crm_common.config import get_settings  # noqa: E402
from crm_common.observability import JsonFormatter  # noqa: E402
from gateway.stream.app import StreamApp  # noqa: E402
from gateway.stream.bus import Bus  # noqa: E402
from gateway.stream.front import Front  # noqa: E402
from gateway.stream.hub import Hub  # noqa: E402

log = logging.getLogger("gateway.stream")


def main():
    settings = get_settings()
    stream_settings = settings.stream
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(context=lambda: {"service": "stream"}))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    hub = Hub(stream_settings.buffer_size)
    bus = Bus(settings.amqp_uri, hub)
    bus.start()
    front = Front(stream_settings.upstream) if stream_settings.upstream else None
    app = StreamApp(settings, stream_settings, hub, bus, front)
    host, _, port = stream_settings.bind.rpartition(":")
    listener = eventlet.listen((host or "0.0.0.0", int(port)), backlog=1024)
    log.info("stream on %s%s", stream_settings.bind,
             f", forwarding the rest to {stream_settings.upstream}" if front else "")
    eventlet.wsgi.server(listener, app, max_size=20000, log_output=False,
                         keepalive=True, socket_timeout=None)


if __name__ == "__main__":
    main()
