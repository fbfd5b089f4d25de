"""The config's models: validation (pydantic), defaults and secret resolution.

Secrets are never inlined in the file: a credential is named by an environment variable (`*_env`) or a file
(`*_file`). They are resolved on demand (collect, `config check`) so that a reporting host needs no provider keys.
"""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from usagectl.errors import ConfigError
from usagectl.meters import BUILTIN_EVENT_METRICS as BUILTIN_METRICS
from usagectl.meters import MAX_METRIC_CHARS

PLAN_TIERS = ("starter", "pro", "elite")
PlanTier = Literal["starter", "pro", "elite"]
# \Z, not $: `$` also matches before a trailing newline and let "t00\n" through. Anchored both ends so that
# match, fullmatch and search all mean the whole string.
SLUG_BODY = r"[a-z0-9][a-z0-9_-]{0,62}"
SLUG_RE = re.compile(rf"\A{SLUG_BODY}\Z")
MAX_TENANT_NAME_CHARS = 200  # the tenants.name column
# C0/C1 controls (CR, LF, ESC, NUL...), the line and paragraph separators, and the bidi overrides and isolates
# that reorder what a terminal shows: refused in tenant names, neutralised on output (render.clean_text).
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Unit prices become integer pico-USD in SQL (pricing.to_picos): at most 12 decimals, below 2**63 picos.
PRICE_DECIMALS = 12
MAX_PRICE_PICOS = 2**63 - 1

ENV_CONFIG = "USAGECTL_CONFIG"
ENV_DATABASE_URL = "USAGECTL_DATABASE_URL"
ENV_DATA_DIR = "USAGECTL_DATA_DIR"
SYSTEM_CONFIG = Path("/etc/usagectl/config.toml")


def _to_decimal(value: Any) -> Any:
    # A TOML float has already lost exactness (0.1 is not 0.1); accept it only through its shortest repr,
    # which is what the author typed, and prefer strings in the file.
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return value
    return value


def _price_limits(value: Decimal) -> Decimal:
    # Checked here, not at rollup: there the same price was a bare ValueError/OverflowError naming nothing.
    if not value.is_finite():
        raise ValueError(f"{value} is not a price")
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if -exponent > PRICE_DECIMALS:
        raise ValueError(
            f"{value:f} has more than {PRICE_DECIMALS} decimal places (prices are exact to 1e-12 USD)"
        )
    if value * 10**PRICE_DECIMALS > MAX_PRICE_PICOS:
        raise ValueError(
            f"{value:f} is too large: prices must be below {Decimal(MAX_PRICE_PICOS).scaleb(-12)} USD"
        )
    return value


