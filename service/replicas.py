"""What each process of a service run as several replicas needs: a database that is ready before it serves
(migrated one process after another, or checked and refused), and a request thread pool no larger than its
database connection pool can serve."""
from __future__ import annotations

import anyio.to_thread

from service.config import Settings
from service.db.migrate import require_latest, upgrade
from service.services.context import AppContext


def prepare_database(ctx: AppContext) -> None:
    """Migrate (PostgreSQL: under an advisory lock, so replicas started together migrate one after another), or,
    with GOVFLOW_MIGRATE_ON_START=false, refuse a database that is not at the latest migration (NotMigrated)."""
    if ctx.settings.migrate_on_start:
        upgrade(ctx.engine)
    else:
        require_latest(ctx.engine, ctx.settings.database_description())


def background_connections(settings: Settings) -> int:
    """Connections this process's background workers hold at once: one each for the timer scheduler and the
    webhook sender (the scheduler's LISTEN connection on PostgreSQL is its own, outside the pool)."""
    return int(settings.scheduler_enabled) + int(settings.webhook_sender_enabled)


def pool_capacity(settings: Settings) -> int:
    return settings.db_pool_size + settings.db_max_overflow


def request_threads(settings: Settings) -> int:
    """Threads that run requests. A request uses one database connection at a time, so there are no more
    threads than connections left beside the background workers: requests beyond them wait for a thread, not for
    a connection, and a request never waits GOVFLOW_DB_POOL_TIMEOUT_SECONDS for one only to be refused. At least 1."""
    return max(1, pool_capacity(settings) - background_connections(settings))


def limit_request_threads(settings: Settings) -> int:
    """Size the thread pool that runs the application's synchronous routes and dependencies (the event loop's
    default thread limiter, 40 unless told otherwise). Call from within the event loop (the lifespan)."""
    threads = request_threads(settings)
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads
    return threads
