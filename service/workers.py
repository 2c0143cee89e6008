"""Background workers started with the service (timer scheduler; webhook sender; history retention)."""
from __future__ import annotations

from typing import Protocol

from service.services.context import AppContext


class Worker(Protocol):
    def stop(self) -> None: ...


def start_workers(ctx: AppContext) -> list[Worker]:
    workers: list[Worker] = []
    if ctx.settings.scheduler_enabled:
        from service.scheduler import Scheduler

        scheduler = Scheduler(ctx)
        scheduler.start()
        workers.append(scheduler)
    if ctx.settings.webhook_sender_enabled:
        from service.webhook_sender import WebhookSender

        sender = WebhookSender(ctx)
        sender.start()
        workers.append(sender)
    if ctx.settings.history_retention_days is not None and ctx.settings.scheduler_enabled:
        from service.services.retention import Retention

        retention = Retention(ctx)
        retention.start()
        workers.append(retention)
    return workers
