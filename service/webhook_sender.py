"""The webhook sender: fans outbox events out to subscriptions and delivers them with httpx,
outside any database transaction, so a slow or dead receiver never slows the API."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import select

from service import metrics
from service.background import LoopThread
from service.db.models import WebhookDelivery, WebhookSubscription
from service.services import webhooks
from service.services.context import AppContext
from service.services.targets import Allowance, TargetRefused, pinned
from service.text import storable_text

log = logging.getLogger("govflow.webhooks")


@dataclass
class _Claimed:
    id: int
    url: str
    secret: str
    event_id: str
    event_type: str
    body: str
    attempts: int


class WebhookSender(LoopThread):
    thread_name = "govflow-webhooks"
    join_seconds = 30.0

    def __init__(self, ctx: AppContext, client: httpx.Client | None = None, batch: int = 50) -> None:
        super().__init__()
        self.ctx = ctx
        self.client = client or httpx.Client(timeout=ctx.settings.webhook_timeout_seconds, follow_redirects=False)
        self.batch = batch
        self.allowance = Allowance.parse(ctx.settings.webhook_allow_private)

    def stop(self) -> None:
        super().stop()
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("webhook round failed")
                worked = 0
            if not worked:
                self._stop.wait(1.0)

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            total += n
            if n == 0:
                break
        return total

    def run_once(self) -> int:
        """Dispatch new events, then attempt every delivery that is due. Returns the attempts made."""
        now = self.ctx.clock.now()
        with self.ctx.session_factory() as session, session.begin():
            webhooks.dispatch(session, now)
        claimed = self._claim()
        for item in claimed:
            self._attempt(item)
        return len(claimed)

    def _claim(self) -> list[_Claimed]:
        now = self.ctx.clock.now()
        lease = timedelta(seconds=self.ctx.settings.webhook_timeout_seconds * 3 + 5)
        out: list[_Claimed] = []
        with self.ctx.session_factory() as session, session.begin():
            rows = session.execute(
                select(WebhookDelivery, WebhookSubscription)
                .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                       (WebhookDelivery.lease_until.is_(None)) | (WebhookDelivery.lease_until < now))
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(self.batch)
                .with_for_update(of=WebhookDelivery, skip_locked=True)
            ).all()
            for delivery, subscription in rows:
                delivery.lease_until = now + lease
                delivery.attempts += 1
                out.append(_Claimed(delivery.id, subscription.url, subscription.secret, delivery.event_id,
                                    delivery.event_type, delivery.body, delivery.attempts))
        return out

    def _attempt(self, item: _Claimed) -> None:
        body = item.body.encode("utf-8")
        timestamp = int(self.ctx.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "govflow-webhooks",
            "X-Govflow-Event": item.event_type,
            "X-Govflow-Delivery": item.event_id,
            "X-Govflow-Timestamp": str(timestamp),
            "X-Govflow-Signature": webhooks.sign(item.secret, timestamp, body),
        }
        status: int | None = None
        error: str | None = None
        try:
            target, host_header, server_name = pinned(item.url, self.allowance)
        except TargetRefused as e:
            self._record(item, None, f"target refused: {e}"[:2000])
            return
        headers["Host"] = host_header
        try:
            response = self.client.post(target, content=body, headers=headers,
                                        extensions={"sni_hostname": server_name})
            status = response.status_code
            if not 200 <= status < 300:
                error = f"receiver answered {status}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:2000]
        self._record(item, status, error)

    def _record(self, item: _Claimed, status: int | None, error: str | None) -> None:
        settings = self.ctx.settings
        now = self.ctx.clock.now()
        with self.ctx.session_factory() as session, session.begin():
            row = session.get(WebhookDelivery, item.id)
            if row is None:
                return
            row.last_status_code, row.lease_until = status, None
            row.last_error = None if error is None else storable_text(error, 2000)
            metrics.WEBHOOK_ATTEMPTS.labels("delivered" if error is None else "failed").inc()
            if error is None:
                row.status, row.delivered_at, row.next_attempt_at = "delivered", now, None
            elif item.attempts >= settings.webhook_max_attempts:
                row.status, row.next_attempt_at = "failed", None
                log.warning("webhook delivery %s failed for good: %s", row.id, error)
            else:
                row.next_attempt_at = now + webhooks.backoff(item.attempts, settings.webhook_backoff_base_seconds,
                                                             settings.webhook_backoff_max_seconds)
