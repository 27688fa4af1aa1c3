"""Benchmark ``triage batch``: rows/s and peak memory on a large CSV (issue 6 figures).

Generates a CSV of ``--rows`` petitions in /tmp (texts sampled from ../shared/data when it
is there, so the text length distribution is the real one; otherwise synthetic texts with a
fitted log-normal length), runs ``python -m triage batch`` on it as a subprocess, and
measures wall time, rows/s and the peak memory of the whole process tree (the batch parent
and its workers), sampled from /proc every 0.1 s:

* ``peak_tree_rss_mib``: the largest sum of RSS over the tree (counts shared pages once
  per process, so it over-states fork-shared memory; this is the conservative figure);
* ``peak_tree_pss_mib``: the same with PSS (shared pages split between processes);
* ``max_process_rss_mib``: ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the largest process.

Targets: ≥ 2,000 rows/s on this 2-core machine, peak RSS < 1 GiB for 1,000,000 rows.

``--max-seconds S`` interrupts the run after S seconds (Ctrl-C, as a user would) and reports
the rows done, their rate and the memory peaks so far (``"completed": false``): memory is
flat once the first chunks are through, so a shorter run still shows the peak, and a
shared, busy machine does not have to run the whole million.

    python bench/bench_batch.py                      # 1,000,000 rows, every core
    python bench/bench_batch.py --rows 50000 --jobs 1 --json /tmp/b.json
    python bench/bench_batch.py --max-seconds 600    # stop after 10 minutes
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
TMP = Path(os.environ.get("TMPDIR", "/tmp")) / "triage_bench"
TARGET_ROWS_PER_S = 2_000
TARGET_PEAK_MIB = 1_024

# Synthetic fallback: phrases of real-looking petitions, lengths log-normal with the shared
# data's median (234 characters) and mean (427).
_PHRASES = (
    "我们是A3区某某街道某某村的村民，",
    "2019年村里的土地被征收用于修建物流园，",
    "至今征地补偿款还有一半没有发到农户手里，",
    "镇里说钱已经拨到村委会，村委会说没收到。",
    "小区物业费年年上涨，电梯长期停运无人维修，",
    "开发商延期交房已经两年，业主多次反映无果，",
    "有人在后山非法采砂采石，炸山的声音很大，房屋出现开裂，",
    "宅基地的不动产权证申请了一年还没有办下来，",
    "公司拖欠工资三个月，劳动监察部门一直没有处理，",
    "孩子上学的学位分配不公平，学校乱收费，",
    "工厂夜间排放废气，气味刺鼻，附近居民无法入睡，",
    "公交线路调整后出行很不方便，希望恢复原线路，",
    "医院收费不透明，医保报销比例和规定不一致，",
    "村干部私自把集体土地租给外地老板建厂房，",
    "规划公示的内容和实际建设的不一致，容积率被擅自调高，",
    "请求有关部门尽快核实处理，给我们一个答复。",
    "恳请领导重视，依法维护群众的合法权益。",
    "此事已经反映多次，至今没有结果，",
    "谢谢！",
)


def load_texts() -> tuple[list[tuple[str, str]], str]:
    """(title, text) pairs to sample from, and where they came from."""
    path = SHARED / "petitions13_train.csv"
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as fh:
            pairs = [(r.get("title") or "", r.get("text") or "") for r in csv.DictReader(fh)]
        return pairs, str(path.relative_to(ROOT.parent))
    rng = random.Random(13)
    pairs = []
    for _ in range(5_000):
        length = min(12_000, max(12, int(rng.lognormvariate(math.log(234), 1.097))))
        parts: list[str] = []
        while sum(map(len, parts)) < length:
            parts.append(rng.choice(_PHRASES))
        pairs.append(("", "".join(parts)[:length]))
    return pairs, "synthetic"


def make_input(rows: int, path: Path) -> dict[str, Any]:
    """Write the benchmark CSV (reused when it exists with the same row count)."""
    pairs, source = load_texts()
    meta_path = path.with_suffix(".meta.json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("rows") == rows and meta.get("source") == source:
            return meta
    rng = random.Random(2024)
    lengths = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "text", "received_at"])
        for i in range(rows):
            title, text = pairs[rng.randrange(len(pairs))]
            lengths.append(len(title) + len(text))
            w.writerow([f"b{i:07d}", title, text, f"20{18 + i % 3}-{1 + i % 12:02d}-15"])
    lengths.sort()
    meta = {
        "rows": rows,
        "source": source,
        "bytes": path.stat().st_size,
        "chars_mean": round(sum(lengths) / rows, 1),
        "chars_median": lengths[rows // 2],
        "chars_p90": lengths[int(rows * 0.9)],
    }
    meta_path.write_text(json.dumps(meta))
    return meta


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/*/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB (0, 0 when it has gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Samples the memory of a process tree until stopped; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = self.max_procs = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _tree(self.pid)
            mem = [_memory_kib(p) for p in pids]
            self.peak_rss = max(self.peak_rss, sum(m[0] for m in mem))
            self.peak_pss = max(self.peak_pss, sum(m[1] for m in mem))
            self.max_procs = max(self.max_procs, len(pids))
            self.stop.wait(self.interval)


def count_rows(path: Path) -> tuple[int, int]:
    """(rows, rows with pred_status=ok) of the output CSV."""
    rows = ok = 0
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        status = header.index("pred_status")
        for record in reader:
            rows += 1
            ok += record[status] == "ok"
    return rows, ok


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=0, help="0: every core (the default)")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--model", help="model folder (default: the current model)")
    parser.add_argument("--json", type=Path, default=TMP / "bench_batch.json")
    parser.add_argument("--keep", action="store_true", help="keep the output CSV")
    parser.add_argument(
        "--max-seconds", type=float, default=0, help="interrupt the run after this (0: never)"
    )
    args = parser.parse_args(argv)

    src = TMP / f"input_{args.rows}.csv"
    out = TMP / f"output_{args.rows}.csv"
    t0 = time.monotonic()
    meta = make_input(args.rows, src)
    print(f"input: {src} ({meta['bytes'] / 2**20:,.0f} MiB, texts from {meta['source']},"
          f" {time.monotonic() - t0:.0f} s)", file=sys.stderr)  # fmt: skip
    cmd = [sys.executable, "-m", "triage", "batch", "--input", str(src), "--output", str(out),
           "--chunk-size", str(args.chunk_size), "--no-progress"]  # fmt: skip
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        # A shell's `cmd &` starts us with SIGINT ignored, and the child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    interrupted = False
    try:
        stdout, _ = proc.communicate(timeout=args.max_seconds or None)
    except subprocess.TimeoutExpired:
        interrupted = True
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate()
    seconds = time.monotonic() - start
    sampler.stop.set()
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the batch and its reaped workers
    max_rss = usage.ru_maxrss  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    rows, ok = count_rows(out) if out.exists() else (0, 0)
    done = rows if interrupted else args.rows
    result = {
        "benchmark": "triage batch",
        "command": " ".join(cmd),
        "exit_code": proc.returncode,
        "completed": not interrupted,
        "rows_in": args.rows,
        "rows_out": rows,
        "rows_ok": ok,
        "seconds": round(seconds, 2),
        "rows_per_second": round(done / seconds, 1),
        # Load-independent: CPU time of the whole tree, and the rate it gives on idle cores.
        "cpu_seconds": round(cpu, 1),
        "cpu_ms_per_row": round(1000 * cpu / done, 3) if done else None,
        "idle_rows_per_second_estimate": round(done / cpu * len(os.sched_getaffinity(0)), 1)
        if cpu
        else None,
        "peak_tree_rss_mib": round(sampler.peak_rss / 1024, 1),
        "peak_tree_pss_mib": round(sampler.peak_pss / 1024, 1),
        "max_process_rss_mib": round(max_rss / 1024, 1),
        "processes": sampler.max_procs,
        "jobs": args.jobs or len(os.sched_getaffinity(0)),
        "cores": os.cpu_count(),
        "chunk_size": args.chunk_size,
        "input": meta,
        "targets": {"rows_per_second": TARGET_ROWS_PER_S, "peak_rss_mib": TARGET_PEAK_MIB},
        "meets_targets": {
            "rows_per_second": done / seconds >= TARGET_ROWS_PER_S,
            "peak_rss": sampler.peak_rss / 1024 < TARGET_PEAK_MIB,
        },
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "summary": stdout.strip().splitlines()[:3],
        "load_average": os.getloadavg(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if not args.keep and out.exists():
        out.unlink()
    if interrupted:
        return 0 if proc.returncode == 130 and rows > 0 else 1
    return 0 if proc.returncode in (0, 1) and rows == args.rows else 1


if __name__ == "__main__":
    sys.exit(main())
