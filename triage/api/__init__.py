"""The HTTP service (FastAPI): ``create_app()`` builds it, ``triage serve`` runs it."""

from __future__ import annotations

from .main import create_app

__all__ = ["create_app"]
