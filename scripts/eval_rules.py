"""Figures for the routing override rules and the collective/extreme flags (issue 3).

Reads the annotated rows of ``../shared/data/petitions13_train.csv`` (``annotated=1``: the only
rows whose route/flag columns are known) and reports, on all rows, on the tuning part and on the
held-out part of a fixed split:

* override recall on rows whose ``route`` is not ``none``: the right route fired, and any rule
  fired; per route; the false-fire rate on rows with ``route=none`` (and which rule fired);
* precision / recall / F1 of the ``collective`` and ``extreme`` flags.

The project's written examples (``data/examples/written_land_*.csv``) are scored the same way as
a second, independent check. Usage::

    python scripts/eval_rules.py [CSV] [--json FILE] [--routing TABLE] [--misses] [--check]
                                 [--timing]

``--timing`` also measures the CPU time of ``decide`` + ``detect_flags`` per text (best of five
passes over the first 1,000 annotated texts), a figure that other processes on the machine
disturb far less than the wall-clock column of the table.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from triage.flags import detect_flags  # noqa: E402
from triage.normalize import normalize  # noqa: E402
from triage.routing import NO_ROUTE, RoutingTable, decide, load_table  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "petitions13_train.csv"
EXAMPLES = sorted((ROOT / "data" / "examples").glob("written_land_*.csv"))
#: Share of rows the lexicons were tuned on; the rest is held back. The split hashes the id, so
#: it is the same on every machine and run and does not depend on row order.
TUNE_SHARE = 0.7
TARGETS = {
    "override_recall": 0.8,  # right route fired, on rows whose route is not none
    "false_fire_rate": 0.02,  # any rule fired, on rows with route = none
    "collective_f1": 0.8,
    "extreme_recall": 0.9,
}
# Figures measure the rules alone: the model's label is not used (no default rule depends on
# it), so a better or worse classifier does not move these numbers.
LABEL = None


@dataclass(frozen=True)
class Row:
    id: str
    text: str  # normalize(title + "。" + text), as the pipeline passes it
    route: str
    collective: bool
    extreme: bool


def in_tuning_part(row_id: str) -> bool:
    """True for the ~70 % of ids used to tune the rules; False for the held-out ~30 %."""
    digest = int(hashlib.sha1(row_id.encode("utf-8")).hexdigest(), 16)
    return digest % 100 < TUNE_SHARE * 100


def _flag(value: str | None) -> bool:
    return (value or "").strip() in {"1", "1.0", "True", "true"}


def read_rows(path: Path, annotated_only: bool = True) -> list[Row]:
    """Rows with known route/flag columns (``annotated=1`` when the column exists)."""
    rows: list[Row] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for record in csv.DictReader(handle):
            if annotated_only and "annotated" in record and not _flag(record["annotated"]):
                continue
            title, text = record.get("title") or "", record.get("text") or ""
            rows.append(
                Row(
                    id=record["id"],
                    text=normalize(title + "。" + text),
                    route=(record.get("route") or "").strip() or NO_ROUTE,
                    collective=_flag(record.get("collective")),
                    extreme=_flag(record.get("extreme")),
                )
            )
    return rows


def _prf(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    counts = Counter(pairs)
    tp, fp, fn = counts[(True, True)], counts[(False, True)], counts[(True, False)]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def evaluate(rows: Sequence[Row], table: RoutingTable) -> dict[str, Any]:
    """All figures for ``rows``; ``misses`` lists the ids behind every error (for tuning)."""
    fired = [decide(table, row.text, LABEL).route for row in rows]
    raised = [{flag.id for flag in detect_flags(row.text, table)} for row in rows]
    start = time.perf_counter()  # a second pass, warm, for the per-text cost
    for row in rows:
        decide(table, row.text, LABEL)
        detect_flags(row.text, table)
    elapsed = time.perf_counter() - start

    per_route: dict[str, Counter[str]] = {}
    false_by_route: Counter[str] = Counter()
    misses: dict[str, list[str]] = {
        key: []
        for key in (
            "missed", "wrong_route", "false_fire",
            "collective_fp", "collective_fn", "extreme_fp", "extreme_fn",
        )
    }  # fmt: skip
    for row, route in zip(rows, fired, strict=True):
        if row.route == NO_ROUTE:
            if route != NO_ROUTE:
                false_by_route[route] += 1
                misses["false_fire"].append(f"{row.id}:{route}")
            continue
        stats = per_route.setdefault(row.route, Counter())
        stats["n"] += 1
        stats["fired"] += route != NO_ROUTE
        stats["right"] += route == row.route
        if route == NO_ROUTE:
            misses["missed"].append(f"{row.id}:{row.route}")
        elif route != row.route:
            misses["wrong_route"].append(f"{row.id}:{row.route}->{route}")
    for row, flags in zip(rows, raised, strict=True):
        for flag_id in ("collective", "extreme"):
            truth, got = getattr(row, flag_id), flag_id in flags
            if truth != got:
                misses[f"{flag_id}_{'fn' if truth else 'fp'}"].append(row.id)

    n_routed = sum(stats["n"] for stats in per_route.values())
    n_none = sum(row.route == NO_ROUTE for row in rows)
    flag_pairs = list(zip(rows, raised, strict=True))
    return {
        "rows": len(rows),
        "override": {
            "rows_with_route": n_routed,
            "recall_right_route": _ratio(sum(s["right"] for s in per_route.values()), n_routed),
            "recall_any_rule": _ratio(sum(s["fired"] for s in per_route.values()), n_routed),
            "rows_route_none": n_none,
            "false_fires": len(misses["false_fire"]),
            "false_fire_rate": _ratio(len(misses["false_fire"]), n_none),
            "false_fires_by_route": dict(sorted(false_by_route.items())),
            "per_route": {
                route: {
                    "n": s["n"],
                    "recall_right_route": s["right"] / s["n"],
                    "recall_any_rule": s["fired"] / s["n"],
                }
                for route, s in sorted(per_route.items())
            },
        },
        "collective": _prf((row.collective, "collective" in got) for row, got in flag_pairs),
        "extreme": _prf((row.extreme, "extreme" in got) for row, got in flag_pairs),
        "ms_per_text": 1000 * elapsed / len(rows) if rows else None,
        "mean_chars": sum(len(row.text) for row in rows) / len(rows) if rows else None,
        "misses": misses,
    }


def cpu_timing(
    rows: Sequence[Row], table: RoutingTable, limit: int = 1000, repeats: int = 5
) -> dict[str, float]:
    """CPU milliseconds per text of ``decide``, ``detect_flags`` and both (best of ``repeats``)."""
    texts = [row.text for row in rows[:limit]]
    if not texts:
        return {}
    steps = {
        "decide": lambda text: decide(table, text, LABEL),
        "detect_flags": lambda text: detect_flags(text, table),
        "both": lambda text: (decide(table, text, LABEL), detect_flags(text, table)),
    }
    for text in texts:  # warm up
        steps["both"](text)
    timing: dict[str, float] = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            for text in texts:
                step(text)
            best = min(best, time.process_time() - start)
        timing[f"{name}_ms"] = 1000 * best / len(texts)
    timing["texts"] = len(texts)
    timing["mean_chars"] = sum(map(len, texts)) / len(texts)
    return timing


def targets_met(figures: dict[str, Any]) -> dict[str, bool]:
    """Which issue-3 targets ``figures`` meets."""
    override = figures["override"]
    recall = override["recall_right_route"]
    false_rate = override["false_fire_rate"]
    return {
        "override_recall": recall is not None and recall >= TARGETS["override_recall"],
        "false_fire_rate": false_rate is not None and false_rate <= TARGETS["false_fire_rate"],
        "collective_f1": figures["collective"]["f1"] >= TARGETS["collective_f1"],
        "extreme_recall": figures["extreme"]["recall"] >= TARGETS["extreme_recall"],
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def render(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table with one column per evaluated set."""
    names = list(results)
    figs = [results[name] for name in names]
    width = max(16, *(len(name) + 2 for name in names))
    lines = ["".ljust(34) + "".join(name.rjust(width) for name in names)]

    def line(label: str, values: Iterable[str]) -> None:
        lines.append(label.ljust(34) + "".join(value.rjust(width) for value in values))

    def per_route(fig: dict[str, Any], route: str) -> str:
        stats = fig["override"]["per_route"].get(route)
        return f"({stats['n']}) {_pct(stats['recall_right_route'])}" if stats else "–"

    line("annotated rows", (str(f["rows"]) for f in figs))
    line("rows with a route ≠ none", (str(f["override"]["rows_with_route"]) for f in figs))
    line("override recall, right route", (_pct(f["override"]["recall_right_route"]) for f in figs))
    line("override recall, any rule", (_pct(f["override"]["recall_any_rule"]) for f in figs))
    for route in sorted({r for f in figs for r in f["override"]["per_route"]}):
        line(f"  {route} (n) right route", (per_route(f, route) for f in figs))
    line("rows with route = none", (str(f["override"]["rows_route_none"]) for f in figs))
    overrides = [f["override"] for f in figs]
    line(
        "false-fire rate (n)",
        (f"({o['false_fires']}) {_pct(o['false_fire_rate'])}" for o in overrides),
    )
    for flag in ("collective", "extreme"):
        line(f"{flag} positives", (str(f[flag]["positives"]) for f in figs))
        for key in ("precision", "recall", "f1"):
            line(f"  {flag} {key}", (_pct(f[flag][key]) for f in figs))
    line("ms per text (rules + flags)", (f"{f['ms_per_text']:.3f}" for f in figs))
    line("mean characters per text", (f"{f['mean_chars']:.0f}" for f in figs))
    return "\n".join(lines)


