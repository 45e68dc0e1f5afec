"""Running the measured commands: wall clock, each process's peak memory, the process tree's peak.

A command's own peak resident memory comes from `os.wait4`'s rusage for it (Linux's `ru_maxrss`:
the largest of the command and the descendants it waited for, never their sum;
`getrusage(RUSAGE_CHILDREN)` deltas would mix up several children), taken by the small go-between
`bench/peak.py`: forked from the harness itself, the command would inherit the harness's peak.
The peak of several processes running at once (a parallel sweep, the launcher's workers) is the
largest sum of their resident memory, sampled from /proc every `interval` seconds: their anonymous
memory summed plus the largest file-backed part (the libraries they all map, torch's ~600 MB, are
in memory once; a plain sum of RSS would count them once per process); the go-betweens are left
out. Linux only; a peak shorter than the interval can be missed.

Load around each command (`Load`): the CPU time other processes took while it ran (all CPUs' busy
time from /proc/stat minus the command's own from wait4), as a share of the machine, and the CPU
steal share (time a virtual machine's host gave to others). A measurement with either above
`Load.limit` was taken under load: the harness repeats it and marks it if it stays so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PEAK = Path(__file__).with_name("peak.py")
_GO_BETWEENS: set[int] = set()  # bench/peak.py processes: not counted in a tree's memory


def cpu_times() -> tuple[float, float, float]:
    """(busy, steal, total) seconds of all CPUs since boot, from /proc/stat's first line."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy / ticks, steal / ticks, (busy + idle + iowait + steal) / ticks


@dataclass
class Load:
    """What else ran while a command ran: others' CPU share of the machine and the steal share."""

    others: float  # (busy CPU time − the command's own) / (wall × CPUs)
    steal: float  # steal time / all CPU time
    loadavg_before: float  # 1-minute load average at the start
    limit: float = 0.1

    @property
    def under_load(self) -> bool:
        return self.others > self.limit or self.steal > self.limit

    @classmethod
    def between(cls, start: tuple, end: tuple, own_cpu_s: float, loadavg: float) -> Load:
        (b0, s0, t0), (b1, s1, t1) = start, end
        total = max(t1 - t0, 1e-9)
        return cls(
            others=max(0.0, (b1 - b0 - own_cpu_s) / total), steal=(s1 - s0) / total, loadavg_before=loadavg
        )

    def row(self) -> dict:
        return {
            "others_cpu_share": round(self.others, 4),
            "steal_share": round(self.steal, 4),
            "loadavg_before": self.loadavg_before,
            "under_load": self.under_load,
        }


@dataclass
class Result:
    """One finished command."""

    cmd: list[str]
    returncode: int
    wall_s: float
    max_rss_mb: float  # this process's peak (wait4), descendants it waited for included
    stdout: str
    stderr: str
    tree_peak_mb: float = float("nan")  # peak memory of the process and its descendants together
    cpu_s: float = 0.0  # user + system seconds of the command and the descendants it waited for
    load: Load | None = None  # what else ran meanwhile

    def check(self) -> Result:
        """Self, or a RuntimeError with the command's last lines when it failed."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{' '.join(self.cmd)} exited with {self.returncode}:\n{tail}")
        return self


def _descendants(root: int) -> list[int]:
    """The pids of `root`'s descendants (children of any of its threads, recursively)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:  # listing /proc/<pid>/task raises FileNotFoundError if the process ends meanwhile
            threads = list(Path(f"/proc/{pid}/task").glob("*/children"))
        except OSError:
            continue
        for children in threads:
            try:
                kids = [int(c) for c in children.read_text().split()]
            except OSError:  # the thread or process ended meanwhile
                continue
            found += kids
            todo += kids
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(private anonymous + shared-memory, file-backed) resident kilobytes of one process."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0])
    except OSError:
        pass
    return fields.get("RssAnon", 0) + fields.get("RssShmem", 0), fields.get("RssFile", 0)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def tree_memory_mb(root: int, include_root: bool = True) -> float:
    """Resident memory of `root` and its descendants together, now: their anonymous and shared
    memory summed, plus the largest file-backed part of any one of them (the processes map the
    same libraries, torch's ~600 MB among them, which are in memory once, not once per process)."""
    # A child forked (or vforked) but not yet exec'd is the root's own memory under another pid,
    # sharing its pages: its command line is still the root's, and it is not counted
    own = _cmdline(root)
    kids = [p for p in _descendants(root) if p not in _GO_BETWEENS and _cmdline(p) != own]
    pids = ([root] if include_root else []) + kids
    parts = [_memory_kb(p) for p in pids]
    return (sum(a for a, _ in parts) + max((f for _, f in parts), default=0)) / 1024


