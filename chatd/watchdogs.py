"""Every connection's deadline (hello, idle) in one loop timer: a hashed timing wheel.

Each connection has a deadline that moves with its traffic.  A loop timer
per connection costs about 220 bytes (the timer, its heap entry, its
sequence number, a bound method); ten thousand idle users make that 2 MiB,
for deadlines nobody needs to the microsecond.  So deadlines are rounded up
to a `resolution` (0.1 s) and kept by slot: a dict per slot holds the
watched objects, and one loop timer is armed for the earliest slot, as a
hashed timing wheel does (Varghese and Lauck, 1987; Linux's timer wheel,
Kafka's purgatory).  An entry costs a dict slot, and `forget` removes it at
once, so a closed connection is not kept alive until its deadline passes.

A watched object has a `watch_slot` attribute (the wheel writes it: the dict
of its slot, or None) and a method `deadline_passed()`, called once its slot
is due; the object checks its own clock and may `watch` itself again for a
later deadline.
"""

import heapq
import math

RESOLUTION = 0.1  # seconds: a deadline fires at most this late


class Watchdogs:
    """Deadlines of many objects on `loop` (chatd.loop.EventLoop), `resolution` s apart."""

    def __init__(self, loop, resolution: float = RESOLUTION):
        self.loop = loop
        self.resolution = resolution
        self._slots: dict[int, dict] = {}   # slot number -> {object: None}
        self._due: list[int] = []           # heap of the slot numbers in _slots
        self._timer = None                  # armed for the slot _due[0] when not None

    def watch(self, watched, deadline: float) -> None:
        """Call `watched.deadline_passed()` once the loop's clock reaches `deadline`
        (at most `resolution` later); replaces any deadline it had."""
        self.forget(watched)
        slot = math.ceil(deadline / self.resolution)
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = {}
            earliest = self._timer is None or slot < self._due[0]
            heapq.heappush(self._due, slot)
            if earliest:
                self._arm(slot)
        members[watched] = None
        # The slot's dict, not its number: no int object per connection, and
        # `forget` needs no lookup.
        watched.watch_slot = members

    def forget(self, watched) -> None:
        """No deadline for `watched` any more (a no-op if it had none)."""
        members = watched.watch_slot
        if members is not None:
            watched.watch_slot = None
            # An emptied slot stays on the heap until due: one wake-up at
            # most, instead of a heap removal per close.
            del members[watched]

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(slot * self.resolution, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now_slot = math.floor(self.loop.time() / self.resolution)
        due, slots = self._due, self._slots
        # Take every due slot out first: what the callbacks watch again goes
        # to a later slot and a later firing, never into this one.
        fired = []
        while due and due[0] <= now_slot:
            fired.append(slots.pop(heapq.heappop(due)))
        for members in fired:
            for watched in list(members):
                if watched.watch_slot is members:  # not forgotten by an earlier callback
                    watched.watch_slot = None
                    watched.deadline_passed()
        if due:
            self._arm(due[0])
