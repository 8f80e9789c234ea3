"""Message templates (the conversations service's): admins and managers write them, everyone
reads them and fills them for a contact and deal they see (the composer's preview); a send
names one with `template_id` (gateway/routes/conversations.py)."""
from flask import g

from contracts import conversations as s
from gateway import auth
from gateway.calls import call
from gateway.routes import api

TAG = "templates"
WRITE_ERRORS = (400, 403, 404, 409, 413, 415, 422, 503, 504)


def sender():
    """The signed-in user as a template's `{{ user.<field> }}` (None for an API key)."""
    user_id = g.identity.get("user_id") if g.identity.get("kind") == "user" else None
    user = auth.current().store.get_user(user_id) if user_id else None
    if not user:
        return None
    return {"id": user["_id"], "name": user.get("name") or "", "email": user.get("email") or "",
            "phone": user.get("phone")}


@api.route("/templates", "GET", "Message templates by name (filters: channel = that "
           "channel's and those for any channel; q = part of the name)", TAG,
           query=s.TemplateListQuery, response=s.TemplatePage, permission="templates:read")
def list_templates(body, params):
    return call("conversations", "list_templates", params)


@api.route("/templates", "POST", "Write a message template: its placeholders "
           "({{ contact.first_name }}, {{ deal.title }}, {{ user.name }}) are checked now (422 "
           "naming the field and line); a name taken (whatever the case) is a 409", TAG,
           body=s.TemplateIn, response=s.TemplateOut, status=201, errors=WRITE_ERRORS,
           permission="templates:manage")
def create_template(body, params):
    return call("conversations", "create_template", body)


@api.route("/templates/preview", "POST", "A template not saved yet (the editor's text) "
           "checked as when saved (422 naming the field and line) and filled as the render "
           "fills a saved one", TAG, body=s.TemplatePreviewIn, response=s.TemplateRendered,
           errors=(400, 404, 413, 415, 422, 503, 504), permission="templates:read")
def preview_template(body, params):
    return call("conversations", "preview_template", body, sender())


@api.route("/templates/{template_id}", "GET", "A message template", TAG,
           response=s.TemplateOut, permission="templates:read")
def get_template(template_id, body, params):
    return call("conversations", "get_template", template_id)


@api.route("/templates/{template_id}", "PATCH", "Change a message template (checked as when "
           "written)", TAG, body=s.TemplateIn, partial=True, response=s.TemplateOut,
           errors=WRITE_ERRORS, permission="templates:manage")
def update_template(template_id, body, params):
    return call("conversations", "update_template", template_id, body)


@api.route("/templates/{template_id}", "DELETE", "Delete a message template (messages sent "
           "with it keep its id; its name is free again)", TAG, errors=(404, 503, 504),
           permission="templates:manage")
def delete_template(template_id, body, params):
    return call("conversations", "delete_template", template_id)


@api.route("/templates/{template_id}/render", "POST", "The template filled for a contact "
           "and/or a deal the caller sees (404 otherwise; a contact alone: its open deal), "
           "and the caller as `user`: subject, body and html as they would be sent. A value "
           "the records lack is empty", TAG, body=s.TemplateRenderIn,
           response=s.TemplateRendered, errors=(400, 404, 413, 415, 422, 503, 504),
           permission="templates:read")
def render_template(template_id, body, params):
    return call("conversations", "render_template", template_id, body, sender())
