"""Settings from the environment (GOVFLOW_*), with defaults that run embedded with zero set-up."""
from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPOSITORY_BPMN_DIR = Path(__file__).resolve().parent.parent / "bpmn"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOVFLOW_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    bpmn_dir: Path = REPOSITORY_BPMN_DIR
    deploy_on_start: bool = True
    jwt_secret: str | None = None
    jwt_issuer: str = "govflow"
    token_ttl_hours: int = 12
    # processes granted to every member of a group, e.g. GOVFLOW_GROUP_PROCESS_GRANTS='{"oa_systems": ["hangzhou"]}'
    group_process_grants: dict[str, list[str]] = Field(default_factory=dict)
    calendar_file: Path | None = None
    scheduler_enabled: bool = True
    scheduler_max_sleep_seconds: float = 30.0
    scheduler_batch_size: int = 50
    timer_lease_seconds: int = 300
    webhook_sender_enabled: bool = True
    webhook_max_attempts: int = 8
    webhook_backoff_base_seconds: float = 2.0
    webhook_backoff_max_seconds: float = 600.0
    webhook_timeout_seconds: float = 10.0
    idempotency_ttl_hours: int = 24
    script_step_time_limit_seconds: float = Field(default=1.0, gt=0)
    page_size_max: int = 200
    workflow_cache_size: int = 256
    # after every change, restore the stored state and compare it with the workflow in memory (tests; slow)
    verify_state_storage: bool = False

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'govflow.db').resolve()}"

    def resolved_jwt_secret(self) -> str:
        """The configured secret, else one generated once and kept in the data directory."""
        if self.jwt_secret:
            return self.jwt_secret
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()
