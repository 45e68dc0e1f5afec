"""Run a command and report its own peak resident memory: `python bench/peak.py OUT CMD...`.

Why a go-between: Linux keeps, as a process's `ru_maxrss`, the peak of the memory image it had
before `exec` too, and a child forked from the harness starts with the harness's image (a pytest
process with torch loaded: 1.7 GB). This small process forks the command instead, so the command's
`ru_maxrss` is its own. It writes "<exit code> <ru_maxrss in kB> <CPU seconds>" (user + system
time of the command and the descendants it waited for) to OUT and exits with the code.
"""

from __future__ import annotations

import os
import signal
import sys


def main(out: str, cmd: list[str]) -> int:
    pid = os.fork()
    if pid == 0:  # the command
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            print(f"{cmd[0]}: {e.strerror}", file=sys.stderr)
        os._exit(127)
    for sig in (signal.SIGTERM, signal.SIGINT):  # pass a stop on to the command
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        f.write(f"{code} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
