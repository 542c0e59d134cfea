"""Configuration, from the environment (never from code). Every ``SOCLE_*`` setting is read
here, with its default: `Settings` for what the server and the commands hold, the functions
below it for the few read at each use. The README lists them."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


# Where `socle serve` writes the public URL it announced: the audience of tokens minted offline
# (`socle token`, the demo loader) for that data dir.
PUBLIC_URL_FILE = "public-url"


def _bool(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _path(name: str) -> Path | None:
    raw = os.environ.get(name)
    return Path(raw) if raw else None


def _flag(name: str) -> bool | None:
    """A lenient on/off switch: unset is None (the caller's default), anything else but
    1/true/yes/on is off."""
    raw = os.environ.get(name)
    if not raw:
        return None
    return raw.strip().lower() in ("1", "true", "yes", "on")


# Settings read at each use by code that holds no `Settings` (definitions loaded at import,
# write rules, the audit anchors): a change of the environment is seen at the next use.


def fhir_definitions_dir() -> Path | None:
    """``SOCLE_FHIR_DEFINITIONS``: where the R4 definition files are (None: node_modules)."""
    return _path("SOCLE_FHIR_DEFINITIONS")


def unknown_profile_severity() -> str:
    """``SOCLE_UNKNOWN_PROFILE_SEVERITY``: ``warning`` (default) or ``error`` for a profile in
    `meta.profile` the validator does not know."""
    return os.environ.get("SOCLE_UNKNOWN_PROFILE_SEVERITY", "warning")


def unknown_extension_severity() -> str:
    """``SOCLE_UNKNOWN_EXTENSION_SEVERITY``: ``warning`` (default), ``error`` or ``ignore`` for
    an extension whose definition the validator does not know."""
    value = os.environ.get("SOCLE_UNKNOWN_EXTENSION_SEVERITY", "warning").strip().lower()
    return value if value in ("warning", "error", "ignore") else "warning"


def ins_sharing_mode() -> str:
    """``SOCLE_INS_SHARING``: ``strict`` (default) or ``status`` (docs/identity.md)."""
    return os.environ.get("SOCLE_INS_SHARING", "strict")


def ins_write_rule_mode() -> str:
    """``SOCLE_INS_WRITE_RULE``: ``declared`` (default), ``strict`` or ``off``
    (docs/identity.md)."""
    return os.environ.get("SOCLE_INS_WRITE_RULE", "declared")


def audit_anchor_copy() -> Path | None:
    """``SOCLE_AUDIT_ANCHOR_COPY``: a second, append-only file of audit anchors outside the
    data dir (docs/security.md)."""
    return _path("SOCLE_AUDIT_ANCHOR_COPY")


def auth_secrets_file() -> Path | None:
    """``SOCLE_AUTH_SECRETS_FILE``: the authorisation server's secrets (default: in the data
    dir's key directory)."""
    return _path("SOCLE_AUTH_SECRETS_FILE")


def document_matrix_file() -> Path | None:
    """``SOCLE_DOCUMENT_MATRIX_FILE``: the profession × document-type matrix (docs/record.md;
    default: the one shipped)."""
    return _path("SOCLE_DOCUMENT_MATRIX_FILE")


# -- coordination (docs/coordination.md) --------------------------------------------------------
def circle_matrix_file() -> Path | None:
    """``SOCLE_CIRCLE_MATRIX_FILE``: the care circle's profession × role matrix (what a member
    of a patient's care circle may read and write; default: the one shipped)."""
    return _path("SOCLE_CIRCLE_MATRIX_FILE")


@dataclass(frozen=True)
class RelaySettings:
    """The smarthost every outbound mail goes through (docs/platform.md, "Mail")."""

    host: str
    port: int
    security: str  # "starttls" (default), "tls" (implicit TLS) or "none" (local test relay)
    username: str | None
    password: str | None
    ca_file: Path | None
    timeout: float
    sender: str  # the envelope sender when a message names none


def mail_domain() -> str:
    """``SOCLE_MAIL_DOMAIN``: the domain of Socle's mailboxes and of its own sender."""
    return (os.environ.get("SOCLE_MAIL_DOMAIN") or "socle.localhost").strip().lower()


def smtp_relay() -> RelaySettings | None:
    """``SOCLE_SMTP_RELAY`` (``host:port``; unset: no outbound mail), with
    ``SOCLE_SMTP_RELAY_SECURITY``, ``SOCLE_SMTP_RELAY_USER``, the password in
    ``SOCLE_SMTP_RELAY_PASSWORD_FILE`` (or ``SOCLE_SMTP_RELAY_PASSWORD``),
    ``SOCLE_SMTP_RELAY_CA_FILE``, ``SOCLE_SMTP_RELAY_TIMEOUT`` and ``SOCLE_MAIL_FROM``."""
    raw = (os.environ.get("SOCLE_SMTP_RELAY") or "").strip()
    if not raw:
        return None
    host, _, port = raw.rpartition(":") if ":" in raw else (raw, "", "")
    security = (os.environ.get("SOCLE_SMTP_RELAY_SECURITY") or "starttls").strip().lower()
    if security not in ("starttls", "tls", "none"):
        raise ValueError(
            f"SOCLE_SMTP_RELAY_SECURITY must be starttls, tls or none, not {security!r}"
        )
    password_file = _path("SOCLE_SMTP_RELAY_PASSWORD_FILE")
    password = (
        password_file.read_text().strip()
        if password_file
        else os.environ.get("SOCLE_SMTP_RELAY_PASSWORD") or None
    )
    return RelaySettings(
        host=host.strip("[]") or "127.0.0.1",
        port=int(port) if port else (465 if security == "tls" else 25),
        security=security,
        username=os.environ.get("SOCLE_SMTP_RELAY_USER") or None,
        password=password,
        ca_file=_path("SOCLE_SMTP_RELAY_CA_FILE"),
        timeout=float(os.environ.get("SOCLE_SMTP_RELAY_TIMEOUT") or 30),
        sender=os.environ.get("SOCLE_MAIL_FROM") or f"no-reply@{mail_domain()}",
    )


# --- Secure messaging (socle/messaging/, docs/messaging.md) ---------------------------------


@dataclass(frozen=True)
class SmtpServerSettings:
    """Socle's own SMTP server: where it listens, its certificate, the limits it enforces."""

    port: int  # 0: no SMTP server
    cert_file: Path | None  # None: a self-signed certificate generated in the data dir
    key_file: Path | None
    max_bytes: int  # a larger message is refused at DATA (552)
    quota_bytes: int  # per mailbox, unless the mailbox says otherwise (0: no quota)
    domain: str  # SOCLE_MAIL_DOMAIN; citizen mailboxes are at patient.<domain>
    # CAs whose client certificates may authenticate (SASL EXTERNAL; None: not offered)
    client_ca_file: Path | None = None


def smtp_server() -> SmtpServerSettings:
    """``SOCLE_SMTP_PORT`` (default 2525, 0 turns the SMTP server off),
    ``SOCLE_SMTP_CERT_FILE``/``SOCLE_SMTP_KEY_FILE``, ``SOCLE_SMTP_MAX_BYTES`` (25 MB) and
    ``SOCLE_MAILBOX_QUOTA_BYTES`` (1 GB), ``SOCLE_SMTP_CLIENT_CA_FILE`` (the CAs of client
    certificates, e.g. the IGC Santé's: mutual TLS, off when unset)."""
    return SmtpServerSettings(
        port=_int("SOCLE_SMTP_PORT", 2525),
        cert_file=_path("SOCLE_SMTP_CERT_FILE"),
        key_file=_path("SOCLE_SMTP_KEY_FILE"),
        max_bytes=_int("SOCLE_SMTP_MAX_BYTES", 25 * 1024 * 1024),
        quota_bytes=_int("SOCLE_MAILBOX_QUOTA_BYTES", 1024 * 1024 * 1024),
        domain=mail_domain(),
        client_ca_file=_path("SOCLE_SMTP_CLIENT_CA_FILE"),
    )


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None
    max_body_bytes: int
    pool_min: int
    pool_max: int
    # seconds an idle connection above pool_min is kept before the pool closes it
    pool_max_idle_s: float
    search_timeout_ms: int
    slow_search_ms: int
    default_page_size: int
    max_page_size: int
    max_bundle_entries: int
    # Security (docs/security.md): the public URL is the built-in authorisation server's issuer
    # and, with /fhir, the audience tokens must name.
    public_url: str
    signing_key_file: Path | None
    trusted_issuers_file: Path | None
    token_lifetime: int
    cors_origins: tuple[str, ...]
    # Document content store (docs/content-store.md): "file" (content_dir, default
    # <data_dir>/content) or "s3" (bucket, prefix, optional endpoint and region).
    content_store: str = "file"
    content_dir: Path | None = None  # None: <data_dir>/content
    content_key_file: Path | None = None
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "socle/"
    s3_region: str | None = None
    max_document_bytes: int = 20 * 1024 * 1024
    # The pages' sessions (docs/web.md): a session unused this many seconds is over.
    web_session_idle: int = 15 * 60
    # Literal references must name existing resources (docs/security.md); off for deployments
    # that load out of order. References into another patient's record are always checked.
    referential_integrity: bool = True
    # Client JSON nested deeper than this is refused at decode time (docs/security.md).
    max_json_depth: int = 100
    # Bounded work per request (docs/security.md, "Bounded work and trusted hosts").
    request_timeout_ms: int = 60_000
    max_response_entries: int = 10_000
    max_response_bytes: int = 64 * 1024 * 1024
    graceful_shutdown_s: int = 30
    # Host names requests may be addressed to besides the public URL's; links never use them.
    allowed_hosts: tuple[str, ...] = ()
    revocation_refresh_ms: int = 2_000
    # Identity (docs/identity.md): the INSi backend ("simulated" or a registered one), the
    # simulated INSi's reference population ("store" or "region:<patients>:<seed>"), how long
    # the stored Patients' change stamp is trusted, the duplicate watcher's period (0: off), the
    # duplicate report's refresh job's period (0: off, readers then apply the queued changes).
    insi_mode: str = "simulated"
    insi_reference: str = "store"
    identity_stamp_seconds: float = 0.0
    identity_watch_seconds: float = 10.0
    identity_report_seconds: float = 10.0
    # the coordination service's reminders of tasks due (socle/coordination/reminders.py); 0: off
    task_reminder_seconds: float = 3600.0
    # The authorisation server (docs/security.md): Pro Santé Connect (no issuer: the built-in
    # stand-in at <public_url>/psc-standin), lifetimes and rates.
    psc_issuer: str | None = None
    psc_client_id: str = "socle"
    psc_client_secret: str | None = None
    psc_discovery_url: str | None = None  # None: <issuer>/.well-known/openid-configuration
    psc_acr: str = "eidas1"
    psc_standin: bool | None = None  # None: on when no other issuer is set
    auth_request_lifetime: int = 900
    refresh_lifetime: int = 8 * 3600
    auth_login_rate: int = 20  # per client IP and minute
    auth_token_rate: int = 300  # per client IP and minute
    # Background jobs (docs/platform.md): run in `socle serve`'s processes (or only in
    # `socle worker` ones), jobs at once per process, the lease a worker renews.
    jobs_in_serve: bool = True
    job_concurrency: int = 2
    job_lease_s: float = 30.0
    # Bulk export and async requests (docs/platform.md): how long results are kept, the size
    # past which an export file is split, where the files are written (None: <data_dir>/exports).
    export_ttl_s: int = 24 * 3600
    export_file_bytes: int = 256 * 1024 * 1024
    export_dir: Path | None = None

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None) -> Settings:
        chosen = data_dir or os.environ.get("SOCLE_DATA_DIR") or ".socle-data"
        return cls(
            data_dir=Path(chosen).resolve(),
            database_url=os.environ.get("DATABASE_URL") or None,
            max_body_bytes=_int("SOCLE_MAX_BODY_BYTES", 32 * 1024 * 1024),
            pool_min=_int("SOCLE_DB_POOL_MIN", 2),
            pool_max=_int("SOCLE_DB_POOL_MAX", 12),
            pool_max_idle_s=float(os.environ.get("SOCLE_DB_POOL_MAX_IDLE_S") or 600),
            search_timeout_ms=_int("SOCLE_SEARCH_TIMEOUT_MS", 10_000),
            slow_search_ms=_int("SOCLE_SLOW_SEARCH_MS", 500),
            default_page_size=_int("SOCLE_PAGE_SIZE", 20),
            max_page_size=_int("SOCLE_MAX_PAGE_SIZE", 1000),
            max_bundle_entries=_int("SOCLE_MAX_BUNDLE_ENTRIES", 10_000),
            public_url=(os.environ.get("SOCLE_PUBLIC_URL") or "http://127.0.0.1:8080").rstrip("/"),
            signing_key_file=_path("SOCLE_SIGNING_KEY_FILE"),
            trusted_issuers_file=_path("SOCLE_TRUSTED_ISSUERS_FILE"),
            token_lifetime=_int("SOCLE_TOKEN_LIFETIME", 300),
            web_session_idle=_int("SOCLE_WEB_SESSION_IDLE", 15 * 60),
            cors_origins=tuple(
                o.strip() for o in os.environ.get("SOCLE_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            content_store=(os.environ.get("SOCLE_CONTENT_STORE") or "file").strip().lower(),
            content_dir=_path("SOCLE_CONTENT_DIR") or Path(chosen).resolve() / "content",
            content_key_file=_path("SOCLE_CONTENT_KEY_FILE"),
            s3_endpoint=os.environ.get("SOCLE_S3_ENDPOINT") or None,
            s3_bucket=os.environ.get("SOCLE_S3_BUCKET") or None,
            s3_prefix=os.environ.get("SOCLE_S3_PREFIX", "socle/"),
            s3_region=os.environ.get("SOCLE_S3_REGION") or None,
            max_document_bytes=_int("SOCLE_MAX_DOCUMENT_BYTES", 20 * 1024 * 1024),
            referential_integrity=_bool("SOCLE_REFERENTIAL_INTEGRITY", True),
            max_json_depth=_int("SOCLE_MAX_JSON_DEPTH", 100),
            request_timeout_ms=_int("SOCLE_REQUEST_TIMEOUT_MS", 60_000),
            max_response_entries=_int("SOCLE_MAX_RESPONSE_ENTRIES", 10_000),
            max_response_bytes=_int("SOCLE_MAX_RESPONSE_BYTES", 64 * 1024 * 1024),
            graceful_shutdown_s=_int("SOCLE_GRACEFUL_SHUTDOWN_S", 30),
            allowed_hosts=tuple(
                h.strip().lower()
                for h in os.environ.get("SOCLE_ALLOWED_HOSTS", "").split(",")
                if h.strip()
            ),
            revocation_refresh_ms=_int("SOCLE_REVOCATION_REFRESH_MS", 2_000),
            insi_mode=os.environ.get("SOCLE_INSI_MODE") or "simulated",
            insi_reference=(os.environ.get("SOCLE_INSI_REFERENCE") or "store").strip(),
            identity_stamp_seconds=float(os.environ.get("SOCLE_IDENTITY_STAMP_SECONDS") or 0),
            # set but empty turns the watcher off, as 0 does
            identity_watch_seconds=float(os.environ.get("SOCLE_IDENTITY_WATCH_SECONDS", "10") or 0),
            identity_report_seconds=float(
                os.environ.get("SOCLE_IDENTITY_REPORT_SECONDS", "10") or 0
            ),
            task_reminder_seconds=float(os.environ.get("SOCLE_TASK_REMINDER_SECONDS", "3600") or 0),
            psc_issuer=os.environ.get("SOCLE_PSC_ISSUER") or None,
            psc_client_id=os.environ.get("SOCLE_PSC_CLIENT_ID") or "socle",
            psc_client_secret=os.environ.get("SOCLE_PSC_CLIENT_SECRET") or None,
            psc_discovery_url=os.environ.get("SOCLE_PSC_DISCOVERY_URL") or None,
            psc_acr=os.environ.get("SOCLE_PSC_ACR") or "eidas1",
            psc_standin=_flag("SOCLE_PSC_STANDIN"),
            auth_request_lifetime=_int("SOCLE_AUTH_REQUEST_LIFETIME", 900),
            refresh_lifetime=_int("SOCLE_REFRESH_LIFETIME", 8 * 3600),
            auth_login_rate=_int("SOCLE_AUTH_LOGIN_RATE", 20),
            auth_token_rate=_int("SOCLE_AUTH_TOKEN_RATE", 300),
            jobs_in_serve=_bool("SOCLE_JOBS_IN_SERVE", True),
            job_concurrency=_int("SOCLE_JOB_CONCURRENCY", 2),
            job_lease_s=float(os.environ.get("SOCLE_JOB_LEASE_S") or 30),
            export_ttl_s=_int("SOCLE_EXPORT_TTL", 24 * 3600),
            export_file_bytes=_int("SOCLE_EXPORT_FILE_BYTES", 256 * 1024 * 1024),
            export_dir=_path("SOCLE_EXPORT_DIR"),
        )

    @property
    def issuer(self) -> str:
        return self.public_url

    @property
    def fhir_audience(self) -> str:
        return self.public_url + "/fhir"

    @classmethod
    def as_served(cls, data_dir: Path | str | None = None) -> Settings:
        """The settings of a data dir with the public URL its last `socle serve` announced,
        unless SOCLE_PUBLIC_URL says otherwise."""
        settings = cls.from_env(data_dir)
        served = settings.data_dir / PUBLIC_URL_FILE
        if os.environ.get("SOCLE_PUBLIC_URL") or not served.exists():
            return settings
        return replace(settings, public_url=served.read_text().strip().rstrip("/"))


# -- Subscriptions (socle/subscriptions/, docs/platform.md "Subscriptions") -------------------


def subscription_attempts() -> int:
    """``SOCLE_SUBSCRIPTION_ATTEMPTS``: deliveries tried (with back-off) before a subscription
    goes to ``error`` (default 5)."""
    return max(1, _int("SOCLE_SUBSCRIPTION_ATTEMPTS", 5))


def subscription_plain_http() -> bool:
    """``SOCLE_SUBSCRIPTION_PLAIN_HTTP``: allow ``http://`` rest-hook endpoints (default false:
    notifications leave over verified TLS only; a local test receiver needs it)."""
    return _bool("SOCLE_SUBSCRIPTION_PLAIN_HTTP", False)


def subscription_delivery_concurrency() -> int:
    """``SOCLE_SUBSCRIPTION_DELIVERY_CONCURRENCY``: delivery jobs run at once per worker, in slots
    of their own beside ``SOCLE_JOB_CONCURRENCY`` (default 4; each delivers up to 8
    subscriptions at once)."""
    return max(1, _int("SOCLE_SUBSCRIPTION_DELIVERY_CONCURRENCY", 4))


def subscription_allowed_hosts() -> tuple[str, ...]:
    """``SOCLE_SUBSCRIPTION_ALLOWED_HOSTS``: comma-separated host names, addresses or networks
    (CIDR) a rest-hook endpoint may reach although they are loopback, private, link-local or
    otherwise not public (default none: such endpoints are refused, an SSRF guard)."""
    raw = os.environ.get("SOCLE_SUBSCRIPTION_ALLOWED_HOSTS") or ""
    return tuple(h.strip().lower().strip("[]") for h in raw.split(",") if h.strip())


def subscription_events_keep_s() -> float:
    """``SOCLE_SUBSCRIPTION_EVENTS_KEEP_DAYS``: how long a delivered event stays readable by
    ``$events`` before ``subscriptions.prune`` deletes it (default 7; fractions allowed)."""
    raw = os.environ.get("SOCLE_SUBSCRIPTION_EVENTS_KEEP_DAYS")
    return max(0.0, float(raw) if raw else 7.0) * 86400
