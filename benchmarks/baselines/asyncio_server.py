"""Baseline: the chat/1 subset on idiomatic asyncio streams.

One coroutine per client reads frames with `readexactly`; a broadcast
writes the frame to each member and awaits `drain()` after each write, as
the asyncio documentation shows.  That await can suspend mid-broadcast when
a member's buffer is full, so another sender's message can reach the
remaining members first: a reordering chatd must not have, which the load
benchmark counts.

    python -m benchmarks.baselines.asyncio_server --host 127.0.0.1 --port 0
"""

import asyncio
import sys

import framing
from benchmarks.baselines.common import (BYE_QUIT, LOBBY, SERVER_VERSION, Lobby,
                                         error_frame, parse_args, pong_frame)


class AsyncioChatServer:
    def __init__(self):
        self.lobby = Lobby(f"asyncio-{SERVER_VERSION}")

    async def serve_client(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        name = None
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(framing.HEADER_SIZE), "big")
                if not 0 < size <= framing.MAX_FRAME:
                    code, reason = (("bad_frame", "bad_frame") if size == 0
                                    else ("frame_too_large", "frame_too_large"))
                    writer.write(error_frame(code, f"frame length {size}"))
                    writer.write(framing.encode({"type": "bye", "reason": reason}))
                    await writer.drain()
                    return
                payload = await reader.readexactly(size)
                try:
                    request = framing.parse_payload(payload, framing.REQUESTS)
                except framing.MessageError as exc:
                    writer.write(error_frame(exc.code, exc.message, exc.ref))
                    await writer.drain()
                    continue
                kind, ref = request["type"], request.get("ref")
                if kind == "ping":
                    writer.write(pong_frame(request))
                elif kind == "quit":
                    writer.write(BYE_QUIT)
                    await writer.drain()
                    return
                elif kind == "hello":
                    if name is not None:
                        writer.write(error_frame("bad_message", "already welcome", ref))
                    elif self.lobby.name_taken(request["name"]):
                        writer.write(error_frame("name_taken", "name is taken", ref))
                    else:
                        name = request["name"]
                        self.lobby.members[name] = writer
                        writer.write(self.lobby.welcome(name))
                elif name is None:
                    writer.write(error_frame("not_welcome", "say hello first", ref))
                elif kind == "say":
                    if request.get("room", LOBBY) != LOBBY:
                        writer.write(error_frame("not_in_room", "only the lobby exists here", ref))
                    else:
                        await self.broadcast(self.lobby.next_msg(name, request["text"]))
                else:
                    writer.write(error_frame("unknown_type", f"{kind} is not served here", ref))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away; it leaves the lobby below
        finally:
            if name is not None:
                self.lobby.members.pop(name, None)
            writer.close()

    async def broadcast(self, frame: bytes) -> None:
        for member, writer in list(self.lobby.members.items()):
            try:
                writer.write(frame)
                await writer.drain()
            except ConnectionError:
                self.lobby.members.pop(member, None)


async def serve(host: str, port: int) -> None:
    chat = AsyncioChatServer()
    server = await asyncio.start_server(chat.serve_client, host, port)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main(argv=None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