def run(csv_path: Path, table: RoutingTable) -> dict[str, dict[str, Any]]:
    """Figures on all annotated rows, the tuning and held-out parts, and the written examples."""
    rows = read_rows(csv_path)
    results = {
        "all": evaluate(rows, table),
        "tune (70%)": evaluate([r for r in rows if in_tuning_part(r.id)], table),
        "held-out (30%)": evaluate([r for r in rows if not in_tuning_part(r.id)], table),
    }
    written: list[Row] = []
    for path in EXAMPLES:
        part = read_rows(path, annotated_only=False)
        results[path.stem] = evaluate(part, table)
        written += part
    if len(EXAMPLES) > 1:
        results["written (all)"] = evaluate(written, table)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "csv", nargs="?", type=Path, default=DEFAULT_CSV, help=f"default: {DEFAULT_CSV}"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--routing", type=Path, help="routing table (default: packaged)")
    parser.add_argument(
        "--misses", action="store_true", help="print the ids behind errors of the tuning part"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless all targets are met on all rows"
    )
    parser.add_argument(
        "--timing", action="store_true", help="also measure CPU time per text (best of 5)"
    )
    args = parser.parse_args(argv)

    if not args.csv.is_file():
        print(
            f"eval_rules: {args.csv} not found. The figures need the shared data "
            "(../shared/data/petitions13_train.csv next to the repository); pass its path.",
            file=sys.stderr,
        )
        return 2
    table = load_table(args.routing)
    results = run(args.csv, table)
    print(render(results))
    met = {name: targets_met(results[name]) for name in ("all", "held-out (30%)")}
    print()
    for key, target in TARGETS.items():
        sign = "≤" if key == "false_fire_rate" else "≥"
        verdicts = ", ".join(f"{name}: {'met' if m[key] else 'NOT met'}" for name, m in met.items())
        print(f"target {key} {sign} {target} — {verdicts}")
    print("false fires by route (all rows):", results["all"]["override"]["false_fires_by_route"])
    timing: dict[str, float] = {}
    if args.timing:
        timing = cpu_timing(read_rows(args.csv), table)
        print(
            f"CPU per text (best of 5 over {timing['texts']:.0f} texts, "
            f"{timing['mean_chars']:.0f} characters on average): "
            f"decide {timing['decide_ms']:.3f} ms, "
            f"detect_flags {timing['detect_flags_ms']:.3f} ms, both {timing['both_ms']:.3f} ms"
        )
    if args.misses:
        # Only the tuning part: reading held-out errors would leak them into the rules.
        print("\nerrors on the tuning part:")
        for kind, ids in results["tune (70%)"]["misses"].items():
            print(f"  {kind} ({len(ids)}): {' '.join(ids)}")
    if args.json:
        report = {
            "csv": str(args.csv),
            "routing_table": table.source,
            "split": {"tune_share": TUNE_SHARE, "method": "int(sha1(id), 16) % 100 < 70 → tune"},
            "targets": TARGETS,
            "targets_met": met,
            "cpu_timing": timing,
            "results": {
                name: {key: value for key, value in figs.items() if key != "misses"}
                for name, figs in results.items()
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return 1 if args.check and not all(met["all"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
