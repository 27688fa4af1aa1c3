"""triage: classify, route and prioritise Chinese petitions (信访事项)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