class TreeSampler:
    """Samples the memory of `root`'s process tree in a thread; `peak_mb` is the largest sum."""

    def __init__(self, root: int, include_root: bool = True, interval: float = 0.1) -> None:
        self.root, self.include_root, self.interval = root, include_root, interval
        self.peak_mb = 0.0
        self.error: Exception | None = None  # the first failed sample, if any (sampling goes on)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, tree_memory_mb(self.root, self.include_root))
            except Exception as e:  # noqa: BLE001  (a sample lost, not the measurement)
                self.error = self.error or e
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 7200) -> Result:
    """Run `cmd` to its end in `cwd` (killed with its process group after `timeout` seconds);
    stdout and stderr go through files (no pipe to fill up)."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r") as usage,
    ):
        loadavg, before = os.getloadavg()[0], cpu_times()
        t0 = time.perf_counter()
        wrapped = [sys.executable, "-I", "-S", str(PEAK), usage.name, *cmd]  # -I -S: starts in ~20 ms
        proc = subprocess.Popen(
            wrapped, cwd=cwd, env=env, stdout=out, stderr=err, text=True, start_new_session=True
        )
        _GO_BETWEENS.add(proc.pid)
        try:
            with TreeSampler(proc.pid, include_root=False) as sampler:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            wall = time.perf_counter() - t0
        finally:
            _GO_BETWEENS.discard(proc.pid)
        after = cpu_times()
        code, maxrss_kb, cpu_s = (usage.read().split() or [proc.returncode, 0, 0.0])[:3]
        out.seek(0)
        err.seek(0)
        return Result(
            cmd=list(cmd),
            returncode=int(code),
            wall_s=wall,
            max_rss_mb=int(maxrss_kb) / 1024,  # kilobytes on Linux
            stdout=out.read(),
            stderr=err.read(),
            tree_peak_mb=sampler.peak_mb,
            cpu_s=float(cpu_s),
            load=Load.between(before, after, float(cpu_s), loadavg),
        )


@dataclass
class Batch:
    """Several commands run `at_once` at a time: the wall clock of all, and their summed peak memory."""

    results: list[Result] = field(default_factory=list)
    wall_s: float = 0.0
    peak_mb: float = 0.0
    load: Load | None = None  # what else ran meanwhile (the batch's own commands not counted)


def run_many(cmds: list[tuple[list[str], Path]], at_once: int, env: dict[str, str] | None = None) -> Batch:
    """Run (command, cwd) pairs, `at_once` at a time, in order of the list."""
    loadavg, before = os.getloadavg()[0], cpu_times()
    t0 = time.perf_counter()
    with TreeSampler(os.getpid(), include_root=False) as sampler, ThreadPoolExecutor(at_once) as pool:
        results = list(pool.map(lambda c: run(c[0], c[1], env), cmds))
    wall = time.perf_counter() - t0
    load = Load.between(before, cpu_times(), sum(r.cpu_s for r in results), loadavg)
    return Batch(results=results, wall_s=wall, peak_mb=sampler.peak_mb, load=load)
