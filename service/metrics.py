"""Prometheus metrics: requests, engine work, timers and webhook deliveries (served at /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("govflow_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("govflow_http_request_seconds", "HTTP request duration", ["method", "route"])
HEAD_TIMEOUTS = Counter("govflow_http_head_timeouts_total",
                        "Connections answered 408 and closed because a begun request head did not arrive in time")
WRITE_TIMEOUTS = Counter("govflow_http_write_timeouts_total",
                         "Connections dropped because their client did not take its answers in time")
TIMERS_FIRED = Counter("govflow_timers_fired_total", "Timers fired by the scheduler or an administrator")
TIMER_FAILURES = Counter("govflow_timer_failures_total", "Timer firings that failed and will be retried")
WEBHOOK_ATTEMPTS = Counter("govflow_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])
