"""Built-in fake Twilio, SendGrid and OpenAI servers on 127.0.0.1, for `usagectl demo` and the tests.

    with Sandbox() as sb:
        cfg = sb.config(demo_tenants())   # providers point at the sandbox, credentials in sandbox files
        ...

No network beyond loopback. Usage is deterministic synthetic data unless a test scripts it through `sb.world`;
faults are injected per provider with `sb.twilio.fault("429", match="AC123")` and the like. A Twilio account-wide
concurrency limit (`Sandbox(twilio_concurrency_limit=20)`) and the platform's own sending on that account
(`with sb.platform(rate=50): ...`) show whether a collect crowds the platform out.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from usagectl.config import (
    Config,
    OpenAIProvider,
    ProvidersConfig,
    SecretRef,
    SendGridProvider,
    TenantConfig,
    TenantOpenAI,
    TenantSendGrid,
    TenantTwilio,
    TwilioProvider,
)
from usagectl.sandbox.data import Call, Message, ModelUsage, World
from usagectl.sandbox.platform import PlatformTraffic
from usagectl.sandbox.servers import (
    FAULT_KINDS,
    OpenAIServer,
    ProviderServer,
    SendGridServer,
    TwilioAccounts,
    TwilioServer,
)

__all__ = [
    "FAULT_KINDS",
    "Call",
    "Message",
    "ModelUsage",
    "PlatformTraffic",
    "Sandbox",
    "World",
    "demo_tenants",
    "tenants_of_every_mode",
    "twilio_sid",
]


def twilio_sid(prefix: str, name: str) -> str:
    """A stable, well-formed Twilio SID (prefix + 32 hex digits) for a name."""
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:32]


class Sandbox:
    """Starts the three servers on enter, stops them on exit. Credentials are random per sandbox."""

    def __init__(
        self,
        *,
        seed: int = 0,
        synthetic: bool = True,
        latency: float = 0.0,
        page_size_cap: int | None = None,
        port: int = 0,
        twilio_concurrency_limit: int | None = None,
    ) -> None:
        """`port`: 0 for ephemeral ports, else Twilio on `port`, SendGrid on `port + 1`, OpenAI on `port + 2`."""
        self.world = World(seed=seed, synthetic=synthetic)
        self.twilio_accounts = TwilioAccounts(twilio_sid("AC", f"platform-{seed}"), secrets.token_hex(16))
        self.sendgrid_key = "SG." + secrets.token_urlsafe(22) + "." + secrets.token_urlsafe(43)
        self.openai_key = "sk-admin-" + secrets.token_urlsafe(40)
        kw: dict[str, Any] = {"latency": latency, "page_size_cap": page_size_cap}
        self.twilio = TwilioServer(
            self.world, self.twilio_accounts, concurrency_limit=twilio_concurrency_limit, **kw
        )
        self.sendgrid = SendGridServer(self.world, self.sendgrid_key, **kw)
        self.openai = OpenAIServer(self.world, self.openai_key, **kw)
        if port:
            for offset, server in enumerate(self.servers):
                server.port = port + offset
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def servers(self) -> tuple[ProviderServer, ...]:
        return (self.twilio, self.sendgrid, self.openai)

    def __enter__(self) -> Sandbox:
        self._tmp = tempfile.TemporaryDirectory(prefix="usagectl-sandbox-")
        started: list[ProviderServer] = []
        try:
            for s in self.servers:
                s.start()
                started.append(s)
        except BaseException:
            for s in started:
                s.stop()
            self._tmp.cleanup()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for s in self.servers:
            s.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def folder(self) -> Path:
        assert self._tmp is not None, "use the sandbox as a context manager"
        return Path(self._tmp.name)

    def platform(self, *, rate: float, senders: int = 4) -> PlatformTraffic:
        """The platform sending SMS on its Twilio account at `rate` per second (start it, or use it in `with`)."""
        a = self.twilio_accounts
        return PlatformTraffic(self.twilio.url, a.master_sid, a.master_token, rate=rate, senders=senders)

    def secret_file(self, name: str, value: str) -> SecretRef:
        path = self.folder / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
        return SecretRef(file=path)

    def own_account(self, account_sid: str) -> SecretRef:
        """Register a tenant's own Twilio account with a fresh token; returns the reference to that token."""
        token = secrets.token_hex(16)
        self.twilio_accounts.own[account_sid] = token
        return self.secret_file(f"twilio-{account_sid}.token", token)

    def providers(self, **overrides: Any) -> ProvidersConfig:
        """Provider settings pointing at this sandbox; `overrides` apply to all three (e.g. max_retries=1)."""
        return ProvidersConfig(
            twilio=TwilioProvider(
                base_url=self.twilio.url,
                account_sid=self.twilio_accounts.master_sid,
                auth_token=self.secret_file("twilio.token", self.twilio_accounts.master_token),
                **overrides,
            ),
            sendgrid=SendGridProvider(
                base_url=self.sendgrid.url,
                api_key=self.secret_file("sendgrid.key", self.sendgrid_key),
                **overrides,
            ),
            openai=OpenAIProvider(
                base_url=self.openai.url,
                admin_key=self.secret_file("openai.key", self.openai_key),
                **overrides,
            ),
        )

    def config(self, tenants: list[TenantConfig], **provider_overrides: Any) -> Config:
        """A config whose providers are this sandbox. Tenants with their own Twilio credentials get an account
        registered here, with the token in a sandbox file."""
        wired = []
        for t in tenants:
            if t.twilio is not None and t.twilio.mode == "numbers":
                # The platform account's own numbers: an account-wide listing carries their traffic.
                self.world.add_account_numbers(self.twilio_accounts.master_sid, t.twilio.phone_numbers)
            if t.twilio is not None and t.twilio.mode == "own":
                assert t.twilio.account_sid is not None
                twilio = t.twilio.model_copy(update={"auth_token": self.own_account(t.twilio.account_sid)})
                t = t.model_copy(update={"twilio": twilio})
            wired.append(t)
        return Config(providers=self.providers(**provider_overrides), tenants=wired)

    def toml(self, cfg: Config, database_url: str | None = None) -> str:
        """The config as a TOML file (for running the CLI in a subprocess against this sandbox)."""
        import tomli_w

        data = cfg.model_dump(mode="json", exclude_none=True, exclude={"pricing"})
        for section in data.get("providers", {}).values():
            _flatten_secret(section)
        for t in data.get("tenants", []):
            if "twilio" in t:
                _flatten_secret(t["twilio"])
        if database_url:
            data["database"] = {"url": database_url}
        return tomli_w.dumps(data)


