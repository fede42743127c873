"""/api/v1/auth: registration, login, profile, password, token refresh and logout, account deletion."""

from flask import Blueprint, g

from altus4 import context
from altus4.api import presenters as present
from altus4.api import schemas
from altus4.api.auth import ip_limited, public, user_required
from altus4.api.envelope import ok
from altus4.api.validation import body
from altus4.container import services
from altus4.errors import ValidationFailed

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def _user_payload(user: dict) -> dict:
    return present.user(user, services().users.connected_database_ids(user["id"]))


def _signed_in(user: dict, token: str) -> dict:
    """A session's token with its lifetime in seconds (the official SDK schedules its refresh from it)."""
    return {"user": _user_payload(user), "token": token, "expiresIn": services().settings.jwt_expires_in}


@bp.post("/register")
@public
@ip_limited("auth_rate_limit")
def register():
    data = body(schemas.RegisterBody)
    users = services().users
    user = users.register(data.email, data.password, data.name)
    context.bind(user["id"])  # the account's first reads elsewhere wait for this write
    return ok(_signed_in(user, users.issue_token(user)), 201)


@bp.post("/login")
@public
@ip_limited("auth_rate_limit")
def login():
    data = body(schemas.LoginBody)
    users = services().users
    user = users.authenticate(data.email, data.password)
    context.bind(user["id"])
    return ok(_signed_in(user, users.issue_token(user)))


@bp.get("/profile")
@user_required
def profile():
    return ok(_user_payload(g.user))


@bp.put("/profile")
@user_required
def update_profile():
    data = body(schemas.ProfileBody)
    users = services().users
    if data.email and data.email.lower() != g.user["email"]:
        if data.currentPassword is None:
            raise ValidationFailed(
                "Changing the e-mail needs the current password",
                details=[{"field": "currentPassword", "code": "missing", "message": "required to change the e-mail"}],
            )
        users.confirm_password(g.user, data.currentPassword)
    return ok(_user_payload(users.update_profile(g.user["id"], data.name, data.email)))


@bp.post("/change-password")
@user_required
def change_password():
    """Every earlier token stops working; the session that asked gets a new one and stays signed in."""
    data = body(schemas.ChangePasswordBody)
    users = services().users
    user = users.change_password(g.user, data.currentPassword, data.newPassword)
    return ok(
        {
            "success": True,
            "token": users.issue_token(user),
            "message": "Password changed; other sessions are signed out",
        }
    )


@bp.post("/refresh")
@user_required
def refresh():
    """A new token; the one presented is revoked after a short grace (JWT_REFRESH_GRACE), so requests already
    sent with it still succeed, and it cannot be replayed later. Within the grace it refreshes to the same one."""
    return ok(_signed_in(g.user, services().users.refresh(g.user, g.claims)))


@bp.post("/logout")
@user_required
def logout():
    services().users.revoke_token(g.claims)
    return ok({"success": True})


@bp.delete("/account")
@user_required
def delete_account():
    """Only with the current password: a stolen token alone cannot destroy an account and its data."""
    data = body(schemas.DeleteAccountBody)
    services().users.confirm_password(g.user, data.currentPassword)
    services().accounts.close(g.user["id"])
    return ok({"success": True})
