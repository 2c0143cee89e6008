"""The govflow command: serve · migrate · deploy · token · worker · apikey · audit."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from service.config import Settings, default_data_dir

if TYPE_CHECKING:
    from service.services.context import AppContext

EXIT_FAILED = 1  # the command ran and found a problem (a tampered audit trail, a refused deployment...)
EXIT_USAGE = 2  # the command could not run as asked (argparse uses 2 for its errors too)


class CommandError(Exception):
    """A command that cannot run as asked: printed as `error: …`, exit status 2."""


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _positive_hours(text: str) -> int:
    try:
        hours = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of hours") from None
    if hours <= 0:
        raise argparse.ArgumentTypeError(f"a token must live at least 1 hour, not {hours}")
    if hours > 24 * 366:
        raise argparse.ArgumentTypeError(f"a token may live at most a year ({24 * 366} hours), not {hours}")
    return hours


def _where_to_point(settings: Settings) -> str:
    return (f"Start the service once (`govflow serve`) to create it, or set GOVFLOW_DATA_DIR to the data directory "
            f"the service uses (default {default_data_dir()}; /data in the container image).")


def _require_database(settings: Settings) -> None:
    """Refuse to run against a database that does not exist yet instead of silently creating an empty one."""
    if settings.database_url or settings.database_file.exists():
        return
    raise CommandError(f"the data directory {settings.data_dir} has no database ({settings.database_file.name}). "
                       + _where_to_point(settings))


def _require_secret(settings: Settings) -> None:
    """A token signed with a newly generated secret would be refused by the running service."""
    if settings.jwt_secret or settings.secret_file.exists():
        return
    raise CommandError(f"the data directory {settings.data_dir} has no token secret ({settings.secret_file.name}), "
                       "so a token minted now would not be accepted by the service. " + _where_to_point(settings)
                       + " Or set GOVFLOW_JWT_SECRET to the service's secret.")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service import serving
    from service.app import create_app

    _require_migrated(settings)
    # the start-up report (data directory, database, migration, deployed processes) is logged by the app
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logger = logging.getLogger("govflow")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not settings.metrics_token and args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("/metrics is served without authentication on %s: set GOVFLOW_METRICS_TOKEN", args.host)
    server = uvicorn.Server(serving.config(create_app(settings), settings, args.host, args.port, log_level="info"))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn stops, then raises it again; as uvicorn.run
        server.run()
    return 0 if server.started else 3  # 3: it did not start (a taken port, a failed start-up), as uvicorn.run exits


_OPENED: list[AppContext] = []  # the application contexts a command built: closed when it ends


def _context(settings: Settings) -> AppContext:
    """The application context of a command, closed by main() when the command ends: a SQLite database's last
    connection to close copies the write-ahead log back into the database file and removes it, so the file alone
    holds what the command wrote (a copy of govflow.db taken after `govflow deploy` has the new versions)."""
    from service.app import build_context

    ctx = build_context(settings)
    _OPENED.append(ctx)
    return ctx


def _close_opened() -> None:
    while _OPENED:
        _OPENED.pop().dispose()


def _require_migrated(settings: Settings) -> None:
    """With GOVFLOW_MIGRATE_ON_START=false, refuse to start on a database `govflow migrate` has not upgraded."""
    if settings.migrate_on_start:
        return
    from service.db.migrate import NotMigrated, require_latest
    from service.db.session import make_engine

    engine = make_engine(settings.resolved_database_url(), pool_size=1, max_overflow=0)
    try:
        require_latest(engine, settings.database_description())
    except NotMigrated as e:
        raise CommandError(str(e)) from None
    finally:
        engine.dispose()


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from service.db.migrate import current_revision, upgrade
    from service.db.session import make_engine

    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade(engine)
        print(f"database {settings.database_description()} is at the latest migration ({current_revision(engine)})")
    finally:
        engine.dispose()
    return 0


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    from service.app import SYSTEM
    from service.db.migrate import upgrade
    from service.errors import DomainError
    from service.services import definitions

    directory = Path(args.directory)
    if not directory.is_dir():
        raise CommandError(f"{directory} is not a directory")
    files = definitions.read_directory(directory)
    if not files:
        raise CommandError(f"{directory.resolve()} holds no .bpmn or .dmn files")
    settings.bpmn_dir = directory
    ctx = _context(settings)
    upgrade(ctx.engine)
    try:
        result = definitions.deploy(ctx, SYSTEM, files, source=f"cli:{directory.resolve().name}")
    except DomainError as e:
        print(f"error: {e.detail}", file=sys.stderr)
        return EXIT_FAILED
    print(f"into {settings.database_description()}:")
    for d in result.definitions:
        print(f"deployed {d.key} version {d.version}")
    for key in result.unchanged:
        print(f"unchanged {key}")
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from service.auth import mint_token
    from service.clock import Clock

    groups = _split(args.groups)
    if not groups and not args.admin and not args.no_groups:
        raise CommandError(f"{args.user} would be in no group: such a token sees only the instances its user "
                           "starts and no task. Give --groups (comma-separated, e.g. --groups applicant,data_bureau), "
                           "--admin, or --no-groups if that is what you want.")
    _require_secret(settings)
    token = mint_token(settings.resolved_jwt_secret(), args.user, groups, args.admin, Clock().now(),
                       timedelta(hours=args.hours or settings.token_ttl_hours), settings.jwt_issuer)
    print(token)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from service.replicas import prepare_database
    from service.workers import start_workers

    _require_migrated(settings)
    ctx = _context(settings)
    prepare_database(ctx)
    workers = start_workers(ctx)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"worker running on {settings.database_description()}; Ctrl-C to stop", file=sys.stderr)
    done.wait()
    for w in workers:
        w.stop()
    return 0


def _apikey(args: argparse.Namespace, settings: Settings) -> int:
    from service.app import SYSTEM
    from service.db.migrate import upgrade
    from service.errors import DomainError
    from service.services import apikeys

    _require_database(settings)
    ctx = _context(settings)
    upgrade(ctx.engine)
    try:
        with ctx.session_factory() as session, session.begin():
            if args.apikey_command == "create":
                created = apikeys.create(session, SYSTEM, ctx.clock.now(), args.name, _split(args.groups), args.admin,
                                         _split(args.processes))
                print(created["key"])
            elif args.apikey_command == "list":
                for k in apikeys.list_keys(session, SYSTEM):
                    state = "revoked" if k["revoked_at"] else "active"
                    print(f"{k['id']}  {k['name']}  groups={','.join(k['groups'])}  "
                          f"processes={','.join(k['processes'])}  admin={k['admin']}  {state}")
            else:
                apikeys.revoke(session, SYSTEM, ctx.clock.now(), args.id)
                print(f"revoked {args.id}")
    except DomainError as e:
        errors = getattr(e, "extra", {}).get("errors") or {}
        print(f"error: {e.detail}" + "".join(f"\n  {k}: {v}" for k, v in errors.items()), file=sys.stderr)
        return EXIT_FAILED
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.db.models import ProcessInstance
    from service.services.audit import load_events, verify_events

    if args.audit_command == "verify" and args.file:
        return _verify_export(Path(args.file))
    _require_database(settings)
    if args.audit_command == "export":
        return _export(args, settings)
    ctx = _context(settings)
    bad = 0
    with ctx.read() as session:
        if args.instance:
            if session.get(ProcessInstance, args.instance) is None:
                raise CommandError(f"no process instance '{args.instance}' in {settings.database_description()}")
            ids = [args.instance]
        else:
            ids = list(session.scalars(select(ProcessInstance.id).order_by(ProcessInstance.started_at)))
        for instance_id in ids:
            row = session.get(ProcessInstance, instance_id)
            anchor = (row.audit_seq, row.audit_head) if row is not None else (None, None)
            result = verify_events(instance_id, load_events(session, instance_id), anchor)
            if not result.verified:
                bad += 1
                print(f"{instance_id}: TAMPERED at event {result.first_bad_event_id}: {result.reason}")
    print(f"verified {len(ids) - bad} of {len(ids)} instances" + (f"; {bad} failed" if bad else ""))
    return EXIT_FAILED if bad else 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.db.models import ProcessInstance
    from service.services.retention import write_export

    ctx = _context(settings)
    with ctx.session_factory() as session:
        if args.instance:
            if session.get(ProcessInstance, args.instance) is None:
                raise CommandError(f"no process instance '{args.instance}' in {settings.database_description()}")
            ids = [args.instance]
        else:
            ids = list(session.scalars(select(ProcessInstance.id).order_by(ProcessInstance.started_at,
                                                                           ProcessInstance.id)))
        if args.out and args.out != "-":
            out = Path(args.out)
            with out.open("w", encoding="utf-8") as f:
                count = write_export(session, ids, f)
            print(f"exported {count} events of {len(ids)} instances to {out}", file=sys.stderr)
        else:
            write_export(session, ids, sys.stdout)
    return 0


def _verify_export(path: Path) -> int:
    from service.services.retention import verify_lines

    if not path.is_file():
        raise CommandError(f"{path} is not a file")
    with path.open(encoding="utf-8") as f:
        checks = verify_lines(f)
    bad = [c for c in checks if not c.result.verified]
    for c in bad:
        print(f"{c.instance_id}: TAMPERED at seq {c.result.first_bad_event_id}: {c.result.reason}")
    print(f"verified {len(checks) - len(bad)} of {len(checks)} instances in {path}" + (f"; {len(bad)} failed"
                                                                                          if bad else ""))
    return EXIT_FAILED if bad else 0


def build_parser() -> argparse.ArgumentParser:
    data_dir = os.environ.get("GOVFLOW_DATA_DIR") or str(default_data_dir())
    parser = argparse.ArgumentParser(
        prog="govflow", description=__doc__,
        epilog=f"Every command reads its settings from GOVFLOW_* environment variables (see the README). The data "
               f"directory (SQLite database and token secret) is GOVFLOW_DATA_DIR, now {data_dir}.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the API (migrates and deploys on start)",
                           description="Run the API, the timer scheduler and the webhook sender. On start: create the "
                                       "data directory if needed, migrate the database, deploy GOVFLOW_BPMN_DIR "
                                       "(replicas started together do both one after another). With "
                                       "GOVFLOW_MIGRATE_ON_START=false, refuse a database `govflow migrate` has "
                                       "not upgraded instead of migrating it.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 for "
                                                           "every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    sub.add_parser("migrate", help="upgrade the database to the latest migration",
                   description="Upgrade the database (GOVFLOW_DATABASE_URL, or the SQLite file in the data directory, "
                               "created if missing) to the latest migration.")
    deploy = sub.add_parser("deploy", help="deploy every .bpmn/.dmn file of a directory",
                            description="Deploy every .bpmn and .dmn file of a directory as new versions; identical "
                                        "content is not a new version.")
    deploy.add_argument("directory", help="a directory holding .bpmn and .dmn files, e.g. bpmn/")
    token = sub.add_parser("token", help="print a bearer token for a user",
                           description="Print a bearer token (JWT) for a user, signed with the service's secret "
                                       "(GOVFLOW_JWT_SECRET, or the one in the data directory). Prints only the "
                                       "token, for $(…).")
    token.add_argument("user", help="the user id the token names, e.g. wang.fang")
    token.add_argument("--groups", default="", metavar="GROUP,GROUP",
                       help="comma-separated candidate groups (departments) the user belongs to, e.g. "
                            "applicant,data_bureau; GET /api/v1/groups lists those the processes use")
    token.add_argument("--admin", action="store_true",
                       help="an administrator: sees everything, deploys, cancels, manages webhooks and API keys")
    token.add_argument("--no-groups", action="store_true",
                       help="mint a token without groups on purpose (it sees only the instances its user starts)")
    token.add_argument("--hours", type=_positive_hours, default=None, metavar="N",
                       help="lifetime in whole hours, 1 to 8784 (default GOVFLOW_TOKEN_TTL_HOURS, 12)")
    sub.add_parser("worker", help="run the timer scheduler and webhook sender without the API",
                   description="Run the timer scheduler and webhook sender in their own process, next to "
                               "`govflow serve` started with GOVFLOW_SCHEDULER_ENABLED=false and "
                               "GOVFLOW_WEBHOOK_SENDER_ENABLED=false.")
    apikey = sub.add_parser("apikey", help="API keys for systems",
                            description="API keys for systems (OA integrations).")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = apikey_sub.add_parser("create", help="create a key and print it (shown once)",
                                   description="Create an API key and print it; only its hash is stored, so it is "
                                               "shown once.")
    create.add_argument("name", help="the principal the key acts as (letters, digits, '.', '_', '-'), e.g. oa-hangzhou")
    create.add_argument("--groups", default="", metavar="GROUP,GROUP",
                        help="comma-separated candidate groups the system acts in: it claims and completes tasks "
                             "offered to them, e.g. applicant")
    create.add_argument("--processes", default="", metavar="KEY,KEY",
                        help="comma-separated process keys granted to the key: it reads every instance and task of "
                             "them, starts them and sends them messages, e.g. hangzhou")
    create.add_argument("--admin", action="store_true", help="an administrator's key (use sparingly)")
    apikey_sub.add_parser("list", help="list keys", description="List the API keys, active and revoked.")
    revoke = apikey_sub.add_parser("revoke", help="revoke a key", description="Revoke an API key.")
    revoke.add_argument("id", help="the key's id, as `govflow apikey list` shows it")
    audit = sub.add_parser("audit", help="audit trail", description="The tamper-evident audit trail.")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check every instance's hash chain; exit 1 if any was tampered",
                                  description="Check the hash chain of every instance's audit trail. Exit status 0 "
                                              "when all verify, 1 when one was tampered with, 2 when the instance "
                                              "or the database does not exist.")
    verify.add_argument("--instance", default=None, metavar="ID", help="check only this process instance")
    verify.add_argument("--file", default=None, metavar="FILE",
                        help="check an export written by `govflow audit export` (or by the history retention) "
                             "instead of the database")
    export = audit_sub.add_parser("export", help="write audit chains as JSON lines (verifiable with verify --file)",
                                  description="Write the audit trail of every instance (or one) as JSON lines, one "
                                              "event a line with its hashes, so that the chain can be verified "
                                              "without the database (`govflow audit verify --file FILE`).")
    export.add_argument("--instance", default=None, metavar="ID", help="export only this process instance")
    export.add_argument("--out", default=None, metavar="FILE", help="write to FILE (default: standard output)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    handlers = {"serve": _serve, "migrate": _migrate, "deploy": _deploy, "token": _token, "worker": _worker,
                "apikey": _apikey, "audit": _audit}
    try:
        return handlers[args.command](args, settings)
    except CommandError as e:
        print(f"govflow {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        _close_opened()


if __name__ == "__main__":
    sys.exit(main())