def _flatten_secret(section: dict[str, Any]) -> None:
    for key in ("auth_token", "api_key", "admin_key"):
        ref = section.pop(key, None)
        if isinstance(ref, dict):
            for kind in ("env", "file"):
                if ref.get(kind):
                    section[f"{key}_{kind}"] = ref[kind]


def demo_tenants() -> list[TenantConfig]:
    """Three sample tenants, one per plan tier, one per Twilio attribution mode."""
    placeholder = SecretRef(env="USAGECTL_DEMO_UNUSED")  # replaced by Sandbox.config
    return [
        TenantConfig(
            slug="acme",
            name="Acme Dental",
            plan="pro",
            twilio=TenantTwilio(subaccount_sid=twilio_sid("AC", "acme")),
            sendgrid=TenantSendGrid(subuser="acme"),
            openai=TenantOpenAI(project_ids=["proj_acme"]),
        ),
        TenantConfig(
            slug="globex",
            name="Globex Logistics",
            plan="elite",
            twilio=TenantTwilio(account_sid=twilio_sid("AC", "globex-own"), auth_token=placeholder),
            sendgrid=TenantSendGrid(subuser="globex"),
            openai=TenantOpenAI(project_ids=["proj_globex_support", "proj_globex_sales"]),
        ),
        TenantConfig(
            slug="initech",
            name="Initech Plumbing",
            plan="starter",
            twilio=TenantTwilio(phone_numbers=["+15005550006", "+15005550010"]),
            sendgrid=TenantSendGrid(category="tenant-initech"),
        ),
    ]


def tenants_of_every_mode(n: int, *, sendgrid_categories: bool = True) -> list[TenantConfig]:
    """n tenants cycling through every attribution: Twilio subaccount / own account / phone numbers, SendGrid
    subuser (every other tenant by category instead, unless `sendgrid_categories` is False), OpenAI projects;
    plans cycle starter / pro / elite. For tests and benchmarks at scale."""
    placeholder = SecretRef(env="UNUSED")  # replaced by Sandbox.config
    out = []
    for i in range(n):
        slug = f"t{i:05d}"
        mode = i % 3
        if mode == 0:
            tw = TenantTwilio(subaccount_sid=twilio_sid("AC", slug))
        elif mode == 1:
            tw = TenantTwilio(account_sid=twilio_sid("AC", "own" + slug), auth_token=placeholder)
        else:
            tw = TenantTwilio(phone_numbers=[f"+1500{i:07d}"])
        by_category = sendgrid_categories and i % 2 == 0
        sg = TenantSendGrid(category=f"tenant-{slug}") if by_category else TenantSendGrid(subuser=slug)
        out.append(
            TenantConfig(
                slug=slug,
                plan=("starter", "pro", "elite")[mode],
                twilio=tw,
                sendgrid=sg,
                openai=TenantOpenAI(project_ids=[f"proj_{slug}"]),
            )
        )
    return out
