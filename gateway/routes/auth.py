"""Sign-in. Access tokens are JWT (HS256) that expire after CRM_JWT_TTL_S; a client renews
one with /auth/refresh while it is still valid, or signs in again. Refreshing keeps the
session's sign-in time: no token outlives it by more than CRM_SESSION_MAX_S."""
import time

import jwt
from flask import current_app, g, request

from gateway import auth, security
from gateway.auth import ALGORITHM, Unauthenticated
from contracts.gateway import LoginIn, TokenOut, UserOut
from gateway.routes import api

TAG = "auth"


@api.route("/auth/login", "POST", "Sign in with email and password; returns a Bearer token",
           TAG, body=LoginIn, response=TokenOut, public=True, rate_group="login",
           errors=(400, 401, 413, 415, 422, 429, 503), permission="public")
def login(body, params):
    settings = current_app.extensions["crm.settings"]
    return auth.current().login(body["email"], body["password"],
                                security.client_ip(settings.gateway.trusted_proxy_hops))


@api.route("/auth/refresh", "POST", "A fresh token for the signed-in user (send the current, "
           "still valid token)", TAG, response=TokenOut,
           errors=(401, 403, 429, 503), permission="session:self")
def refresh(body, params):
    current = auth.current()
    settings = current_app.extensions["crm.settings"]
    # the token was verified by authenticate(); its sign-in time decides how long it may go on
    token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    try:
        claims = jwt.decode(token, current.secret, algorithms=[ALGORITHM])
    except jwt.InvalidTokenError:  # expired since authenticate() read it
        raise Unauthenticated("The token has expired: sign in again", {"reason": "token_expired"})
    signed_in_at = int(claims.get("auth_time") or claims["iat"])
    if time.time() >= signed_in_at + settings.gateway.session_max_s:
        raise Unauthenticated("The session is over: sign in again", {"reason": "session_expired"})
    return current.issue_token(current.store.get_user(g.identity["user_id"]), signed_in_at)


@api.route("/auth/logout", "POST", "Sign out everywhere: every token of this user stops working",
           TAG, response=UserOut, errors=(401, 403, 429, 503), permission="session:self")
def logout(body, params):
    store = auth.current().store
    user = store.update_user(g.identity["user_id"], {}, inc={"token_version": 1})
    return auth.dump_user(user)
