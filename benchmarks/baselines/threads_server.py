"""Baseline: the chat/1 subset with a thread per client and blocking sockets.

Every send goes through one lock, held for a whole broadcast (a blocking
`sendall` per member), so frames reach every member in the order the lock
was taken, and one slow member stalls every sender.

    python -m benchmarks.baselines.threads_server --host 127.0.0.1 --port 0
"""

import socket
import sys
import threading

import framing
from benchmarks.baselines.common import (BYE_QUIT, LOBBY, SERVER_VERSION, Lobby,
                                         error_frame, parse_args, pong_frame)

RECV_SIZE = 65_536


class ThreadedChatServer:
    def __init__(self, listener: socket.socket):
        self.listener = listener
        self.lobby = Lobby(f"threads-{SERVER_VERSION}")
        # Guards the member list and every socket's output: two threads
        # calling sendall on one socket could interleave their frames.
        self.lock = threading.Lock()

    def serve_forever(self) -> None:
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self.serve_client, args=(client,), daemon=True).start()

    def send(self, client: socket.socket, frame: bytes) -> None:
        with self.lock:
            client.sendall(frame)

    def broadcast_say(self, sender: str, text: str) -> None:
        """Number and send one `msg` under the lock, so every member sees ids in order."""
        with self.lock:
            frame = self.lobby.next_msg(sender, text)
            for member, client in list(self.lobby.members.items()):
                try:
                    client.sendall(frame)
                except OSError:
                    del self.lobby.members[member]

    def serve_client(self, client: socket.socket) -> None:
        decoder = framing.Decoder(schema=framing.REQUESTS)
        name = None
        try:
            while True:
                data = client.recv(RECV_SIZE)
                if not data:
                    return
                for request in decoder.feed(data):
                    if isinstance(request, framing.FrameError):
                        self.send(client, error_frame(request.code, request.message)
                                  + framing.encode({"type": "bye", "reason": request.code}))
                        return
                    if isinstance(request, framing.MessageError):
                        self.send(client, error_frame(request.code, request.message, request.ref))
                        continue
                    kind, ref = request["type"], request.get("ref")
                    if kind == "ping":
                        self.send(client, pong_frame(request))
                    elif kind == "quit":
                        self.send(client, BYE_QUIT)
                        return
                    elif kind == "hello":
                        name = self.hello(client, name, request)
                    elif name is None:
                        self.send(client, error_frame("not_welcome", "say hello first", ref))
                    elif kind == "say":
                        if request.get("room", LOBBY) != LOBBY:
                            self.send(client, error_frame("not_in_room",
                                                          "only the lobby exists here", ref))
                        else:
                            self.broadcast_say(name, request["text"])
                    else:
                        self.send(client, error_frame("unknown_type",
                                                      f"{kind} is not served here", ref))
        except OSError:
            pass  # the client went away; it leaves the lobby below
        finally:
            if name is not None:
                with self.lock:
                    self.lobby.members.pop(name, None)
            client.close()

    def hello(self, client: socket.socket, name: str | None, request: dict) -> str | None:
        """Answer a hello; return the client's name from now on."""
        ref = request.get("ref")
        with self.lock:
            if name is not None:
                client.sendall(error_frame("bad_message", "already welcome", ref))
                return name
            if self.lobby.name_taken(request["name"]):
                client.sendall(error_frame("name_taken", "name is taken", ref))
                return None
            name = request["name"]
            self.lobby.members[name] = client
            client.sendall(self.lobby.welcome(name))
            return name


def main(argv=None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    listener = socket.create_server((args.host, args.port), backlog=1024)
    bound_host, bound_port = listener.getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", file=sys.stderr, flush=True)
    try:
        ThreadedChatServer(listener).serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
