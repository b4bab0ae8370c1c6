"""What a test can see of a chatd subprocess from outside: memory, file
descriptors, CPU time (from /proc), and whether it is still healthy."""

import os

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of the process."""
    return _status_bytes(pid, "VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the parenthesised command name, which may hold spaces.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def assert_healthy(server) -> None:
    """The server process still runs and has never printed a traceback."""
    assert server.process.poll() is None, "chatd exited:\n" + "".join(server.lines[-30:])
    tracebacks = [line for line in server.lines if "Traceback" in line]
    assert not tracebacks, "chatd raised:\n" + "".join(server.lines[-60:])


class PeakRss:
    """The process' peak RSS over a stretch of a test, exactly: the kernel's
    high-water mark (VmHWM), reset when the stretch begins, so even an
    allocation freed a moment later is seen."""

    def __init__(self, pid: int):
        self.pid = pid
        self.baseline = self._peak = 0

    @property
    def peak(self) -> int:
        try:
            self._peak = max(self._peak, _status_bytes(self.pid, "VmHWM"))
        except (FileNotFoundError, ProcessLookupError, AssertionError):
            pass  # the process has exited (an unreaped one has no VmHWM): keep the last
        return self._peak

    @property
    def growth(self) -> int:
        """Bytes the peak so far lies above the RSS at the start."""
        return self.peak - self.baseline

    def assert_bounded(self, limit: int = 20 * MIB) -> None:
        assert self.growth < limit, (f"server RSS grew by {self.growth / MIB:.1f} MiB "
                                     f"(from {self.baseline / MIB:.1f} MiB)")

    def __enter__(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")   # 5: reset the peak RSS to the current RSS
        self.baseline = self._peak = rss_bytes(self.pid)
        return self

    def __exit__(self, *exc):
        self.peak  # the last reading, while the process may still be there
