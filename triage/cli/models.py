"""``triage models list | promote VERSION | rollback``: the versions in the model registry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``models`` subcommand and its actions."""
    p = subparsers.add_parser(
        "models",
        help="list, promote or roll back model versions",
        description="Every trained version stays in the registry folder with its metadata; "
        "one of them is current (used when no --model is given).",
    )
    p.add_argument(
        "--models-dir", metavar="DIR", help="registry folder (default: settings models_dir)"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="versions, oldest first; * marks the current one")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    pr = actions.add_parser("promote", help="make VERSION the current version")
    pr.add_argument("version", metavar="VERSION")
    actions.add_parser("rollback", help="make the previous current version current again")
    p.set_defaults(func=run)


def _macro_f1(meta: dict[str, Any]) -> str:
    """The macro-F1 recorded in a version's metadata (cross-validated or held-out), if any."""
    retrain = meta.get("retrain") or {}
    candidates = [meta.get("metrics"), meta.get("cv_metrics"), meta.get("cv"), meta]
    for metrics in candidates:
        if not isinstance(metrics, dict):
            continue
        for key in ("macro_f1", "cv_macro_f1", "f1_macro"):
            value = metrics.get(key)
            if isinstance(value, dict):  # {"mean": .., "std": ..}
                value = value.get("mean")
            if isinstance(value, (int, float)):
                return f"{value:.4f}"
    held = retrain.get("held_out_macro_f1")
    return f"{held:.4f}" if isinstance(held, (int, float)) else ""


def run(args: argparse.Namespace) -> int:
    """Carry out the action; 0 on success (NotFoundError → 2 via the CLI)."""
    from triage.registry import current_version, list_versions, promote, rollback
    from triage.settings import get_settings

    models_dir = Path(args.models_dir) if args.models_dir else get_settings().models_dir
    if args.action == "promote":
        previous = promote(args.version, models_dir)
        print(f"current version: {args.version} (was {previous})")
        return 0
    if args.action == "rollback":
        print(f"rolled back; current version: {rollback(models_dir)}")
        return 0
    versions = list_versions(models_dir)
    if args.json:
        print(json.dumps(versions, ensure_ascii=False, indent=2, default=str))
        return 0
    if not versions:
        print(f"no model versions in {models_dir}")
        return 0
    print(f"  {'version':<22}{'created_at':<27}{'labels':>6}  {'macro-F1':>8}  note")
    for v in versions:
        retrain = v.get("retrain") or {}
        note = ""
        if retrain:
            verdict = "promoted" if retrain.get("promoted") else "not promoted"
            against = retrain.get("champion") or "no champion"
            note = f"retrained ({verdict}; against {against})"
        mark = "* " if v.get("current") else "  "
        print(
            f"{mark}{v['version']:<22}{str(v.get('created_at') or '')[:25]:<27}"
            f"{len(v.get('labels') or []):>6}  {_macro_f1(v):>8}  {note}"
        )
    current = current_version(models_dir)
    if not any(v["version"] == current for v in versions):
        print(f"note: the current version {current!r} has no folder in {models_dir}")
    return 0
