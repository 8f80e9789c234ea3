"""The platform's own JSON format: already canonical, nothing to map."""


def to_canonical(payload, settings):
    return [payload]
