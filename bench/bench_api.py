"""Load benchmark of ``POST /v1/classify``: a real server process, an async load generator.

Starts ``serve.py`` on a free loopback port (a fresh SQLite store in a temporary folder, the
registry's model unless ``--model``), waits for ``/healthz``, then drives it from this process
with ``--concurrency`` clients for ``--duration`` seconds, each sending a 300-character
petition.

What is sent (``--texts-mode``): by default (``whole``, as in sessions 1 and 2) whole real
petitions from ``../shared/data``, chosen at random from the ~4,100 of 300+ characters, so that
after the first pass nearly every request repeats an earlier one and finds five similar cases
(the hard case for repeat detection, the easy one for caches); ``mixed`` sends a new petition
dealt from real sentences for every request except ``--repeat-share`` (10 %) of them, which
resend one sent earlier. Without ``../shared``, sentences of ``data/examples``.

By default the offered load is a fixed rate (``--rate 300`` requests/s spread over the
clients, each client sending on a schedule); ``--rate 0`` sends as fast as the server answers
(closed loop) to find the saturation throughput. Latency is measured per request from send to
answer; the "corrected" p99 counts from the scheduled send time, so a server that falls behind
cannot hide its queue (coordinated omission). The client is a minimal asyncio HTTP/1.1
keep-alive client (``--client raw``) or httpx's AsyncClient (``--client httpx``).

    python bench/bench_api.py --workers 2          # 60 s, 32 clients, 300 req/s
    python bench/bench_api.py --workers 2 --texts-mode mixed
    python bench/bench_api.py --rate 0 --duration 30 --json
    python bench/bench_api.py --url http://127.0.0.1:8000   # an already running server
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "data" / "examples").glob("*.csv"))
#: Real petitions (never committed); used when present, for a realistic text distribution.
SHARED_CSVS = sorted((ROOT.parent / "shared" / "data").glob("*.csv"))


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds, send -> answer
    corrected: list[float] = field(default_factory=list)  # seconds, schedule -> answer
    sent: list[float] = field(default_factory=list)  # seconds after the warm-up, per latency
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def real_petitions(paths: list[Path], length: int) -> list[str]:
    """Distinct texts of at least ``length`` characters from CSV files, cut to ``length``."""
    seen: dict[str, None] = {}
    for path in paths:
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                text = (row.get("text") or "").replace("_x000D_", "").strip()
                if len(text) >= length:
                    seen.setdefault(text[:length])
    texts = list(seen)
    random.Random(7).shuffle(texts)
    return texts


def _sentences(paths: list[Path]) -> list[str]:
    out: list[str] = []
    for path in paths:
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                text = (row.get("text") or "").replace("_x000D_", "")
                parts = re.split(r"(?<=[。！？!?；;])", text)
                out.extend(p.strip() for p in parts if len(p.strip()) >= 8)
    return out


def petitions(
    length: int, count: int = 20_000, seed: int = 7, paths: list[Path] | None = None
) -> list[str]:
    """``count`` distinct petitions of exactly ``length`` characters.

    Each is a random run of sentences from the CSV files ``paths`` (default: data/examples,
    written by the project), so the vocabulary and the sentences are real but no two
    petitions are the same letter.
    """
    sentences = list(dict.fromkeys(_sentences(paths or EXAMPLES)))
    if not sentences:
        sentences = ["我们村的土地被征收了，征地补偿款一直没有发放，请求有关部门核查处理。"]
    rng = random.Random(seed)
    # Dealt without replacement (reshuffled only when used up): two petitions then share no
    # sentence, as two letters from different people do not. Drawn with replacement, they
    # share rare sentences, and every query finds candidates to verify that real ones lack.
    deck: list[str] = []
    out: dict[str, None] = {}
    while len(out) < count:
        text = ""
        while len(text) < length:
            if not deck:
                deck = sentences[:]
                rng.shuffle(deck)
            text += deck.pop()
        out.setdefault(text[:length])
    return list(out)


class Traffic:
    """What the clients send, request after request.

    ``repeat_share`` of the requests resend a petition already sent in this run (a repeat
    petition, which the server finds among the similar earlier cases); the others send the
    next new petition. Intake traffic is mostly new letters: re-sending a small pool over and
    over would make nearly every request a repeat (``--texts-mode whole`` does that on
    purpose, as a stress test of repeat detection).
    """

    def __init__(self, bodies: list[bytes], repeat_share: float | None, seed: int = 11) -> None:
        self.bodies = bodies
        self.repeat_share = repeat_share  # None: any body at random, each time
        self.rng = random.Random(seed)
        self.sent = 0

    def next(self) -> bytes:
        if self.repeat_share is None:
            return self.rng.choice(self.bodies)
        if self.sent and self.rng.random() < self.repeat_share:
            return self.bodies[self.rng.randrange(min(self.sent, len(self.bodies)))]
        body = self.bodies[self.sent % len(self.bodies)]
        self.sent += 1
        return body


def _kernels_built() -> bool:
    """Whether ``triage._kernels`` imports from this checkout (the server's code)."""
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import triage._kernels"
    return (
        subprocess.run([sys.executable, "-c", probe, str(ROOT)], capture_output=True).returncode
        == 0
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "TRIAGE_DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "TRIAGE_LOG_REQUESTS": "false" if args.quiet_server else "true",
    }
    if args.threads is not None:
        env["TRIAGE_API_THREADS"] = str(args.threads)
    cmd = [sys.executable, str(ROOT / "serve.py"), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(args.workers)]
    if args.model:
        cmd += ["--model", str(args.model)]
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{_tail(workdir / 'server.log')}")
        try:
            r = httpx.get(f"{base_url}/healthz", timeout=2)
            if r.status_code == 200:
                return proc, base_url
            if time.monotonic() > deadline:
                raise SystemExit(f"server is not healthy: {r.text}")
        except httpx.TransportError:
            if time.monotonic() > deadline:
                log_tail = _tail(workdir / "server.log")
                raise SystemExit(f"server did not start:\n{log_tail}") from None
        time.sleep(0.1)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:]