Price = Annotated[Decimal, BeforeValidator(_to_decimal), Field(ge=0), AfterValidator(_price_limits)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret lives. Exactly one of env / file."""

    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"

    def resolve(self, key: str) -> SecretStr:
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"{key}: environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            text = self.file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read secret file {self.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{key}: secret file {self.file} is not UTF-8 text") from None
        if not text:
            raise ConfigError(f"{key}: secret file {self.file} is empty")
        return SecretStr(text)


def _secret_ref(data: dict[str, Any], name: str) -> SecretRef | None:
    env = data.pop(f"{name}_env", None)
    file = data.pop(f"{name}_file", None)
    if name in data:
        raise ValueError(
            f'\'{name}\' must not hold a secret inline; use {name}_env = "VAR" or {name}_file = "/path"'
        )
    if env and file:
        raise ValueError(f"give one of {name}_env and {name}_file, not both")
    if env is None and file is None:
        return None
    return SecretRef(env=env, file=file)


class _WithSecrets(_Model):
    """Models whose TOML carries `<name>_env` / `<name>_file` pairs for the fields in SECRETS."""

    SECRETS: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _gather_secret_refs(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in cls.SECRETS:
            if isinstance(data.get(name), SecretRef):
                continue
            ref = _secret_ref(data, name)
            if ref is not None:
                data[name] = ref
        return data


# The drivers usagectl is built and tested with (store.engine maps the PostgreSQL spellings to psycopg 3).
_DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg")


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def database_url_problem(url: str) -> str | None:
    """Why `url` is not a database URL usagectl can use, or None. Never repeats a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
        port = u.port
    except (ArgumentError, ValueError):
        return f"{redact_url(url)!r} is not a valid database URL (sqlite:///PATH or postgresql://HOST/DB)"
    if u.drivername not in _DATABASE_DRIVERS:
        return f"unsupported database {u.drivername!r} (use sqlite:///PATH or postgresql://HOST/DB)"
    if port is not None and not 0 < port < 65536:
        return f"port {port} is out of range"
    return None


class DatabaseConfig(_Model):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _usable(cls, v: str | None) -> str | None:
        problem = None if v is None else database_url_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class ReportConfig(_Model):
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class CollectConfig(_Model):
    lookback_days: int = Field(default=2, ge=0, le=60)
    workers: int = Field(default=8, ge=1, le=256)


class RollupConfig(_Model):
    # A day is sealed by `usagectl rollup` once it is this many days old (0: only `usagectl seal` seals).
    seal_after_days: int = Field(default=35, ge=0, le=3660)


class ModelPrice(_Model):
    input: Price
    output: Price
    cached_input: Price | None = None
    # Input tokens written to the prompt cache (OpenAI input_cache_write_tokens); the input rate when absent.
    cache_write_input: Price | None = None


class PriceBook(_Model):
    """Unit prices in USD. A book applies from `effective_from` until the next book's date."""

    version: str = Field(min_length=1)
    effective_from: date
    sms: Price
    mms: Price
    voice_minute: Price
    email: Price
    ai_token: Price
    ai_models: dict[str, ModelPrice] = Field(default_factory=dict)


class UnitOverrides(_Model):
    sms: Price | None = None
    mms: Price | None = None
    voice_minute: Price | None = None
    email: Price | None = None
    ai_token: Price | None = None


class Allowances(_Model):
    """Monthly included usage; reports show usage against it."""

    sms: int | None = Field(default=None, ge=0)
    mms: int | None = Field(default=None, ge=0)
    voice_minutes: int | None = Field(default=None, ge=0)
    emails: int | None = Field(default=None, ge=0)
    ai_tokens: int | None = Field(default=None, ge=0)


class PlanConfig(_Model):
    overrides: UnitOverrides = Field(default_factory=UnitOverrides)
    included: Allowances = Field(default_factory=Allowances)
    monthly_budget: Price | None = None  # USD; `usagectl alerts` warns at the [alerts] thresholds of it
    # USD per calendar month, part of the plan charge (pricing.plan_charge) with the overage above `included`
    monthly_fee: Price | None = None


DEFAULT_BOOK = PriceBook(
    version="v1",
    effective_from=date(2000, 1, 1),
    sms=Decimal("0.014"),
    mms=Decimal("0.02"),
    voice_minute=Decimal("0.015"),
    email=Decimal("0.0005"),
    ai_token=Decimal("0.000002"),
)


class PricingConfig(_Model):
    books: list[PriceBook] = Field(default_factory=lambda: [DEFAULT_BOOK])

    @field_validator("books")
    @classmethod
    def _distinct(cls, books: list[PriceBook]) -> list[PriceBook]:
        if not books:
            raise ValueError("at least one price book is needed")
        seen_dates: set[date] = set()
        seen_versions: set[str] = set()
        for b in books:
            if b.effective_from in seen_dates:
                raise ValueError(f"two price books take effect on {b.effective_from}")
            if b.version in seen_versions:
                raise ValueError(f"price book version {b.version!r} appears twice")
            seen_dates.add(b.effective_from)
            seen_versions.add(b.version)
        return sorted(books, key=lambda b: b.effective_from)


def _http_url(v: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018  # a bad port raises only when read
    except ValueError:
        raise ValueError(f"{v!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{v!r} is not an http:// or https:// URL")
    return v


class _ProviderBase(_WithSecrets):
    base_url: str
    timeout: float = Field(default=30.0, gt=0, le=600, allow_inf_nan=False)
    max_retries: int = Field(default=4, ge=0, le=10)
    # Requests per second towards this provider, shared by all workers; 0 = unlimited.
    rate_limit: float = Field(default=0, ge=0, allow_inf_nan=False)
    # Requests in flight towards this provider, shared by all workers, whatever `[collect].workers` is: the
    # account's limits are shared with the platform's own traffic. Each provider's default and its reason are in
    # the README ("Sharing the provider accounts").
    max_concurrency: int = Field(default=5, ge=1, le=1000)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return _http_url(v)


class TwilioProvider(_ProviderBase):
    SECRETS: ClassVar[tuple[str, ...]] = ("auth_token",)
    base_url: str = "https://api.twilio.com"
    # A tenth of Twilio's default account limit: the platform's Messages.create calls keep the other 90.
    max_concurrency: int = Field(default=10, ge=1, le=1000)
    # The account's REST API concurrency limit (Twilio's default is 100; set it if Twilio raised yours). With the
    # Twilio-Concurrent-Requests answer header it tells how much of the account other traffic is using.
    account_concurrency_limit: int = Field(default=100, ge=1, le=100000)
    account_sid: str | None = None
    # When account_sid is an API key (SK...), the account it belongs to.
    parent_account_sid: str | None = None
    auth_token: SecretRef | None = None
    # How phone-number tenants' messages and calls are listed: "account" lists the platform account's whole day
    # once and attributes each record by number; "number" filters by each number (4 requests a number a day);
    # "auto" lists the account unless its day takes more pages than the per-number filters would cost.
    numbers_listing: Literal["auto", "account", "number"] = "auto"


class SendGridProvider(_ProviderBase):
    SECRETS: ClassVar[tuple[str, ...]] = ("api_key",)
    base_url: str = "https://api.sendgrid.com"
    api_key: SecretRef | None = None


class OpenAIProvider(_ProviderBase):
    SECRETS: ClassVar[tuple[str, ...]] = ("admin_key",)
    base_url: str = "https://api.openai.com"
    admin_key: SecretRef | None = None
    organization: str | None = None


class ProvidersConfig(_Model):
    twilio: TwilioProvider | None = None
    sendgrid: SendGridProvider | None = None
    openai: OpenAIProvider | None = None


class TenantTwilio(_WithSecrets):
    SECRETS: ClassVar[tuple[str, ...]] = ("auth_token",)
    subaccount_sid: str | None = None
    phone_numbers: list[str] = Field(default_factory=list)
    # Own credentials: the tenant's own account, polled with its own token.
    account_sid: str | None = None
    auth_token: SecretRef | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> TenantTwilio:
        own = self.account_sid is not None or self.auth_token is not None
        modes = [self.subaccount_sid is not None, bool(self.phone_numbers), own]
        if sum(modes) != 1:
            raise ValueError(
                "give exactly one of subaccount_sid, phone_numbers, or account_sid + auth_token_env"
            )
        if own and (self.account_sid is None or self.auth_token is None):
            raise ValueError("own credentials need both account_sid and auth_token_env (or auth_token_file)")
        for n in self.phone_numbers:
            if not re.fullmatch(r"\+[1-9]\d{6,14}", n):
                raise ValueError(f"phone number {n!r} is not in E.164 form (+15551234567)")
        return self

    @property
    def mode(self) -> Literal["subaccount", "numbers", "own"]:
        if self.subaccount_sid:
            return "subaccount"
        if self.phone_numbers:
            return "numbers"
        return "own"


class TenantSendGrid(_Model):
    subuser: str | None = None
    category: str | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> TenantSendGrid:
        if (self.subuser is None) == (self.category is None):
            raise ValueError("give exactly one of subuser and category")
        return self


class TenantOpenAI(_Model):
    project_ids: list[str] = Field(default_factory=list)
    ai_log: Path | None = None

    @model_validator(mode="after")
    def _something(self) -> TenantOpenAI:
        if not self.project_ids and self.ai_log is None:
            raise ValueError("give project_ids, ai_log, or both")
        return self


class TenantConfig(_Model):
    slug: str
    name: str | None = None
    plan: PlanTier = "starter"
    twilio: TenantTwilio | None = None
    sendgrid: TenantSendGrid | None = None
    openai: TenantOpenAI | None = None
    monthly_budget: Price | None = None  # USD; overrides the plan's monthly_budget for this tenant

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a valid slug (lower-case letters, digits, '-' and '_', 1-63 chars)"
            )
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v) > MAX_TENANT_NAME_CHARS:
            raise ValueError(f"is {len(v)} characters long; at most {MAX_TENANT_NAME_CHARS}")
        bad = CONTROL_CHARS.search(v)
        if bad is not None:
            raise ValueError(f"holds the control character U+{ord(bad.group()):04X}")
        return v

    @property
    def display_name(self) -> str:
        return self.name or self.slug


