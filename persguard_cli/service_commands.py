"""Service subcommands (serve, admin). Heavy imports happen inside the handlers.

Operators and CI smoke tests script against these, so their names, options and output stay stable:
  persguard serve [--host H] [--port P]
  persguard admin create-tenant NAME
  persguard admin create-key --tenant NAME --role ROLE      (prints only the key)
  persguard admin revoke-key PREFIX
"""

from __future__ import annotations

import argparse
import logging
import sys

ROLES = ("rights_holder", "model_host", "admin")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the service subcommands to the `persguard` parser."""
    serve = sub.add_parser("serve", help="run the protection API (embedded SQLite + local storage unless configured)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--no-migrate", action="store_true", help="do not upgrade the database schema at start")
    serve.set_defaults(handler=_serve)

    admin = sub.add_parser("admin", help="manage tenants and API keys")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")

    tenant = admin_sub.add_parser("create-tenant", help="add a tenant")
    tenant.add_argument("name")
    tenant.set_defaults(handler=_create_tenant)

    key = admin_sub.add_parser("create-key", help="add an API key and print it (shown only once)")
    key.add_argument("--tenant", required=True, help="tenant name")
    key.add_argument("--role", required=True, choices=ROLES)
    key.set_defaults(handler=_create_key)

    revoke = admin_sub.add_parser("revoke-key", help="revoke an API key by its prefix (the part after pgk_)")
    revoke.add_argument("prefix")
    revoke.set_defaults(handler=_revoke_key)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _migrated_session():  # noqa: ANN202 - a SQLAlchemy Session
    from common.db import make_engine, make_session_factory
    from common.migrate import upgrade
    from common.settings import get_settings

    url = get_settings().database_url
    upgrade(url)
    return make_session_factory(make_engine(url))()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from common.migrate import upgrade
    from common.settings import get_settings

    _setup_logging()
    if not args.no_migrate:
        upgrade(get_settings().database_url)
    uvicorn.run("api.main:create_app", factory=True, host=args.host, port=args.port, log_level="info")
    return 0


def _admin(action, *values) -> int:  # noqa: ANN001
    with _migrated_session() as session:
        try:
            result = action(session, *values)
            session.commit()
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(result)
    return 0


def _create_tenant(args: argparse.Namespace) -> int:
    from common.keys import create_tenant

    return _admin(lambda session, name: f"created tenant {create_tenant(session, name).name}", args.name)


def _create_key(args: argparse.Namespace) -> int:
    from common.keys import create_key

    return _admin(lambda session, tenant, role: create_key(session, tenant, role).secret, args.tenant, args.role)


def _revoke_key(args: argparse.Namespace) -> int:
    from common.keys import revoke_key

    return _admin(lambda session, prefix: f"revoked key {revoke_key(session, prefix).prefix}", args.prefix)
