from contracts import notifications as s
from gateway.calls import call
from gateway.routes import api

TAG = "notifications"


@api.route("/notifications", "GET", "The caller's in-app notifications, newest first "
           "(?unread=true; admins may pass user_id)", TAG, query=s.InboxQuery,
           response=s.NotificationPage, errors=(400, 403, 422, 503, 504),
           permission="notifications:self")
def list_notifications(body, params):
    return call("notifications", "list_notifications", params)


@api.route("/notifications/unread-count", "GET", "How many of the caller's notifications "
           "are unread", TAG, query=s.UserQuery, response=s.UnreadCount,
           errors=(400, 403, 422, 503, 504), permission="notifications:self")
def unread_count(body, params):
    return call("notifications", "unread_count", params)


@api.route("/notifications/read-all", "POST", "Mark all the caller's notifications read",
           TAG, query=s.UserQuery, response=s.ReadAllResult, errors=(400, 403, 422, 503, 504),
           permission="notifications:self")
def read_all(body, params):
    return call("notifications", "mark_all_read", params)


@api.route("/notifications/{notification_id}/read", "POST", "Mark one notification read",
           TAG, query=s.UserQuery, response=s.NotificationOut,
           errors=(400, 403, 404, 422, 503, 504), permission="notifications:self")
def read_one(notification_id, body, params):
    return call("notifications", "mark_read", notification_id, params)


@api.route("/notification-preferences", "GET", "The caller's notification preferences "
           "(defaults filled in)", TAG, query=s.UserQuery, response=s.PreferencesOut,
           errors=(400, 403, 422, 503, 504), permission="notifications:self")
def get_preferences(body, params):
    return call("notifications", "get_preferences", params)


@api.route("/notification-preferences", "PUT", "Change notification preferences: channels "
           "per event type, quiet hours, time zone, language (fields left out are kept)",
           TAG, query=s.UserQuery, body=s.PreferencesIn, partial=True,
           response=s.PreferencesOut, errors=(400, 403, 413, 415, 422, 503, 504),
           permission="notifications:self")
def put_preferences(body, params):
    return call("notifications", "set_preferences", body, params)


@api.route("/notification-preferences/digest/send", "POST", "Send the caller's report "
           "digest now (its reports for the period it would cover, on its channels), e.g. "
           "to see what it looks like", TAG, query=s.UserQuery, response=s.DigestSent,
           errors=(400, 403, 404, 422, 503, 504), permission="notifications:self")
def send_digest(body, params):
    return call("notifications", "send_my_digest", params)
