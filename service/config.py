"""Settings from the environment (GOVFLOW_*), with defaults that run embedded with zero set-up."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPOSITORY_BPMN_DIR = Path(__file__).resolve().parent.parent / "bpmn"
DATABASE_FILE = "govflow.db"
SECRET_FILE = "jwt-secret"


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/govflow, i.e. ~/.local/share/govflow: the same for every command, wherever it is run."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "govflow"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOVFLOW_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
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
    # webhook targets on loopback, link-local or private addresses: "" (refused), "*", or networks and host names
    webhook_allow_private: str = ""
    idempotency_ttl_hours: int = 24
    script_step_time_limit_seconds: float = Field(default=1.0, gt=0)
    # the engine runs in worker processes: how many, how long one command may take, how much memory a step may add
    engine_workers: int = Field(default=2, ge=1, le=64)
    engine_command_time_limit_seconds: float = Field(default=10.0, gt=0)
    engine_memory_limit_mb: int = Field(default=512, ge=0)
    database_busy_timeout_seconds: float = Field(default=10.0, gt=0)
    # database connections of one process: kept open, opened beyond that under load, and how long a request waits
    # for one before it is answered 503 with Retry-After (the request thread pool is sized to what they serve)
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_max_overflow: int = Field(default=5, ge=0, le=1000)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    # serve and worker migrate the database at start (replicas one after another, under a PostgreSQL advisory
    # lock); false: they refuse to start on a database `govflow migrate` has not brought to the latest migration
    migrate_on_start: bool = True
    page_size_max: int = 200
    max_request_bytes: int = Field(default=1_048_576, gt=0)  # a request body (JSON) may have at most this
    max_deployment_bytes: int = Field(default=10_485_760, gt=0)  # the files of one deployment together
    # a request's head must arrive within this many seconds of its connection opening (or of the previous answer
    # on a kept-alive connection), and its body within this many seconds after its head: a client that sends
    # slowly is cut off (408) instead of holding a connection, or a request slot, for as long as it likes
    request_read_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # on SIGTERM, requests still at work after this many seconds are cancelled and the service stops
    shutdown_timeout_seconds: int = Field(default=25, ge=1, le=3600)
    workflow_cache_size: int = 256
    # parsed definition versions a process (the service, each engine worker) keeps in memory, the least recently
    # used forgotten first and parsed again when next needed: every deployment of a changed diagram is a new
    # version (a lifecycle's takes about half a megabyte in the service)
    model_cache_size: int = Field(default=64, ge=1, le=100_000)
    # when set, GET /metrics answers only requests with `Authorization: Bearer <this token>`
    metrics_token: str | None = None
    # after every change, restore the stored state and compare it with the workflow in memory (tests; slow)
    verify_state_storage: bool = False
    # ended instances older than this many days are removed by the worker, after their audit chain was exported
    # to history_export_dir (default: history-export in the data directory); None keeps everything
    history_retention_days: int | None = Field(default=None, ge=1, le=365_000)
    history_export_dir: Path | None = None
    history_purge_interval_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def database_file(self) -> Path:
        return self.data_dir / DATABASE_FILE

    @property
    def secret_file(self) -> Path:
        return self.data_dir / SECRET_FILE

    def ensure_data_dir(self) -> Path:
        """Create the data directory, readable by its owner only (it holds the secret and the database)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.data_dir

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.ensure_data_dir()
        return f"sqlite:///{self.database_file}"

    def database_description(self) -> str:
        """The database URL with any password masked, for logs and messages."""
        from sqlalchemy.engine import make_url

        return make_url(self.resolved_database_url()).render_as_string(hide_password=True)

    def resolved_jwt_secret(self) -> str:
        """The configured secret, else one generated once and kept in the data directory."""
        if self.jwt_secret:
            return self.jwt_secret
        self.ensure_data_dir()
        path = self.secret_file
        if not path.exists():
            _create_secret_file(path, secrets.token_urlsafe(48))
        return path.read_text(encoding="utf-8").strip()


def _create_secret_file(path: Path, secret: str) -> None:
    """Write the secret to a private temporary file, then link it into place: a concurrent start sees either
    no file or the whole secret, and the first one to link wins."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
