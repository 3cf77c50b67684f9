"""Load test of the inference service on 127.0.0.1: N concurrent clients post single samples
for T seconds, against the service with dynamic batching on and off and against a bare FastAPI
endpoint on the same uvicorn stack (the ceiling of the HTTP stack), twice: on uvicorn's stock
httptools protocol, and on the service's own (``service/transport.py``: one socket write per
response instead of two), so the service is compared with both the stock ceiling and a like-
for-like one; then multi-sample requests against offline scoring of the same rows in-process.

    python benchmarks/service_load.py [--models DIR] [--model NAME] [--clients 64]
                                      [--seconds 3] [--rounds 3] [--rows-per-request 256]

Without --models it trains a small bundle on sklearn's breast-cancer table (benign rows; the
weights do not change the cost). Each server runs in its own process; all stay up and the
rounds interleave the configurations (medians are reported), so background load that drifts
during the run hits every configuration alike. The load generator is a minimal keep-alive
HTTP/1.1 client on asyncio in this process, so the same client measures every configuration.
Prints a table and writes benchmarks/results/service_load.json.

The client and the server share the machine: on a 2-core box they compete for the cores, so
absolute figures are lower than on a dedicated server; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request  # module level: the route's annotations resolve here
from starlette.responses import Response

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "service_load.json"
BARE_ONE_WRITE = "bare endpoint, one write/response"


# --- the bare endpoint (run in a subprocess with --serve-bare) --------------------------------

def serve_bare(port: int, one_write: bool = False) -> None:
    """Same uvicorn stack, a route of the same shape that reads the body and answers a fixed
    result of the same size: everything but the service's own work. ``one_write``: on the
    service's HTTP protocol (one socket write per response, ``service/transport.py``)
    instead of uvicorn's stock one (head and body written separately)."""
    import uvicorn

    from service.transport import HttpProtocol

    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})  # as served
    body = json.dumps({"model": "m", "version": 1, "results": [
        {"score": 12.345678901234, "threshold": 48.6119384765625, "is_anomaly": False,
         "p_value": 0.5538461538461539, "model": "m", "version": 1, "mc_samples": 16}]})

    @app.post("/v1/models/{name}/score")
    async def score(request: Request, name: str) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response("{}", media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                server_header=False, http=HttpProtocol if one_write else "httptools")


# --- servers ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int, timeout_s: float = 60) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd} did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the load generator -----------------------------------------------------------------------

@dataclass
class LoadResult:
    name: str
    clients: int
    samples_per_request: int
    seconds: float
    requests: int
    errors: int
    requests_per_s: float
    samples_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    #: server process CPU time (all threads, user + system) per request over the whole run,
    #: warm-up included: what a request costs the server, far steadier than req/s on a
    #: machine whose cores are shared with other jobs
    server_cpu_us_per_request: float | None = None


def http_request(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's machine type: the
    figures differ several-fold between hosts, so the results say which one they are from."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process and all its threads (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _connection(port: int, requests: list[bytes], offset: int, warm_until: float,
                      stop_at: float, latencies: list[float], errors: list[int],
                      completed: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"content-length:")
            length = int(head[at + 15:head.index(b"\r\n", at)])
            await reader.readexactly(length)
            t1 = time.perf_counter()
            completed[0] += 1
            if t0 >= warm_until:
                latencies.append(t1 - t0)
                if head[9:12] != b"200":
                    errors.append(int(head[9:12]))
    finally:
        writer.close()


async def _load(port: int, requests: list[bytes], clients: int, seconds: float,
                warmup: float) -> tuple[list[float], list[int], float, int]:
    now = time.perf_counter()
    warm_until, stop_at = now + warmup, now + warmup + seconds
    latencies: list[float] = []
    errors: list[int] = []
    completed = [0]  # every request, warm-up included
    await asyncio.gather(*(
        _connection(port, requests, k * 7, warm_until, stop_at, latencies, errors, completed)
        for k in range(clients)))
    return latencies, errors, time.perf_counter() - warm_until, completed[0]


