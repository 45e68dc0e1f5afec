"""A real single-node Slurm cluster for tests: munged, slurmctld and slurmd from Debian's packages.

Everything the cluster writes (slurm.conf, state, spool, logs, pid files, the munge socket) lies in
temporary folders, on free ports, so it never touches a system Slurm or another test session's
cluster. Needs root (`SlurmUser=root`) and `apt-get install -y slurm-wlm munge`. The daemons run in
the foreground as children of the test process and are stopped by their PIDs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "squeue")
INSTALL = "apt-get update && apt-get install -y slurm-wlm munge"
MUNGE_KEY = Path("/etc/munge/munge.key")


def missing() -> str | None:
    """Why this machine cannot run the test cluster (None when it can)."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"Slurm/munge not installed ({', '.join(absent)} missing): {INSTALL}"
    if os.geteuid() != 0:
        return "the test Slurm cluster runs its daemons as root (SlurmUser=root): run the tests as root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return f"no 'munge' user (the munge package creates it): {INSTALL}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """slurmd's own description of this machine (CPUs, sockets, memory): it never drains itself."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def node_cpus() -> int:
    """The CPUs the test node offers (slurmd's count of this machine)."""
    fields = dict(f.split("=", 1) for f in _node_line().split())
    return int(fields["CPUs"])


def _ensure_munge_key() -> None:
    """/etc/munge/munge.key, created (owned by munge, mode 0400) when the package left none."""
    if MUNGE_KEY.exists():
        return
    MUNGE_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"], check=True)
    user = pwd.getpwnam("munge")
    for path in (MUNGE_KEY.parent, MUNGE_KEY):
        os.chown(path, user.pw_uid, user.pw_gid)
    MUNGE_KEY.chmod(0o400)


@dataclass
class SlurmCluster:
    """One node, one partition (`debug`), accounting off; `env` points Slurm's commands at it."""

    root: Path
    partition: str = "debug"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    munge_dir: Path | None = None

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60) -> None:
        """Write slurm.conf, start munged, slurmctld and slurmd; return once the node is idle."""
        try:
            self._start_munge()
            self._write_conf()
            env = {**os.environ, **self.env}
            for daemon in ("slurmctld", "slurmd"):
                args = [daemon, "-D"] + (["-c", "-i"] if daemon == "slurmctld" else [])
                self._spawn(daemon, args, env=env)
            self._wait_idle(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start_munge(self) -> None:
        _ensure_munge_key()
        user = pwd.getpwnam("munge")
        # munged refuses folders others may write to, and runs as munge: a private folder it owns.
        self.munge_dir = Path(tempfile.mkdtemp(prefix="ab-munge-"))
        os.chown(self.munge_dir, user.pw_uid, user.pw_gid)
        self.munge_dir.chmod(0o755)
        d = self.munge_dir
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={d / 'munge.socket'}",
                f"--pid-file={d / 'munged.pid'}",
                f"--log-file={d / 'munged.log'}",
                f"--seed-file={d / 'munged.seed'}",
            ],
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
        )
        _wait_for(lambda: (d / "munge.socket").exists(), 10, "munged did not open its socket", self)

    def _spawn(self, name: str, args: list[str], **kw) -> None:
        """Start a daemon in the foreground, its output in <root>/<name>.out."""
        with open(self.root / f"{name}.out", "w") as out:
            self.procs[name] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kw)

    def _write_conf(self) -> None:
        r = self.root
        for sub in ("state", "spool"):
            (r / sub).mkdir(exist_ok=True)
        node = _node_line()
        name = node.split()[0].split("=", 1)[1]
        lines = [
            "ClusterName=abtest",
            f"SlurmctldHost={name}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire: also how long a requeued job waits before it may start again (default 120 s).
            f"AuthInfo=socket={self.munge_dir / 'munge.socket'},cred_expire=5",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SwitchType=switch/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            # A requeued job starts as soon as it may, not at the next minute's scheduling pass.
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "ReturnToService=2",
            "JobRequeue=1",
            # Seconds, not minutes, between a job's end and its node taking the next one.
            "MinJobAge=30",
            "KillWait=5",
            f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={name} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _wait_idle(self, timeout_s: float) -> None:
        def idle() -> bool:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.logs()}")
            out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
            return out.strip() == "idle"

        _wait_for(idle, timeout_s, "the Slurm node did not become idle", self)

    def run(self, *args: str, check: bool = True) -> str:
        """A Slurm command against this cluster; its stdout."""
        res = subprocess.run(args, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def jobs(self) -> list[str]:
        """Job ids in the queue (pending, running, completing)."""
        return self.run("squeue", "-h", "-o", "%i", check=False).split()

    def logs(self, tail: int = 20) -> str:
        """The last lines of each daemon's log, for failure messages."""
        parts = []
        names = ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munged.out")
        files = [self.root / f for f in names]
        if self.munge_dir:
            files.append(self.munge_dir / "munged.log")
        for f in files:
            if f.exists():
                lines = f.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel what is queued, then stop every daemon this cluster started, by PID, newest first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", f"--partition={self.partition}", check=False)
            try:
                _wait_for(lambda: not self.jobs(), 30, "jobs did not end", self)
            except TimeoutError:
                pass  # the daemons go anyway; slurmd's stop ends what is left of the job steps
        for name in reversed(list(self.procs)):
            p = self.procs.pop(name)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.munge_dir:
            shutil.rmtree(self.munge_dir, ignore_errors=True)
            self.munge_dir = None


def _wait_for(ok, timeout_s: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:.0f} s:\n{cluster.logs()}")
        time.sleep(0.5)
