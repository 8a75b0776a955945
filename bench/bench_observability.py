"""What observability and the fast lane cost on the cache-hit path (a benchmark, not a test).

    python bench/bench_observability.py [--rounds 5] [-n 400]

Starts three `resolver serve` processes on the embedded defaults, each with its own data
directory: metrics off (METRICS_ENABLED=false), metrics on (the default), and metrics on plus
OpenTelemetry tracing to a local OTLP/HTTP receiver; and, with the fast lane off
(FAST_LANE=false: the steps after cache_lookup a graph run), metrics on and metrics plus tracing. Then, in
interleaved rounds (so machine
noise hits all three alike), times sequential cache hits of one widget over one keep-alive
connection, and prints each mode's median and p95 and the ratio to metrics off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import Conn, pct, sequential
from run_all import free_port, wait_ready

from fakes.otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[1]
PATH = "/v1/widgets/open-issues-kpi/data"


def start(name: str, extra: dict[str, str], tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "LANGSMITH_", "LANGCHAIN_"))
    }
    env |= {
        "PORT": str(port),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "DATA_DIR": str(tmp / name),
    } | extra
    exe = Path(sys.executable).parent / "resolver"
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen([str(exe), "serve"], cwd=ROOT, env=env, stderr=log, stdout=log)
    return proc, port


async def measure(ports: dict[str, int], rounds: int, n: int) -> dict[str, list[float]]:
    # a connection per mode and round: one left idle while the others run would outlive the
    # server's keep-alive timeout
    for p in ports.values():
        c = await Conn.open("127.0.0.1", p)
        await c.post(PATH, b'{"refresh": true}')
        await sequential(c, PATH, b"{}", 100, "hit")  # warm-up
        c.close()
    samples: dict[str, list[float]] = {m: [] for m in ports}
    for _ in range(rounds):
        for mode, p in ports.items():
            c = await Conn.open("127.0.0.1", p)
            samples[mode] += await sequential(c, PATH, b"{}", n, "hit")
            c.close()
    return samples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-n", type=int, default=400)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="wdr-bench-obs-") as t, OtlpReceiver() as otlp:
        tmp = Path(t)
        modes = {
            "metrics off": {"METRICS_ENABLED": "false"},
            "metrics on": {},
            "metrics + tracing": {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint},
            "graph run, metrics": {"FAST_LANE": "false"},
            "graph run, tracing": {
                "FAST_LANE": "false",
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            },
        }
        procs = {m: start(f"d{i}", extra, tmp) for i, (m, extra) in enumerate(modes.items())}
        try:
            for _, port in procs.values():
                wait_ready(f"http://127.0.0.1:{port}")
            samples = asyncio.run(
                measure({m: port for m, (_, port) in procs.items()}, args.rounds, args.n)
            )
        except Exception:
            for i in range(len(modes)):
                print(f"--- d{i}.log", (tmp / f"d{i}.log").read_text()[-2000:], sep="\n")
            raise
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            for proc, _ in procs.values():
                proc.wait(30)
        base = statistics.median(samples["metrics off"])
        print(f"cache hit, sequential, {args.rounds} interleaved rounds x {args.n} requests")
        for mode, xs in samples.items():
            med = statistics.median(xs)
            print(
                f"{mode:20s} median {med:6.3f} ms  p95 {pct(xs, 95):6.3f} ms  "
                f"ratio {med / base:5.3f}"
            )
        print(f"spans received by the local OTLP receiver: {len(otlp.spans)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