def run_load(name: str, port: int, requests: list[bytes], clients: int, seconds: float,
             samples_per_request: int, warmup: float = 1.0, pid: int | None = None
             ) -> LoadResult:
    try:
        import uvloop
        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    cpu0 = process_cpu_s(pid) if pid is not None else None
    latencies, errors, elapsed, completed = runner(
        _load(port, requests, clients, seconds, warmup))
    cpu1 = process_cpu_s(pid) if pid is not None else None
    cpu_us = (None if cpu0 is None or cpu1 is None or not completed
              else round((cpu1 - cpu0) / completed * 1e6, 1))
    lat = np.array(latencies) * 1e3
    n = len(latencies)
    return LoadResult(
        name=name, clients=clients, samples_per_request=samples_per_request,
        seconds=round(elapsed, 3), requests=n, errors=len(errors),
        requests_per_s=round(n / elapsed, 1),
        samples_per_s=round(n * samples_per_request / elapsed, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 3),
        p90_ms=round(float(np.percentile(lat, 90)), 3),
        p99_ms=round(float(np.percentile(lat, 99)), 3),
        max_ms=round(float(lat.max()), 3), server_cpu_us_per_request=cpu_us)


# --- data and offline reference ----------------------------------------------------------------

def cancer_rows() -> list[dict[str, float]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    return [dict(zip(names, map(float, r), strict=True)) for r in data.data]


def train_bundle(out: Path) -> Path:
    from training.pipeline import tabular_config, train_tabular

    rows = cancer_rows()
    columns = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    train_tabular(columns, out / "cancer" / "1", "cancer",
                  tabular_config(epochs=5, target_fpr=0.05, progress=False))
    return out


def offline_rate(bundle: Path, rows: list[dict[str, float]], seconds: float,
                 intra_op_threads: int | None) -> tuple[float, float]:
    """Samples/s of Scorer.score_rows (preprocessing included) and of Scorer.score alone."""
    from anomaly.inference import Scorer

    scorer = Scorer(bundle, intra_op_threads=intra_op_threads)
    x = scorer.preprocessor.transform(  # type: ignore[union-attr]
        {k: [r[k] for r in rows] for k in rows[0]}).x  # (n, D)

    def rate(fn: Any) -> float:
        fn()
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            calls += 1
        return calls * len(rows) / (time.perf_counter() - t0)

    return rate(lambda: scorer.score_rows(rows)), rate(lambda: scorer.score(x))


# --- main ---------------------------------------------------------------------------------------

def median_result(runs: list[LoadResult]) -> LoadResult:
    """Per-field median over repeated rounds of one configuration."""
    first = runs[0]

    def med(field: str) -> float:
        return float(np.median([getattr(r, field) for r in runs]))

    return LoadResult(
        name=first.name, clients=first.clients, samples_per_request=first.samples_per_request,
        seconds=round(sum(r.seconds for r in runs), 3), requests=sum(r.requests for r in runs),
        errors=sum(r.errors for r in runs), requests_per_s=round(med("requests_per_s"), 1),
        samples_per_s=round(med("samples_per_s"), 1), p50_ms=round(med("p50_ms"), 3),
        p90_ms=round(med("p90_ms"), 3), p99_ms=round(med("p99_ms"), 3),
        max_ms=round(max(r.max_ms for r in runs), 3),
        server_cpu_us_per_request=(
            None if any(r.server_cpu_us_per_request is None for r in runs)
            else round(med("server_cpu_us_per_request"), 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None,
                        help="model repository (default: train a small one)")
    parser.add_argument("--model", default="cancer", help="tabular model to load-test")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="per configuration and round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all configurations; medians are reported (the "
                             "rounds interleave, so drifting background load hits all alike)")
    parser.add_argument("--rows-per-request", type=int, default=256)
    parser.add_argument("--multi-clients", type=int, default=4,
                        help="concurrent clients for the multi-sample runs")
    parser.add_argument("--intra-op-threads", type=int, default=1,
                        help="onnxruntime threads per session, service and offline alike")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one-write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.one_write)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        repo = args.models or train_bundle(Path(tmp))
        model_dir = repo / args.model
        bundle = max((p for p in model_dir.iterdir() if p.name.isdigit()),
                     key=lambda p: int(p.name)) if not (model_dir / "bundle.json").is_file() \
            else model_dir
        rows = cancer_rows()
        path = f"/v1/models/{args.model}/score"
        singles = [http_request(path, json.dumps({"rows": [r]}).encode()) for r in rows]
        n = args.rows_per_request
        multis = [http_request(path, json.dumps({"rows": (rows * (n // len(rows) + 2))[k:k + n]})
                               .encode()) for k in range(0, 64 * 7, 7)]
        service = [sys.executable, "-m", "service", "--models", str(repo),
                   "--intra-op-threads", str(args.intra_op_threads)]
        load_before = os.getloadavg()
        # all servers stay up (idle ones cost nothing) and the rounds interleave them
        servers = {"bare": [sys.executable, __file__, "--serve-bare"],
                   "bare1": [sys.executable, __file__, "--one-write", "--serve-bare"],
                   "on": service, "off": [*service, "--no-dynamic-batching"]}
        configs: list[tuple[str, str, list[bytes], int, int]] = [
            ("bare FastAPI endpoint", "bare", singles, args.clients, 1),
            (BARE_ONE_WRITE, "bare1", singles, args.clients, 1),
            ("service, batching on", "on", singles, args.clients, 1),
            ("service, batching off", "off", singles, args.clients, 1),
            (f"service, {n} rows/request", "on", multis, args.multi_clients, n),
        ]
        ports = {key: free_port() for key in servers}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        runs: dict[str, list[LoadResult]] = {name: [] for name, *_ in configs}
        try:
            for key, cmd in servers.items():
                port_flag = ([str(ports[key])] if key.startswith("bare")
                             else ["--port", str(ports[key])])
                procs[key] = start(cmd + port_flag, ports[key])
            for _ in range(args.rounds):
                for name, key, requests, clients, per_request in configs:
                    runs[name].append(run_load(name, ports[key], requests, clients,
                                               args.seconds, per_request,
                                               pid=procs[key].pid))
        finally:
            for proc in procs.values():
                stop(proc)
        offline_rows, offline_graph = offline_rate(bundle, rows[:n] if n <= len(rows)
                                                   else (rows * (n // len(rows) + 1))[:n],
                                                   args.seconds, args.intra_op_threads)
    results = [median_result(runs[name]) for name, *_ in configs]
    bare, bare1, on = results[0], results[1], results[2]
    cpu_ratio = (None if bare.server_cpu_us_per_request is None
                 or not on.server_cpu_us_per_request
                 else round(bare.server_cpu_us_per_request / on.server_cpu_us_per_request, 3))
    summary = {
        "single_sample_rps_vs_bare": round(on.requests_per_s / bare.requests_per_s, 3),
        # like for like: the bare route on the service's own HTTP protocol (one write each)
        "single_sample_rps_vs_bare_one_write": round(on.requests_per_s
                                                     / bare1.requests_per_s, 3),
        "single_sample_server_cpu_bare_over_service": cpu_ratio,
        "single_sample_p99_ms_batching_on": on.p99_ms,
        "aim": "single-sample req/s >= 0.70 of bare, p99 < 25 ms at 64 clients",
        "multi_sample_vs_offline_score_rows": round(results[-1].samples_per_s / offline_rows, 3),
    }
    load_after = os.getloadavg()
    cpu = cpu_model()
    report = {
        "machine": {"cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before,
                    "loadavg_after": load_after},
        "settings": {"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
                     "rows_per_request": n, "multi_clients": args.multi_clients,
                     "intra_op_threads": args.intra_op_threads, "model": args.model},
        "http": [asdict(r) for r in results],
        "http_rounds": {name: [asdict(r) for r in rs] for name, rs in runs.items()},
        "offline": {"score_rows_samples_per_s": round(offline_rows, 1),
                    "score_preprocessed_samples_per_s": round(offline_graph, 1),
                    "rows": n},
        "summary": summary,
    }
    print(f"\nmedians of {args.rounds} interleaved rounds of {args.seconds:g} s")
    print(f"{'configuration':32} {'clients':>7} {'req/s':>9} {'samples/s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'CPU us/req':>10}")
    for r in results:
        us = "-" if r.server_cpu_us_per_request is None else f"{r.server_cpu_us_per_request:.0f}"
        print(f"{r.name:32} {r.clients:>7} {r.requests_per_s:>9.1f} {r.samples_per_s:>10.1f} "
              f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>6} {us:>10}")
    print(f"{'offline Scorer.score_rows':32} {'':>7} {'':>9} {offline_rows:>10.1f}")
    print(f"{'offline Scorer.score (x ready)':32} {'':>7} {'':>9} {offline_graph:>10.1f}")
    print(f"\nbatching on vs bare: {summary['single_sample_rps_vs_bare']:.0%} of the req/s "
          f"({summary['single_sample_rps_vs_bare_one_write']:.0%} of the bare route on the "
          f"same one-write protocol); p99 {on.p99_ms:.1f} ms (aim: >= 70%, < 25 ms). "
          f"Load average before/after: "
          f"{load_before[0]:.2f}/{load_after[0]:.2f} on {os.cpu_count()} CPUs ({cpu}).")
    if cpu_ratio is not None:
        print(f"server CPU per single-sample request: bare {bare.server_cpu_us_per_request:.0f}"
              f" us, service {on.server_cpu_us_per_request:.0f} us: the service's CPU-bound "
              f"capacity is {cpu_ratio:.0%} of the bare endpoint's")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
