"""/api/v1/auth: registration, login, profile, password, token refresh and logout, account deletion."""

from flask import Blueprint, g

from altus4 import context
from altus4.api import presenters as present
from altus4.api import schemas
from altus4.api.auth import ip_limited, public, user_required
from altus4.api.envelope import ok
from altus4.api.validation import body
from altus4.container import services

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def _user_payload(user: dict) -> dict:
    return present.user(user, services().users.connected_database_ids(user["id"]))


@bp.post("/register")
@public
@ip_limited("auth_rate_limit")
def register():
    data = body(schemas.RegisterBody)
    users = services().users
    user = users.register(data.email, data.password, data.name)
    context.bind(user["id"])  # the account's first reads elsewhere wait for this write
    return ok({"user": _user_payload(user), "token": users.issue_token(user)}, 201)


@bp.post("/login")
@public
@ip_limited("auth_rate_limit")
def login():
    data = body(schemas.LoginBody)
    users = services().users
    user = users.authenticate(data.email, data.password)
    context.bind(user["id"])
    return ok({"user": _user_payload(user), "token": users.issue_token(user)})


@bp.get("/profile")
@user_required
def profile():
    return ok(_user_payload(g.user))


@bp.put("/profile")
@user_required
def update_profile():
    data = body(schemas.ProfileBody)
    return ok(_user_payload(services().users.update_profile(g.user["id"], data.name, data.email)))


@bp.post("/change-password")
@user_required
def change_password():
    data = body(schemas.ChangePasswordBody)
    services().users.change_password(g.user["id"], data.currentPassword, data.newPassword)
    return ok({"success": True, "message": "Password changed; sign in again with the new password"})


@bp.post("/refresh")
@user_required
def refresh():
    """A new token; the one presented is revoked so a refreshed token cannot be replayed."""
    users = services().users
    token = users.issue_token(g.user)
    users.revoke_token(g.claims)
    return ok({"user": _user_payload(g.user), "token": token})


@bp.post("/logout")
@user_required
def logout():
    services().users.revoke_token(g.claims)
    return ok({"success": True})


@bp.delete("/account")
@user_required
def delete_account():
    services().accounts.close(g.user["id"])
    return ok({"success": True})