def speed_probe() -> dict[str, float]:
    """CPU milliseconds of fixed work, best of three: interpreter and numpy work that fits
    in cache (about 13 ms on the development machine at its usual speed) and random reads
    from a 128 MB array (about 16 ms). Higher figures mean a slower machine (a shared VM's
    cores and memory vary from hour to hour), whose latencies are not comparable."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.integers(0, 1 << 30, 200_000)
    big = np.arange(1 << 25, dtype=np.int32)
    where = rng.integers(0, len(big), 1_000_000)
    compute = memory = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        total = 0
        for i in range(200_000):
            total += i * i
        np.sort(data)
        t1 = time.process_time()
        big[where].sum()
        t2 = time.process_time()
        compute, memory = min(compute, t1 - t0), min(memory, t2 - t1)
    return {"compute_ms": round(compute * 1000, 1), "memory_ms": round(memory * 1000, 1)}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its live children (Linux /proc), else None.

    uvicorn with ``--workers N`` runs the workers as children of a supervisor process.
    """

    def read(p: int | str) -> tuple[int, float] | None:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[1]), sum(int(x) for x in fields[11:15]) / ticks  # ppid, cpu

    own = read(pid)
    if own is None:
        return None
    total = own[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(pid):
            child = read(entry.name)
            if child is not None and child[0] == pid:
                total += child[1]
    return total


class HttpxSender:
    """POSTs through one shared ``httpx.AsyncClient`` (a pool of keep-alive connections)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, body: bytes) -> tuple[bool, str]:
        try:
            r = await self.http.post(
                "/v1/classify", content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            return False, type(exc).__name__
        return r.status_code == 200, f"HTTP {r.status_code}"


class RawSender:
    """Minimal HTTP/1.1 keep-alive client on one connection: far less CPU than httpx, so
    on a 2-core machine the load generator takes less from the server it measures."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes) -> tuple[bool, str]:
        head = (
            f"POST /v1/classify HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            if self.conn is None:
                self.conn = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.conn
            writer.write(head + body)
            header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status = int(header.split(b" ", 2)[1])
            length, closing = 0, False
            for line in header.split(b"\r\n"):
                name = line[:15].lower()
                if name == b"content-length:":
                    length = int(line[15:])
                elif name[:11] == b"connection:":
                    closing = b"close" in line[11:].lower()
            await reader.readexactly(length)
            if closing:  # the server asked for a new connection (HTTP/1.1, RFC 9112 9.6)
                writer.close()
                self.conn = None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            if self.conn is not None:
                self.conn[1].close()
            self.conn = None
            return False, type(exc).__name__
        return status == 200, f"HTTP {status}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()


async def client_loop(
    sender: HttpxSender | RawSender,
    traffic: Traffic,
    stats: Stats,
    start: float,
    warm_until: float,
    stop: float,
    interval: float,
    offset: float,
) -> None:
    """One client: send on its schedule (every ``interval`` s) or back-to-back (interval 0)."""
    k = 0
    while True:
        scheduled = start + offset + k * interval if interval else time.perf_counter()
        k += 1
        now = time.perf_counter()
        # On a schedule, every send due before the end is made however late (skipping a
        # late one would hide the delay that made it late); closed loop: until the end.
        if scheduled >= stop:
            return
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
        sent = time.perf_counter()
        ok, kind = await sender.post(traffic.next())
        done = time.perf_counter()
        if scheduled < warm_until:  # the measured window holds the sends due in it
            continue
        if ok:
            stats.sent.append(sent - warm_until)
            stats.latencies.append(done - sent)
            stats.corrected.append(done - min(scheduled, sent))
        else:
            stats.error(kind)


def _run(main: Any) -> Any:
    """Run the load generator on uvloop when installed (uvicorn[standard] brings it): its
    event loop costs less CPU, which on 2 cores the server it measures would miss."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def drive(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    paths = [p for p in args.texts or [] if p.is_file()]
    names = ", ".join(p.name for p in paths) if paths else "data/examples"
    if not paths:
        # Said aloud: figures on these texts are not comparable with runs on the shared data.
        print(
            "bench_api: no text files found (../shared/data missing?): sending petitions "
            "made of data/examples sentences instead",
            file=sys.stderr,
        )
    if args.texts_mode == "whole" and paths:
        texts = real_petitions(paths, args.length)
        traffic_share = None
        args.source = f"{len(texts)} whole petitions from {names}, each request one at random"
    else:
        # New petitions for every request that is not a repeat, plus a margin.
        due = args.rate * (args.warmup + args.duration) if args.rate > 0 else args.pool
        count = int(due * (1 - args.repeat_share)) + 1_000
        texts = petitions(args.length, count, paths=paths or None)
        traffic_share = args.repeat_share
        args.source = (
            f"distinct petitions of sentences from {names}; "
            f"{args.repeat_share:.0%} of requests resend an earlier one"
        )
    bodies = [
        json.dumps({"text": text, "channel": "网上"}, ensure_ascii=False).encode() for text in texts
    ]
    traffic = Traffic(bodies, traffic_share)
    stats = Stats()
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        if args.client == "raw":
            url = httpx.URL(base_url)
            senders: list[Any] = [
                RawSender(url.host, url.port or 80) for _ in range(args.concurrency)
            ]
        else:
            senders = [HttpxSender(http)] * args.concurrency
        for i in range(64):  # open the connections, touch every code path once
            await senders[i % len(senders)].post(traffic.next())
        start = time.perf_counter()
        warm_until = start + args.warmup
        stop = warm_until + args.duration
        interval = args.concurrency / args.rate if args.rate > 0 else 0.0
        tasks = [
            client_loop(
                senders[i],
                traffic,
                stats,
                start,
                warm_until,
                stop,
                interval,
                i * interval / args.concurrency,
            )
            for i in range(args.concurrency)
        ]
        await asyncio.gather(*tasks)
        for sender in senders:
            if isinstance(sender, RawSender):
                sender.close()
    if args.samples:
        with args.samples.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["sent_s", "latency_ms", f"warm_until_monotonic={warm_until:.4f}"])
            out.writerows(
                (f"{t:.4f}", f"{x * 1000:.3f}")
                for t, x in sorted(zip(stats.sent, stats.latencies, strict=True))
            )
    measured = len(stats.latencies) + sum(stats.errors.values())
    ms = [x * 1000 for x in stats.latencies]
    corrected = [x * 1000 for x in stats.corrected]
    return {
        "requests": measured,
        "errors": sum(stats.errors.values()),
        "error_kinds": stats.errors,
        "throughput_rps": measured / args.duration,
        "latency_ms": {
            "mean": statistics.fmean(ms) if ms else float("nan"),
            "p50": percentile(ms, 50),
            "p95": percentile(ms, 95),
            "p99": percentile(ms, 99),
            "max": max(ms, default=float("nan")),
            "p99_corrected": percentile(corrected, 99),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first (5)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--rate", type=float, default=300.0, help="offered req/s; 0 = closed loop")
    parser.add_argument("--length", type=int, default=300, help="characters per petition (300)")
    parser.add_argument(
        "--texts",
        type=Path,
        nargs="*",
        default=SHARED_CSVS,
        help="CSV files with a text column to draw petitions from (default: ../shared/data "
        "when present, else sentences of data/examples mixed into --pool texts)",
    )
    parser.add_argument(
        "--texts-mode",
        choices=["whole", "mixed"],
        default="whole",
        help="whole (default, as in sessions 1-2): whole real petitions (about 4,100 of 300+ "
        "characters) chosen at random, so that after the first pass nearly every request "
        "repeats an earlier one and finds similar cases; mixed: every request a new petition "
        "dealt from real sentences, except --repeat-share of them, which resend an earlier one",
    )
    parser.add_argument(
        "--repeat-share",
        type=float,
        default=0.1,
        help="share of requests that resend an earlier petition, in mixed mode (0.1)",
    )
    parser.add_argument(
        "--pool", type=int, default=20_000, help="new petitions made in closed loop (20000)"
    )
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--model", type=Path, help="model folder for the started server")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (1)")
    parser.add_argument("--threads", type=int, help="TRIAGE_API_THREADS for the server")
    parser.add_argument(
        "--quiet-server", action="store_true", help="turn the server's request log off"
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="raw (default): a minimal asyncio HTTP/1.1 keep-alive client; httpx: httpx's "
        "AsyncClient, which costs about 5x the CPU per request and, on a 2-core machine, "
        "takes that from the server being measured",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--samples", type=Path, help="also write every request's send time and latency (CSV)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        proc = None
        if args.url:
            base_url = args.url.rstrip("/")
            health = httpx.get(f"{base_url}/healthz", timeout=10)
            if health.status_code != 200:
                raise SystemExit(f"server at {base_url} is not healthy: {health.text}")
        else:
            proc, base_url = start_server(args, Path(tmp))
        try:
            model = httpx.get(f"{base_url}/v1/model", timeout=10).json().get("version")
            load_before = os.getloadavg()[0]
            probe_before = speed_probe()
            server_cpu0 = _cpu_seconds(proc.pid) if proc else None
            self0 = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
            result = _run(drive(args, base_url))
            wall = time.perf_counter() - wall0
            self1 = resource.getrusage(resource.RUSAGE_SELF)
            server_cpu1 = _cpu_seconds(proc.pid) if proc else None
            probe_after = speed_probe()
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    result.update(
        {
            "endpoint": "POST /v1/classify",
            "model_version": model,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "client": args.client,
            "offered_rate_rps": args.rate or None,
            "text_length": args.length,
            "texts": args.source,
            "texts_mode": args.texts_mode,
            "repeat_share": args.repeat_share if args.texts_mode == "mixed" else None,
            "server_workers": args.workers if not args.url else None,
            "server_cpu_percent": (
                100 * (server_cpu1 - server_cpu0) / wall
                if server_cpu0 is not None and server_cpu1 is not None
                else None
            ),
            "client_cpu_percent": 100
            * ((self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime))
            / wall,
            # Whether this checkout's C kernels are built (setup.py); without them the same
            # work runs in NumPy at more CPU per request.
            "c_kernels": _kernels_built(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                # Other work on the machine shares its cores: a load average near or above
                # the core count before the run means the figures understate the server.
                "load_average_1min_before": load_before,
                "load_average_1min_after": os.getloadavg()[0],
                # The same fixed work timed before and after the run: on a shared VM the
                # speed of a core varies by half from one hour to the next.
                "speed_probe_ms_before": probe_before,
                "speed_probe_ms_after": probe_after,
            },
        }
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        lat = result["latency_ms"]
        print(
            f"{result['requests']} requests in {args.duration:.0f} s, "
            f"{result['concurrency']} clients, offered {args.rate or 'max'} req/s\n"
            f"throughput {result['throughput_rps']:.1f} req/s, errors {result['errors']} "
            f"{result['error_kinds'] or ''}\n"
            f"latency ms: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
            f"max {lat['max']:.1f}  (p99 from schedule {lat['p99_corrected']:.1f})\n"
            f"texts: {args.source}; load average {load_before:.1f} before the run\n"
            f"cpu: server {result['server_cpu_percent'] or 0:.0f} %, "
            f"load generator {result['client_cpu_percent']:.0f} %  (model {model})"
        )
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
