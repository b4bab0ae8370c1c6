"""One user's chat state, as the core keeps it."""


class Session:
    """A connection's chat state: its name, its rooms, its rate bucket.

    The core creates nothing of a connection: whoever serves one (the chat/1
    protocol object) *is* a Session (it subclasses this) and hands itself to
    `ChatCore.receive`.  The core reads and writes only the slots below and
    keeps sessions as keys of rooms and of the user registry; what a
    subclass adds (a transport, timers) is never touched by the core.  Tests
    drive the core with plain Sessions.
    """

    __slots__ = ("name", "key", "token", "identity", "rooms", "bad_messages",
                 "bucket", "ended", "deferred", "account", "address")

    def __init__(self):
        self.name: str | None = None  # set by welcome
        self.key: str | None = None   # casefolded name, the registry key
        self.token: str | None = None
        # Who this user is for private history: kept across nick and a token
        # reclaim, new for anyone who takes a freed name.
        self.identity: int | None = None
        self.rooms: dict = {}         # room key -> Room
        self.bad_messages = 0
        # framing.TokenBucket, made at the first request when a rate is set:
        # starting it then or at connect gives the same full bucket.
        self.bucket = None
        self.ended = False
        # Requests waiting for the store's answer (a deque, head first), or None.
        self.deferred = None
        # Logged in to (or registered) the account of its name.
        self.account = False
        # The client's address, for the failed-login limiter: set by whoever
        # serves the connection (None in tests that do not care).
        self.address = None

    def __repr__(self):
        return f"<Session {self.name or 'unwelcomed'}>"
