"""A connection's output queue: frames owed, written with one sendmsg per turn."""

import os

# Buffers handed to one sendmsg; the kernel refuses more than IOV_MAX.
_MAX_BUFFERS = min(512, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 512)


class OutputQueue:
    """Whole frames, oldest first; a partly sent one is kept as a memoryview.

    Frames are shared bytes objects (one encode per broadcast), so queueing
    costs a reference, not a copy.
    """

    __slots__ = ("chunks", "size")

    def __init__(self):
        # A list, not a deque: an idle connection's empty list costs 56 bytes,
        # a deque about 600 (and clear() allocates it a fresh block).
        self.chunks: list = []
        self.size = 0

    def append(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def send(self, sock, budget: int) -> int:
        """Write up to `budget` bytes with one sendmsg; return bytes written.

        Raises what sendmsg raises (BlockingIOError when the socket is full).
        """
        chunks = self.chunks
        if self.size <= budget and len(chunks) <= _MAX_BUFFERS:
            # The fan-out case: everything fits, so no Python loop over frames
            # unless the kernel takes only part of it.
            sent = sock.sendmsg(chunks)
            if sent == self.size:
                chunks.clear()
                self.size = 0
            else:
                self._consume(sent)
            return sent
        batch, total = [], 0
        for chunk in self.chunks:
            if total + len(chunk) > budget:
                if not batch:
                    batch.append(memoryview(chunk)[:budget])
                break
            batch.append(chunk)
            total += len(chunk)
        if len(batch) > _MAX_BUFFERS:
            # Many small frames: join the tail so that one sendmsg still
            # offers the whole budget (a slow path: the backlog is large).
            batch[_MAX_BUFFERS - 1:] = [b"".join(batch[_MAX_BUFFERS - 1:])]
        sent = sock.sendmsg(batch)
        self._consume(sent)
        return sent

    def _consume(self, sent: int) -> None:
        self.size -= sent
        chunks = self.chunks
        done = 0
        while sent:
            head = chunks[done]
            if sent < len(head):
                chunks[done] = memoryview(head)[sent:]
                break
            sent -= len(head)
            done += 1
        del chunks[:done]

    def take(self, budget: int) -> list:
        """Remove and return the oldest frames, up to `budget` bytes (at least one
        byte): what a TLS transport encrypts in one write.  A frame cut by the
        budget stays at the head as a memoryview of its rest."""
        chunks = self.chunks
        if self.size <= budget:
            taken = chunks[:]
            chunks.clear()
            self.size = 0
            return taken
        taken, total, count = [], 0, 0
        for chunk in chunks:
            room = budget - total
            if len(chunk) > room:
                if room:
                    taken.append(memoryview(chunk)[:room])
                    chunks[count] = memoryview(chunk)[room:]
                    total = budget
                break
            taken.append(chunk)
            total += len(chunk)
            count += 1
        del chunks[:count]
        self.size -= total
        return taken

    def clear(self) -> None:
        """Forget everything queued (the connection is gone)."""
        self.chunks.clear()
        self.size = 0

    def drop_unsent(self) -> int:
        """Forget every frame not yet started; return the bytes dropped.

        A partly sent frame stays, so the peer's stream is still framed.
        """
        keep = self.chunks[0] if self.chunks and type(self.chunks[0]) is memoryview else None
        dropped = self.size - (len(keep) if keep is not None else 0)
        self.clear()
        if keep is not None:
            self.append(keep)
        return dropped
