"""A worker thread for work that would block the loop (disk today, password hashing next).

As Redis' bio.c: one thread per kind of work, a job queue in, completions
out.  The loop submits a job (a callable); the worker runs jobs one at a
time in submission order and hands each result back to the loop with
`call_soon_threadsafe`, so the callback that receives it runs on the loop's
thread like any other.  Nothing here is shared with the loop but the queue.
"""

import logging
import queue
import threading

log = logging.getLogger("chatd")

_STOP = object()


class Worker:
    """One daemon thread named `name` running submitted jobs in order.

    `max_backlog` bounds the jobs waiting (None: unbounded); `submit`
    refuses beyond it, so a slow worker cannot grow memory without limit.
    """

    def __init__(self, loop, name: str, max_backlog: int | None = None):
        self.loop = loop
        self.name = name
        self._jobs: queue.Queue = queue.Queue(max_backlog or 0)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Jobs submitted and not yet started (approximate, as Queue.qsize)."""
        return self._jobs.qsize()

    def submit(self, job, done=None) -> bool:
        """Run `job()` on the worker; then `done(result)` on the loop, if given.

        Returns False (nothing queued) when the backlog is full.  An
        exception from `job` is logged and `done` is not called: a job
        reports its own failures in its result.
        """
        try:
            self._jobs.put_nowait((job, done))
        except queue.Full:
            return False
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Let the queued jobs finish, then end the thread; True if it ended in `timeout` s.

        Completions of the last jobs are queued to the loop; a stopped loop
        runs them with `run_ready()`.
        """
        self._jobs.put((_STOP, None))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            job, done = self._jobs.get()
            if job is _STOP:
                return
            try:
                result = job()
            except Exception:
                log.exception("%s: job failed", self.name)
                continue
            if done is not None:
                self.loop.call_soon_threadsafe(done, result)
