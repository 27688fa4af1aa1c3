"""Settings from the environment (prefix ``TRIAGE_``), read once through :func:`get_settings`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Repository root when running from a checkout; models/ lives beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration. Every field can be set as ``TRIAGE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    models_dir: Path = Field(
        default=PROJECT_ROOT / "models",
        description="Model registry folder (versions + registry.json).",
    )
    model_path: Path | None = Field(
        default=None, description="Serve this model folder instead of the registry's current one."
    )
    routing_table: Path | None = Field(
        default=None, description="A user routing table (YAML) replacing the packaged default."
    )
    database_url: str = Field(
        default="sqlite:///var/triage.sqlite3", description="SQLAlchemy URL of the case store."
    )
    api_keys: list[str] = Field(
        default_factory=list, description="Keys accepted for write endpoints; none means refused."
    )
    mask_personal_data: bool = Field(
        default=True, description="Mask ID, phone and bank-card numbers in stored text."
    )
    max_text_length: int = Field(default=20_000, gt=0, description="Characters per petition.")
    max_batch_size: int = Field(default=1_000, gt=0, description="Items per batch request.")
    cors_origins: list[str] = Field(default_factory=list)
    segmenter: str = Field(default="auto", description="auto, rjieba or jieba.")
    similar_cases: int = Field(
        default=5, ge=0, description="How many similar earlier cases to return."
    )
    # --- HTTP service (triage/api) ---
    api_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="0 (default): classify single requests on the event loop, batching those "
        "that arrive together; N: on N worker threads. Batch requests use max(1, N) threads.",
    )
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Largest request body the API reads (413)."
    )
    log_requests: bool = Field(default=True, description="Log one masked line per API request.")
    keepalive_requests: int = Field(
        default=100,
        ge=0,
        description="Answer every N-th request of a keep-alive connection with 'Connection: "
        "close' (as nginx's keepalive_requests), so that clients reconnect and their "
        "connections spread over the worker processes; 0: never.",
    )
    fast_lane: bool = Field(
        default=True,
        description="Answer well-formed POST /v1/classify requests without FastAPI's routing, "
        "dependency and serialisation layers (the same validation, work and answer; "
        "triage.api.fastlane); false: every request goes through FastAPI.",
    )
    repeat_detection: bool = Field(
        default=True, description="Index stored cases at API start-up to find similar earlier ones."
    )
    repeat_sync_seconds: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="How often each API process indexes newly stored cases (its own and "
        "other processes').",
    )
    sqlite_checkpoint_seconds: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="How often each API process checkpoints a SQLite store's write-ahead log "
        "from a background thread, so that no request's commit does (a checkpoint syncs the "
        "disk and took 5-22 ms); 0: SQLite's automatic checkpoints inside commits.",
    )
    index_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="Added to the nice value (Linux CPU priority) of the background repeat "
        "indexer: it builds and merges index segments in bursts of up to ~100 ms of CPU, "
        "which at a low priority use idle CPU instead of delaying requests; 0: no change.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
