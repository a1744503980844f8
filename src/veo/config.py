"""Settings parsed once from the environment (the variables are listed in README.md).

Nothing else in the package reads ``os.environ``: processes call :func:`load` at startup and pass
the frozen :class:`Settings` to whatever needs it.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from veo.errors import ConfigError

MIN_SECRET_LEN = 32
# In sandbox mode the web process serves the fakes beside itself, on PORT+1 and PORT+2; the
# worker derives the same addresses from the same PORT.
SANDBOX_GEMINI_OFFSET = 1
SANDBOX_FLOW_OFFSET = 2


def _sandbox_secret(root: Path) -> str:
    """A generated secret kept under STORAGE_DIR, so every sandbox process shares it."""
    path = root / ".sandbox-secret"
    if path.exists():
        return path.read_text().strip()
    root.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another sandbox process won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


class Secret(str):
    """A string whose repr never shows its value (as starlette's ``Secret``)."""

    def __repr__(self) -> str:
        return "Secret('**********')"


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(name: str, raw: str, *, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(name: str, raw: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://localhost/veo"
    redis_url: str = "redis://localhost:6379/0"
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_access_key: Secret | None = None
    s3_secret_key: Secret | None = None
    s3_region: str = "auto"
    storage_dir: str = "./data"
    secret_key: Secret = dataclasses.field(default_factory=lambda: Secret(""))
    admin_token: Secret | None = None
    gemini_api_keys: tuple[Secret, ...] = ()
    gemini_base_url: str | None = None
    default_model: str = "gemini-omni-1.1-flash"
    models_file: str | None = None
    flow_enabled: bool = True
    flow_account: str = "default"
    flow_storage_state_key: str = "flow/auth/default/storage_state.json"
    flow_base_url: str = "https://flow.google.com/"
    flow_max_concurrent: int = 1
    flow_headless: bool = False
    flow_browser_executable: str | None = None
    flow_job_timeout: float = 600.0
    flow_canary_minutes: float = 60.0
    alert_webhook_url: str | None = None
    sandbox: bool = False
    log_format: str = "json"
    host: str = "127.0.0.1"
    port: int = 8000
    # Operational knobs beyond the documented variables; named so operators can find them.
    api_job_timeout: float = 1800.0  # seconds one API clip may take, polling included
    heartbeat_seconds: float = 2.0  # how often a running job proves its worker is alive
    stale_after_seconds: float = 30.0  # a running job silent this long is orphaned
    reconcile_seconds: float = 10.0  # reconciler period
    poll_seconds: float = 10.0  # longest wait between polls of a remote generation
    upload_max_bytes: int = 20 * 1024 * 1024
    webhook_allow_private: bool = False
    flow_recycle_jobs: int = 50  # recycle the browser context after this many jobs
    flow_state_poll_seconds: float = 15.0  # how often the worker looks for a new login state
    key_cooldown_seconds: float = 30.0  # first back-off after a 429; doubles per repeat
    key_cooldown_max_seconds: float = 900.0  # the back-off never grows past this
    key_window_seconds: float = 60.0  # a key's quota window (Google counts requests per minute)
    key_max_wait_seconds: float = 20.0  # wait this long in place for a key; longer pauses
    max_attempts: int = 5  # runs of one job before a retryable error becomes final
    final_timeout: float = 1800.0  # seconds one final build may take
    flow_cooldown_seconds: float = 300.0  # first rest of a Flow account after a rate limit
    flow_cooldown_max_seconds: float = 7200.0  # the rest never grows past this
    flow_lease_seconds: float = 30.0  # a Flow account's driver lease; renewed at a third of it
    sse_streams_per_user: int = 20  # open event streams one user may hold per web process
    worker_metrics_port: int | None = None  # a worker serves /metrics here when set
    old_secret_key: Secret | None = None  # only for `veo rotate-secret`

    @property
    def storage_backend(self) -> str:
        return "s3" if self.s3_bucket else "local"

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "database_url"
        )
        return f"Settings({fields})"


def load(env: Mapping[str, str] | None = None, *, require_secret: bool = True) -> Settings:
    """Parse and validate the environment. Raises :class:`ConfigError` naming the variable."""
    env = os.environ if env is None else env

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name)
        return default if value is None or value == "" else value

    sandbox = _bool("VEO_SANDBOX", get("VEO_SANDBOX", "0") or "0")
    secret = get("VEO_SECRET_KEY")
    if secret is None:
        if sandbox:
            secret = _sandbox_secret(Path(get("STORAGE_DIR", "./data") or "./data"))
        elif require_secret:
            raise ConfigError(
                "VEO_SECRET_KEY is not set: set it to a random string of at least "
                f"{MIN_SECRET_LEN} characters (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)"
            )
        else:
            secret = ""
    if secret and len(secret) < MIN_SECRET_LEN:
        raise ConfigError(f"VEO_SECRET_KEY must be at least {MIN_SECRET_LEN} characters long")

    log_format = get("LOG_FORMAT", "json") or "json"
    if log_format not in ("json", "console"):
        raise ConfigError(f"LOG_FORMAT must be json or console, got {log_format!r}")

    account = get("FLOW_ACCOUNT", "default") or "default"
    if not account.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("FLOW_ACCOUNT may hold only letters, digits, '-' and '_'")
    state_key = get("FLOW_STORAGE_STATE_URL") or f"flow/auth/{account}/storage_state.json"

    for url_var in ("GEMINI_BASE_URL", "FLOW_BASE_URL", "ALERT_WEBHOOK_URL", "S3_ENDPOINT"):
        value = get(url_var)
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{url_var} must be an http(s) URL, got {value!r}")

    pool = (get("GEMINI_API_KEYS", "") or "").split(",")
    keys = tuple(Secret(k.strip()) for k in pool if k.strip())
    access = get("S3_ACCESS_KEY")
    secret_access = get("S3_SECRET_KEY")
    admin = get("VEO_ADMIN_TOKEN")
    if get("S3_BUCKET") and not (access and secret_access):
        raise ConfigError("S3_BUCKET is set but S3_ACCESS_KEY or S3_SECRET_KEY is missing")

    port = _int("PORT", get("PORT", "8000") or "8000", minimum=1)
    kw: dict[str, Any] = dict(
        database_url=get("DATABASE_URL", "postgresql://localhost/veo"),
        redis_url=get("REDIS_URL") or get("KEYVALUE_URL") or "redis://localhost:6379/0",
        s3_endpoint=get("S3_ENDPOINT"),
        s3_bucket=get("S3_BUCKET"),
        s3_access_key=Secret(access) if access else None,
        s3_secret_key=Secret(secret_access) if secret_access else None,
        s3_region=get("S3_REGION", "auto"),
        storage_dir=get("STORAGE_DIR", "./data"),
        secret_key=Secret(secret),
        admin_token=Secret(admin) if admin else None,
        gemini_api_keys=keys,
        gemini_base_url=get("GEMINI_BASE_URL") or (
            f"http://127.0.0.1:{port + SANDBOX_GEMINI_OFFSET}" if sandbox else None),
        default_model=get("VEO_DEFAULT_MODEL", "gemini-omni-1.1-flash"),
        models_file=get("VEO_MODELS_FILE"),
        flow_enabled=_bool("FLOW_BACKEND_ENABLED", get("FLOW_BACKEND_ENABLED", "true") or "true"),
        flow_account=account,
        flow_storage_state_key=state_key,
        flow_base_url=get("FLOW_BASE_URL") or (
            f"http://127.0.0.1:{port + SANDBOX_FLOW_OFFSET}/" if sandbox
            else "https://flow.google.com/"),
        flow_max_concurrent=_int(
            "FLOW_MAX_CONCURRENT", get("FLOW_MAX_CONCURRENT", "1") or "1", minimum=1
        ),
        flow_headless=_bool("FLOW_HEADLESS", get("FLOW_HEADLESS", "false") or "false"),
        flow_browser_executable=get("FLOW_BROWSER_EXECUTABLE"),
        flow_job_timeout=_float("FLOW_JOB_TIMEOUT", get("FLOW_JOB_TIMEOUT", "600") or "600",
                                minimum=1),
        flow_canary_minutes=_float("FLOW_CANARY_MINUTES",
                                   get("FLOW_CANARY_MINUTES", "60") or "60"),
        alert_webhook_url=get("ALERT_WEBHOOK_URL"),
        sandbox=sandbox,
        log_format=log_format,
        host=get("HOST", "127.0.0.1"),
        port=port,
        api_job_timeout=_float("VEO_API_JOB_TIMEOUT", get("VEO_API_JOB_TIMEOUT", "1800") or "1800",
                               minimum=1),
        heartbeat_seconds=_float("VEO_HEARTBEAT_SECONDS", get("VEO_HEARTBEAT_SECONDS", "2") or "2",
                                 minimum=0.05),
        stale_after_seconds=_float("VEO_STALE_AFTER_SECONDS",
                                   get("VEO_STALE_AFTER_SECONDS", "30") or "30", minimum=0.1),
        reconcile_seconds=_float("VEO_RECONCILE_SECONDS",
                                 get("VEO_RECONCILE_SECONDS", "10") or "10", minimum=0.05),
        poll_seconds=_float("VEO_POLL_SECONDS", get("VEO_POLL_SECONDS", "10") or "10",
                            minimum=0.01),
        upload_max_bytes=_int("VEO_UPLOAD_MAX_BYTES",
                              get("VEO_UPLOAD_MAX_BYTES", str(20 * 1024 * 1024)) or "0", minimum=1),
        webhook_allow_private=_bool("VEO_WEBHOOK_ALLOW_PRIVATE",
                                    get("VEO_WEBHOOK_ALLOW_PRIVATE", "0") or "0"),
        flow_recycle_jobs=_int("FLOW_RECYCLE_JOBS", get("FLOW_RECYCLE_JOBS", "50") or "50",
                               minimum=1),
        flow_state_poll_seconds=_float("FLOW_STATE_POLL_SECONDS",
                                       get("FLOW_STATE_POLL_SECONDS", "15") or "15", minimum=0.05),
        key_cooldown_seconds=_float("VEO_KEY_COOLDOWN_SECONDS",
                                    get("VEO_KEY_COOLDOWN_SECONDS", "30") or "30", minimum=0.01),
        key_cooldown_max_seconds=_float("VEO_KEY_COOLDOWN_MAX_SECONDS",
                                        get("VEO_KEY_COOLDOWN_MAX_SECONDS", "900") or "900",
                                        minimum=0.01),
        key_window_seconds=_float("VEO_KEY_WINDOW_SECONDS",
                                  get("VEO_KEY_WINDOW_SECONDS", "60") or "60", minimum=0.1),
        key_max_wait_seconds=_float("VEO_KEY_MAX_WAIT_SECONDS",
                                    get("VEO_KEY_MAX_WAIT_SECONDS", "20") or "20"),
        max_attempts=_int("VEO_MAX_ATTEMPTS", get("VEO_MAX_ATTEMPTS", "5") or "5", minimum=1),
        final_timeout=_float("VEO_FINAL_TIMEOUT", get("VEO_FINAL_TIMEOUT", "1800") or "1800",
                             minimum=1),
        flow_cooldown_seconds=_float("FLOW_COOLDOWN_SECONDS",
                                     get("FLOW_COOLDOWN_SECONDS", "300") or "300", minimum=0.01),
        flow_cooldown_max_seconds=_float("FLOW_COOLDOWN_MAX_SECONDS",
                                         get("FLOW_COOLDOWN_MAX_SECONDS", "7200") or "7200",
                                         minimum=0.01),
        flow_lease_seconds=_float("FLOW_LEASE_SECONDS", get("FLOW_LEASE_SECONDS", "30") or "30",
                                  minimum=0.3),
        sse_streams_per_user=_int("VEO_SSE_STREAMS_PER_USER",
                                  get("VEO_SSE_STREAMS_PER_USER", "20") or "20", minimum=1),
        worker_metrics_port=_int("VEO_WORKER_METRICS_PORT", port_raw, minimum=1)
        if (port_raw := get("VEO_WORKER_METRICS_PORT")) else None,
        old_secret_key=Secret(old) if (old := get("VEO_OLD_SECRET_KEY")) else None,
    )
    return Settings(**kw)
