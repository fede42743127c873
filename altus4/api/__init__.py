"""HTTP layer: one blueprint per area, all answering in the envelope."""

from flask import Flask

from altus4.api import accounts, analytics, auth, console, databases, docs, envelope, keys, management, search


def init_app(app: Flask) -> None:
    envelope.init_app(app)
    auth.init_app(app)
    for blueprint in (management.bp, accounts.bp, keys.bp, databases.bp, search.bp, analytics.bp, docs.bp, console.bp):
        app.register_blueprint(blueprint)
    auth.check_all_routes_declare_auth(app)
