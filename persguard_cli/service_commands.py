"""Service subcommands (serve, worker, beat, admin). Heavy imports happen inside the handlers.

Operators and CI smoke tests script against these, so their names, options and output stay stable:
  persguard serve [--host H] [--port P] [--workers N]
  persguard worker [--queues gpu] [--concurrency 1] [--pool prefork] [--name NAME]
  persguard beat                                             (scheduler + the `default` queue's worker)
  persguard admin create-tenant NAME
  persguard admin create-key --tenant NAME --role ROLE      (prints only the key)
  persguard admin revoke-key PREFIX
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session

ROLES = ("rights_holder", "model_host", "admin")
PUBLIC_BASE_URL_ENV = "PERSGUARD_PUBLIC_BASE_URL"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the service subcommands to the `persguard` parser."""
    serve = sub.add_parser("serve", help="run the protection API (embedded SQLite + local storage unless configured)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--no-migrate", action="store_true", help="do not upgrade the database schema at start")
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes (default 1; one per core, needs PERSGUARD_BROKER_URL)"
    )
    serve.set_defaults(handler=_refusing_unsafe_settings(_serve))

    worker = sub.add_parser("worker", help="run a Celery worker for GPU jobs (needs PERSGUARD_BROKER_URL)")
    worker.add_argument("--queues", default="gpu", help="comma-separated queues to consume (default gpu)")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1: one job per GPU)")
    worker.add_argument(
        "--pool", default="prefork", choices=("prefork", "solo"), help="prefork enforces hard time limits"
    )
    worker.add_argument("--name", default=None, help="node name (default persguard@<host>)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=_refusing_unsafe_settings(_worker))

    beat = sub.add_parser("beat", help="run the scheduler and the worker of the `default` queue (reconcile, purge)")
    beat.add_argument("--schedule", default=None, help="beat's schedule file (default <workdir>/celerybeat-schedule)")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(handler=_refusing_unsafe_settings(_beat))

    admin = sub.add_parser("admin", help="manage tenants and API keys")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")

    tenant = admin_sub.add_parser("create-tenant", help="add a tenant")
    tenant.add_argument("name")
    tenant.set_defaults(handler=_refusing_unsafe_settings(_create_tenant))

    key = admin_sub.add_parser("create-key", help="add an API key and print it (shown only once)")
    key.add_argument("--tenant", required=True, help="tenant name")
    key.add_argument("--role", required=True, choices=ROLES)
    key.set_defaults(handler=_refusing_unsafe_settings(_create_key))

    revoke = admin_sub.add_parser("revoke-key", help="revoke an API key by its prefix (the part after pgk_)")
    revoke.add_argument("prefix")
    revoke.set_defaults(handler=_refusing_unsafe_settings(_revoke_key))


def _refusing_unsafe_settings(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`handler`, exiting 2 with the message (which names each variable to set) when production settings have a
    missing or default secret, instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        from common.settings import UnsafeSettings

        try:
            return handler(args)
        except UnsafeSettings as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _migrated_session() -> Session:
    from common.db import make_engine, make_session_factory
    from common.migrate import upgrade
    from common.settings import get_settings

    url = get_settings().database_url
    upgrade(url)
    return make_session_factory(make_engine(url))()


WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def default_public_base_url(host: str, port: int) -> str:
    """The address `persguard serve --host H --port P` is reached at, for download links when
    PERSGUARD_PUBLIC_BASE_URL is unset; a wildcard listen address is named by loopback."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from common.migrate import upgrade
    from common.settings import get_settings

    configured = bool(os.environ.get(PUBLIC_BASE_URL_ENV))
    if not configured:  # before the settings are read, here and in the worker processes uvicorn starts
        os.environ[PUBLIC_BASE_URL_ENV] = default_public_base_url(args.host, args.port)
    get_settings.cache_clear()
    settings = get_settings()
    settings.check_process("api")
    if args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.workers > 1 and not settings.broker_url:
        print(
            "error: --workers > 1 needs PERSGUARD_BROKER_URL (e.g. redis://127.0.0.1:6379/0): without a broker "
            "each API process would run jobs itself",
            file=sys.stderr,
        )
        return 2
    _setup_logging()
    if not configured and args.host in WILDCARD_HOSTS and settings.storage_backend == "local":
        logging.getLogger(__name__).warning(
            "%s is unset: download links name %s; set it to the address clients reach this server at",
            PUBLIC_BASE_URL_ENV,
            settings.public_base_url,
        )
    if not args.no_migrate:
        upgrade(settings.database_url)
    uvicorn.run(
        "api.main:create_app", factory=True, host=args.host, port=args.port, workers=args.workers, log_level="info"
    )
    return 0


def _celery_app() -> Celery | None:
    from common.settings import get_settings

    settings = get_settings()
    if not settings.broker_url:
        print("error: set PERSGUARD_BROKER_URL (e.g. redis://127.0.0.1:6379/0) to run workers", file=sys.stderr)
        return None
    settings.check_process("worker")
    from worker.app import app

    return app


def _worker(args: argparse.Namespace) -> int:
    _setup_logging()
    app = _celery_app()
    if app is None:
        return 2
    argv = ["worker", "-Q", args.queues, "--concurrency", str(args.concurrency), "--pool", args.pool]
    argv += ["--prefetch-multiplier", "1", "--loglevel", args.loglevel, "--without-gossip", "--without-mingle"]
    if args.name:
        argv += ["-n", args.name]
    app.worker_main(argv)
    return 0


def _beat(args: argparse.Namespace) -> int:
    from common.settings import get_settings

    _setup_logging()
    app = _celery_app()
    if app is None:
        return 2
    workdir = get_settings().workdir
    workdir.mkdir(parents=True, exist_ok=True)
    schedule = args.schedule or str(workdir / "celerybeat-schedule")
    argv = ["worker", "-B", "-s", schedule, "-Q", "default", "--concurrency", "1", "--pool", "solo"]
    argv += ["--loglevel", args.loglevel, "--without-gossip", "--without-mingle", "-n", "persguard-beat@%h"]
    app.worker_main(argv)
    return 0


def _admin(action: Callable[Concatenate[Session, ...], str], *values: str) -> int:
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
