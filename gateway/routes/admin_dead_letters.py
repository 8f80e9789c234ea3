"""Operations for admins: every service's dead letters, and replaying them."""
from marshmallow import Schema, fields, validate

from crm_common.config import SERVICES
from gateway.calls import call
from gateway.routes import api

TAG = "operations"


class DeadLetterMessage(Schema):
    body = fields.String()
    attempts = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    x_death = fields.String(allow_none=True)


class DeadLetterQueue(Schema):
    service = fields.String()
    queue = fields.String()
    dead_letter_queue = fields.String()
    count = fields.Integer()
    messages = fields.List(fields.Nested(DeadLetterMessage))


class DeadLetterList(Schema):
    items = fields.List(fields.Nested(DeadLetterQueue))


class ReplayIn(Schema):
    service = fields.String(required=True, validate=validate.OneOf(SERVICES))
    queue = fields.String(validate=validate.Length(1, 300))


class ReplayOut(Schema):
    moved = fields.Dict(keys=fields.String(), values=fields.Integer())


@api.route("/admin/dead-letters", "GET", "Dead-lettered events of every service, with their errors",
           TAG, response=DeadLetterList, errors=(401, 403, 503, 504),
           permission="operations:manage")
def list_dead_letters(body, params):
    items = []
    for service in SERVICES:
        for queue in call(service, "list_dead_letters"):
            items.append({"service": service, **queue})
    return {"items": items}


@api.route("/admin/dead-letters/replay", "POST", "Move a service's dead letters back to their queues",
           TAG, body=ReplayIn, response=ReplayOut, errors=(401, 403, 415, 422, 503, 504),
           permission="operations:manage")
def replay_dead_letters(body, params):
    return {"moved": call(body["service"], "replay_dead_letters", body.get("queue"))}