class EventsConfig(_Model):
    # Extra metrics accepted by record/ingest beyond jobs_executed and storage_bytes.
    metrics: dict[str, Literal["counter", "gauge"]] = Field(default_factory=dict)

    @field_validator("metrics")
    @classmethod
    def _not_builtin(cls, metrics: dict[str, str]) -> dict[str, str]:
        for name, kind in metrics.items():
            builtin = BUILTIN_METRICS.get(name)
            if builtin is not None and builtin != kind:
                raise ValueError(f"{name} is a built-in {builtin}, it cannot be a {kind}")
            if not name or len(name) > MAX_METRIC_CHARS:
                raise ValueError(f"metric name {name!r} must be 1-{MAX_METRIC_CHARS} characters")
        return metrics


JwtAlgorithm = Literal["HS256", "RS256", "ES256"]


class ServeAuthConfig(_WithSecrets):
    """[serve.auth]: how `usagectl serve` authenticates callers. "tokens": tokens made by `usagectl token
    create`. "jwt": the host platform's JWTs, verified with one fixed algorithm (never the token's own choice)."""

    SECRETS: ClassVar[tuple[str, ...]] = ("jwt_secret",)

    mode: Literal["tokens", "jwt"] = "tokens"
    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_secret: SecretRef | None = None  # HS256: jwt_secret_env / jwt_secret_file
    jwt_public_key_file: Path | None = None  # RS256/ES256: a PEM public key
    jwt_jwks_file: Path | None = None  # RS256/ES256: a JWKS document (keys chosen by `kid`)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=3600)
    tenant_claim: str = Field(default="tenant", min_length=1)
    role_claim: str = Field(default="role", min_length=1)
    tenant_admin_roles: list[str] = Field(default_factory=lambda: ["tenant_admin"], min_length=1)
    root_admin_roles: list[str] = Field(default_factory=lambda: ["root_admin"], min_length=1)
    # The pages (/admin/...) in JWT mode: the cookie holding the platform's JWT (besides Authorization: Bearer).
    jwt_cookie: str | None = Field(default=None, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

    @model_validator(mode="after")
    def _keys_for_mode(self) -> ServeAuthConfig:
        if self.mode != "jwt":
            return self
        if self.jwt_algorithm == "HS256":
            if self.jwt_secret is None:
                raise ValueError("mode 'jwt' with HS256 needs jwt_secret_env or jwt_secret_file")
            if self.jwt_public_key_file or self.jwt_jwks_file:
                raise ValueError("HS256 takes jwt_secret_*, not jwt_public_key_file / jwt_jwks_file")
        else:
            if (self.jwt_public_key_file is None) == (self.jwt_jwks_file is None):
                raise ValueError(
                    f"{self.jwt_algorithm} needs exactly one of jwt_public_key_file and jwt_jwks_file"
                )
            if self.jwt_secret is not None:
                raise ValueError(f"{self.jwt_algorithm} verifies with a public key, not jwt_secret_*")
        if set(self.tenant_admin_roles) & set(self.root_admin_roles):
            raise ValueError("a role cannot be in both tenant_admin_roles and root_admin_roles")
        return self


MIN_SESSION_SECRET_BYTES = 16


class ServeConfig(_WithSecrets):
    SECRETS: ClassVar[tuple[str, ...]] = ("session_secret",)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    access_log: bool = True
    # CSP frame-ancestors of the pages: "'none'" forbids framing; the host platform's origin lets it embed them.
    frame_ancestors: str = Field(default="'none'", pattern=r"^[^;,\r\n\x00-\x1f\x7f]+$", max_length=1000)
    # Signs the pages' session cookies (token mode). Replicas behind one load balancer need the same secret;
    # None: a random one per process (sessions end on restart and do not cross replicas or workers).
    session_secret: SecretRef | None = None
    session_hours: int = Field(default=8, ge=1, le=24 * 30)
    # POST /api/events: a larger body is refused (413) before it is read whole; so is a body of more events.
    events_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    events_max_per_request: int = Field(default=10_000, ge=1, le=1_000_000)
    auth: ServeAuthConfig = Field(default_factory=ServeAuthConfig)

    def session_secret_bytes(self) -> bytes | None:
        """The configured session secret (None: none configured); a ConfigError when it cannot be read or is
        shorter than MIN_SESSION_SECRET_BYTES. `config check` and `usagectl serve` both ask this."""
        if self.session_secret is None:
            return None
        value = self.session_secret.resolve("serve.session_secret").get_secret_value().encode()
        if len(value) < MIN_SESSION_SECRET_BYTES:
            where = self.session_secret.describe()
            raise ConfigError(
                f"serve.session_secret: {where} holds {len(value)} bytes; use at least {MIN_SESSION_SECRET_BYTES}"
            )
        return value


class AlertWebhookConfig(_WithSecrets):
    """[alerts.webhook]: where `usagectl alerts` POSTs each alert, signed with HMAC-SHA256 (docs/alerts.md)."""

    SECRETS: ClassVar[tuple[str, ...]] = ("secret",)

    url: Annotated[str, AfterValidator(_http_url)]
    secret: SecretRef | None = None  # secret_env / secret_file: the HMAC key
    timeout: float = Field(default=10.0, gt=0, le=120, allow_inf_nan=False)
    max_retries: int = Field(default=3, ge=0, le=10)
    # The first retry waits this long, each next one twice as long (within one run).
    backoff_seconds: float = Field(default=0.5, ge=0, le=30, allow_inf_nan=False)

    @model_validator(mode="after")
    def _signed(self) -> AlertWebhookConfig:
        if self.secret is None:
            raise ValueError("the webhook needs secret_env or secret_file (its deliveries are signed)")
        return self


def _thresholds(values: list[Decimal]) -> list[Decimal]:
    if not values:
        raise ValueError("give at least one threshold (percent), e.g. [80, 95, 100]")
    for v in values:
        if not v.is_finite() or not 0 < v <= 1000:
            raise ValueError(f"{v} is not a percentage between 0 (excluded) and 1000")
        exponent = v.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise ValueError(f"{v} has more than 2 decimal places")
    # One spelling per value (80, 80.0 and "8E+1" are one threshold): alerts are keyed by this text.
    normalized = [Decimal(f"{v.normalize():f}") for v in values]
    if len(set(normalized)) != len(normalized):
        raise ValueError("a threshold appears twice")
    return sorted(normalized)


class AlertsConfig(_Model):
    """[alerts]: thresholds, in percent of each plan allowance and of the monthly budget."""

    thresholds: Annotated[
        list[Annotated[Decimal, BeforeValidator(_to_decimal)]], AfterValidator(_thresholds)
    ] = Field(default_factory=lambda: [Decimal(80), Decimal(95), Decimal(100)])
    webhook: AlertWebhookConfig | None = None


DIRECTORY_FIELDS = (
    "slug",
    "name",
    "plan",
    "twilio_subaccount_sid",
    "twilio_account_sid",
    "twilio_auth_token_env",
    "twilio_auth_token_file",
    "phone_numbers",
    "sendgrid_subuser",
    "sendgrid_category",
    "openai_project_ids",
    "monthly_budget",
    "active",
)


class DirectoryConfig(_WithSecrets):
    """[directory]: where `usagectl directory sync` reads the platform's tenants (README, Tenants from the
    platform). kind "sql": `url` a database URL (password by password_env / password_file) and `query`; kind
    "http": `url` a JSON endpoint (token_env / token_file, sent as a bearer token), paged by `next_key`; kind
    "file": `path` to JSON, JSONL or CSV."""

    SECRETS: ClassVar[tuple[str, ...]] = ("password", "token")

    kind: Literal["sql", "http", "file"]
    url: str | None = None
    password: SecretRef | None = None
    query: str | None = None
    token: SecretRef | None = None
    items_key: str = Field(default="tenants", min_length=1)
    next_key: str = Field(default="next", min_length=1)
    timeout: float = Field(default=30.0, gt=0, le=600, allow_inf_nan=False)
    path: Path | None = None
    format: Literal["json", "jsonl", "csv"] | None = None  # by default from the file's extension
    list_separator: str = Field(default=",", min_length=1)
    # A tenant field -> the source's name for it, where they differ (the query's column, the JSON key).
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if key not in DIRECTORY_FIELDS:
                raise ValueError(f"unknown tenant field {key!r} (one of {', '.join(DIRECTORY_FIELDS)})")
        return v

    @model_validator(mode="after")
    def _for_kind(self) -> DirectoryConfig:
        if self.kind == "sql":
            if not self.url or not self.query:
                raise ValueError('kind "sql" needs url and query')
            problem = database_url_problem(self.url)
            if problem:
                raise ValueError(f"url: {problem}")
            from sqlalchemy.engine import make_url

            if make_url(self.url).password is not None:
                raise ValueError("url must not hold a password; use password_env or password_file")
        elif self.kind == "http":
            if not self.url:
                raise ValueError('kind "http" needs url')
            _http_url(self.url)
        elif self.path is None:
            raise ValueError('kind "file" needs path')
        return self


class Config(_Model):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    rollup: RollupConfig = Field(default_factory=RollupConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    plans: dict[PlanTier, PlanConfig] = Field(default_factory=dict)
    providers: ProvidersConfig = Field(default_factory=ProvidersConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    directory: DirectoryConfig | None = None
    tenants: list[TenantConfig] = Field(default_factory=list)

    # Where the config came from (None: built-in defaults). Not part of the TOML.
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("tenants")
    @classmethod
    def _unique_slugs(cls, tenants: list[TenantConfig]) -> list[TenantConfig]:
        seen: set[str] = set()
        for t in tenants:
            if t.slug in seen:
                raise ValueError(f"tenant slug {t.slug!r} appears more than once")
            seen.add(t.slug)
        return tenants

    def where(self) -> str:
        """A prefix for errors about this config: its file, if it came from one."""
        return f"{self.source}: " if self.source else ""

    def plan(self, tier: str) -> PlanConfig:
        found = self.plans.get(tier)  # type: ignore[call-overload]
        return found if isinstance(found, PlanConfig) else PlanConfig()

    def tenant(self, slug: str) -> TenantConfig | None:
        return next((t for t in self.tenants if t.slug == slug), None)

    def database_url(self) -> str:
        """Precedence: $USAGECTL_DATABASE_URL, then [database].url, then the SQLite file in the data dir."""
        env = os.environ.get(ENV_DATABASE_URL)
        if env:
            problem = database_url_problem(env)
            if problem:
                raise ConfigError(f"${ENV_DATABASE_URL}: {problem}")
            return env
        if self.database.url:
            return self.database.url
        return f"sqlite:///{default_data_dir() / 'usage.db'}"

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """Every configured secret, with the config key that names it."""
        refs: list[tuple[str, SecretRef]] = []
        p = self.providers
        if p.twilio and p.twilio.auth_token:
            refs.append(("providers.twilio.auth_token", p.twilio.auth_token))
        if p.sendgrid and p.sendgrid.api_key:
            refs.append(("providers.sendgrid.api_key", p.sendgrid.api_key))
        if p.openai and p.openai.admin_key:
            refs.append(("providers.openai.admin_key", p.openai.admin_key))
        d = self.directory
        if d is not None and d.password:
            refs.append(("directory.password", d.password))
        if d is not None and d.token:
            refs.append(("directory.token", d.token))
        for i, t in enumerate(self.tenants):
            if t.twilio and t.twilio.auth_token:
                refs.append((f"tenants[{i}].twilio.auth_token", t.twilio.auth_token))
        if self.serve.session_secret:
            refs.append(("serve.session_secret", self.serve.session_secret))
        if self.serve.auth.jwt_secret:
            refs.append(("serve.auth.jwt_secret", self.serve.auth.jwt_secret))
        if self.alerts.webhook and self.alerts.webhook.secret:
            refs.append(("alerts.webhook.secret", self.alerts.webhook.secret))
        return refs

    def resolve_secrets(self) -> dict[str, SecretStr]:
        """Read every secret. Every one that cannot be read is reported, in one ConfigError with a line each
        (naming its key), so a fresh host's setup is not found out one rerun at a time."""
        where = f"{self.source}: " if self.source else ""
        out: dict[str, SecretStr] = {}
        problems: list[str] = []
        for key, ref in self.secret_refs():
            try:
                out[key] = ref.resolve(key)
                if key == "serve.session_secret":
                    self.serve.session_secret_bytes()  # also long enough, as `usagectl serve` wants it
            except ConfigError as exc:
                problems.append(f"{where}{exc}")
        if len(problems) == 1:
            raise ConfigError(problems[0])
        if problems:
            raise ConfigError(
                f"{len(problems)} secrets cannot be read:" + "".join(f"\n  {p}" for p in problems)
            )
        return out


def default_data_dir() -> Path:
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("usagectl", appauthor=False))
