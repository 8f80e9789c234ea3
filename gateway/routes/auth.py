"""Sign-in. Access tokens are JWT (HS256) that expire after CRM_JWT_TTL_S; a client renews
one with /auth/refresh while it is still valid, or signs in again."""
from flask import g, request

from gateway import auth
from contracts.gateway import LoginIn, TokenOut, UserOut
from gateway.routes import api

TAG = "auth"


@api.route("/auth/login", "POST", "Sign in with email and password; returns a Bearer token",
           TAG, body=LoginIn, response=TokenOut, public=True,
           errors=(400, 401, 413, 415, 422, 429, 503), permission="public")
def login(body, params):
    return auth.current().login(body["email"], body["password"], request.remote_addr)


@api.route("/auth/refresh", "POST", "A fresh token for the signed-in user (send the current, "
           "still valid token)", TAG, response=TokenOut,
           errors=(401, 403, 429, 503), permission="session:self")
def refresh(body, params):
    current = auth.current()
    return current.issue_token(current.store.get_user(g.identity["user_id"]))


@api.route("/auth/logout", "POST", "Sign out everywhere: every token of this user stops working",
           TAG, response=UserOut, errors=(401, 403, 429, 503), permission="session:self")
def logout(body, params):
    store = auth.current().store
    user = store.update_user(g.identity["user_id"], {}, inc={"token_version": 1})
    return auth.dump_user(user)
