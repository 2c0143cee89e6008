"""The govflow command: serve · migrate · deploy · token · worker · apikey · audit."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

from service.config import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from service.db.migrate import upgrade
    from service.db.session import make_engine

    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    print("database is at the latest migration")
    return 0


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    from service.app import build_context
    from service.db.migrate import upgrade
    from service.errors import DomainError

    settings.bpmn_dir = Path(args.directory)
    ctx = build_context(settings)
    upgrade(ctx.engine)
    from service.app import SYSTEM
    from service.services import definitions

    files = definitions.read_directory(settings.bpmn_dir)
    try:
        result = definitions.deploy(ctx, SYSTEM, files, source=f"cli:{settings.bpmn_dir.name}")
    except DomainError as e:
        print(f"error: {e.detail}", file=sys.stderr)
        return 1
    for d in result.definitions:
        print(f"deployed {d.key} version {d.version}")
    for key in result.unchanged:
        print(f"unchanged {key}")
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from service.auth import mint_token
    from service.clock import Clock

    groups = [g.strip() for g in (args.groups or "").split(",") if g.strip()]
    token = mint_token(settings.resolved_jwt_secret(), args.user, groups, args.admin, Clock().now(),
                       timedelta(hours=args.hours or settings.token_ttl_hours), settings.jwt_issuer)
    print(token)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from service.app import build_context
    from service.db.migrate import upgrade
    from service.workers import start_workers

    ctx = build_context(settings)
    upgrade(ctx.engine)
    workers = start_workers(ctx)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print("worker running; Ctrl-C to stop", file=sys.stderr)
    done.wait()
    for w in workers:
        w.stop()
    return 0


def _apikey(args: argparse.Namespace, settings: Settings) -> int:
    from service.app import SYSTEM, build_context
    from service.db.migrate import upgrade
    from service.errors import DomainError
    from service.services import apikeys

    ctx = build_context(settings)
    upgrade(ctx.engine)
    try:
        with ctx.session_factory() as session, session.begin():
            if args.apikey_command == "create":
                groups = [g.strip() for g in (args.groups or "").split(",") if g.strip()]
                created = apikeys.create(session, SYSTEM, ctx.clock.now(), args.name, groups, args.admin)
                print(created["key"])
            elif args.apikey_command == "list":
                for k in apikeys.list_keys(session, SYSTEM):
                    state = "revoked" if k["revoked_at"] else "active"
                    print(f"{k['id']}  {k['name']}  groups={','.join(k['groups'])}  admin={k['admin']}  {state}")
            else:
                apikeys.revoke(session, SYSTEM, ctx.clock.now(), args.id)
                print(f"revoked {args.id}")
    except DomainError as e:
        print(f"error: {e.detail}", file=sys.stderr)
        return 1
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.app import build_context
    from service.db.models import ProcessInstance
    from service.services.audit import load_events, verify_events

    ctx = build_context(settings)
    bad = 0
    with ctx.session_factory() as session:
        ids = [args.instance] if args.instance else list(session.scalars(select(ProcessInstance.id)
                                                                         .order_by(ProcessInstance.started_at)))
        for instance_id in ids:
            result = verify_events(instance_id, load_events(session, instance_id))
            if not result.verified:
                bad += 1
                print(f"{instance_id}: TAMPERED at event {result.first_bad_event_id}: {result.reason}")
    print(f"verified {len(ids) - bad} of {len(ids)} instances" + (f"; {bad} failed" if bad else ""))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="govflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (migrates and deploys on start)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    sub.add_parser("migrate", help="upgrade the database to the latest migration")
    deploy = sub.add_parser("deploy", help="deploy every .bpmn/.dmn file of a directory")
    deploy.add_argument("directory")
    token = sub.add_parser("token", help="print a bearer token for a user")
    token.add_argument("user")
    token.add_argument("--groups", default="")
    token.add_argument("--admin", action="store_true")
    token.add_argument("--hours", type=int, default=None)
    sub.add_parser("worker", help="run the timer scheduler and webhook sender without the API")
    apikey = sub.add_parser("apikey", help="API keys for systems")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_sub.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("name")
    create.add_argument("--groups", default="")
    create.add_argument("--admin", action="store_true")
    apikey_sub.add_parser("list", help="list keys")
    revoke = apikey_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id")
    audit = sub.add_parser("audit", help="audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check every instance's hash chain; exit 1 if any was tampered")
    verify.add_argument("--instance", default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    handlers = {"serve": _serve, "migrate": _migrate, "deploy": _deploy, "token": _token, "worker": _worker,
                "apikey": _apikey, "audit": _audit}
    return handlers[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
