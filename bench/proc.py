"""Running the measured commands: wall clock, each process's peak memory, the process tree's peak.

A child's own peak resident memory comes from `os.wait4`'s rusage for that child (Linux's
`ru_maxrss`: the largest of the child and the descendants it waited for, never their sum;
`getrusage(RUSAGE_CHILDREN)` deltas would mix up several children). The peak of several processes
running at once (a parallel sweep, the launcher's workers) is the largest sum of their resident
memory, sampled from /proc every `interval` seconds as the sum of their proportional set sizes (PSS:
pages shared by several processes, such as torch's libraries, are divided between them instead of
counted in full by each). Linux only; a peak shorter than the interval can be missed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Result:
    """One finished command."""

    cmd: list[str]
    returncode: int
    wall_s: float
    max_rss_mb: float  # this process's peak (wait4), descendants it waited for included
    stdout: str
    stderr: str
    tree_peak_mb: float = float("nan")  # peak of the summed PSS of the process and its descendants

    def check(self) -> Result:
        """Self, or a RuntimeError with the command's last lines when it failed."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{' '.join(self.cmd)} exited with {self.returncode}:\n{tail}")
        return self


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process /proc shows."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and ')'
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _pss_mb(pid: int) -> float:
    """The process's proportional set size (its resident pages, shared ones divided by their sharers),
    else its RSS where the kernel has no smaps_rollup."""
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return 0.0


def tree_memory_mb(root: int, include_root: bool = True) -> float:
    """Memory of `root` and all its descendants together, now: the sum of their PSS (libraries that
    several processes map, torch's 600 MB among them, count once, not once per process)."""
    tree, total, todo = _children(), 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid != root or include_root:
            total += _pss_mb(pid)
        todo.extend(tree.get(pid, []))
    return total


class TreeSampler:
    """Samples the memory of `root`'s process tree in a thread; `peak_mb` is the largest sum."""

    def __init__(self, root: int, include_root: bool = True, interval: float = 0.1) -> None:
        self.root, self.include_root, self.interval = root, include_root, interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, tree_memory_mb(self.root, self.include_root))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 7200) -> Result:
    """Run `cmd` to its end in `cwd`; stdout and stderr go through files (no pipe to fill up)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        with TreeSampler(proc.pid) as sampler:
            deadline = t0 + timeout
            while True:  # wait4 with WNOHANG, so that a time limit can be kept
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Result(
            cmd=list(cmd),
            returncode=proc.returncode,
            wall_s=wall,
            max_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
            stdout=out.read(),
            stderr=err.read(),
            tree_peak_mb=sampler.peak_mb,
        )


@dataclass
class Batch:
    """Several commands run `at_once` at a time: the wall clock of all, and their summed peak memory."""

    results: list[Result] = field(default_factory=list)
    wall_s: float = 0.0
    peak_mb: float = 0.0


def run_many(cmds: list[tuple[list[str], Path]], at_once: int, env: dict[str, str] | None = None) -> Batch:
    """Run (command, cwd) pairs, `at_once` at a time, in order of the list."""
    t0 = time.perf_counter()
    with TreeSampler(os.getpid(), include_root=False) as sampler, ThreadPoolExecutor(at_once) as pool:
        results = list(pool.map(lambda c: run(c[0], c[1], env), cmds))
    return Batch(results=results, wall_s=time.perf_counter() - t0, peak_mb=sampler.peak_mb)
