"""What a test can see of a chatd subprocess from outside: memory, file
descriptors, CPU time (from /proc), and whether it is still healthy."""

import os
import threading

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of the process."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


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
    """Samples a process' RSS in a thread every `period` seconds; keeps the peak."""

    def __init__(self, pid: int, period: float = 0.02):
        self.pid = pid
        self.period = period
        self.baseline = self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(self.period):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (FileNotFoundError, ProcessLookupError, AssertionError):
                return  # the process has exited (an unreaped one has no VmRSS)

    @property
    def growth(self) -> int:
        """Bytes the peak so far lies above the RSS at the start."""
        return self.peak - self.baseline

    def assert_bounded(self, limit: int = 20 * MIB) -> None:
        assert self.growth < limit, (f"server RSS grew by {self.growth / MIB:.1f} MiB "
                                     f"(from {self.baseline / MIB:.1f} MiB)")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
