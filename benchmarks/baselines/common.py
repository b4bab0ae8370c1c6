"""What the two baseline servers share: the lobby's state, replies and the command line.

Only the chat/1 subset the load benchmark uses: hello/welcome, say/msg (in
the lobby only: there is no join, so no other room has members), ping/pong
and quit/bye.  No presence frames, no history, no rate limit: the baselines
are there to price the I/O model, not to be complete servers.
"""

import argparse
import secrets
import time

import framing

SERVER_VERSION = "baseline/0.1"
LOBBY = "lobby"
# welcome.users carries at most this many names, as chatd's does.
WELCOME_USERS = 100


class Lobby:
    """Members of the one room and its next message id; no I/O."""

    def __init__(self, server_name: str):
        self.server_name = server_name
        self.members: dict[str, object] = {}  # name -> the server's client handle
        self.next_id = 1

    def welcome(self, name: str) -> bytes:
        others = [other for other in self.members if other != name]
        return framing.encode({
            "type": "welcome", "name": name, "token": secrets.token_hex(16),
            "rooms": [LOBBY], "users": [name] + others[:WELCOME_USERS - 1],
            "user_count": len(self.members), "server": self.server_name,
            "limits": {"max_frame": framing.MAX_FRAME,
                       "max_text": framing.MAX_TEXT_CHARS,
                       "rate": 0, "burst": 0, "presence_limit": 0}})

    def name_taken(self, name: str) -> bool:
        folded = name.casefold()
        return any(other.casefold() == folded for other in self.members)

    def next_msg(self, sender: str, text: str) -> bytes:
        """The `msg` frame for one accepted `say`, with the lobby's next id."""
        frame = framing.encode({"type": "msg", "room": LOBBY, "from": sender,
                                "text": text, "id": self.next_id, "ts": time.time()})
        self.next_id += 1
        return frame


def error_frame(code: str, message: str, ref=None) -> bytes:
    error = {"type": "error", "code": code, "message": message}
    if ref is not None:
        error["ref"] = ref
    return framing.encode(error)


def pong_frame(request: dict) -> bytes:
    pong = {"type": "pong"}
    if "data" in request:
        pong["data"] = request["data"]
    if "ref" in request:
        pong["ref"] = request["ref"]
    return framing.encode(pong)


BYE_QUIT = framing.encode({"type": "bye", "reason": "quit"})


def parse_args(description: str, argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    return parser.parse_args(argv)
