"""A tiny systemd stand-in for socket activation: bind, pass as fds 3.., exec chatd.

`python tests/activate.py CHATD-FLAGS...` binds one listening TCP socket on
127.0.0.1:0 per name in ACTIVATE_NAMES (colon-separated, default one
unnamed socket), moves them to fds 3, 4, ..., sets LISTEN_FDS, LISTEN_PID
(its own pid, which exec keeps, plus ACTIVATE_PID_OFFSET) and, when any
name is given, LISTEN_FDNAMES; prints "activate: NAME=HOST:PORT ..." on
stderr and execs `python -m chatd CHATD-FLAGS...`.
"""

import fcntl
import os
import socket
import sys

names = os.environ.pop("ACTIVATE_NAMES", "").split(":")
offset = int(os.environ.pop("ACTIVATE_PID_OFFSET", "0"))
sockets = []
for _ in names:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sockets.append(sock)
print("activate: " + " ".join(f"{name or '-'}={host}:{port}" for name, (host, port)
                              in zip(names, (s.getsockname() for s in sockets))),
      file=sys.stderr, flush=True)
# Out of the way first (a socket may already sit on fd 3, 4, ...), then into place.
high = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100) for sock in sockets]
for sock in sockets:
    sock.close()
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)  # inheritable, as systemd passes them
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(high))
os.environ["LISTEN_PID"] = str(os.getpid() + offset)
if any(names):
    os.environ["LISTEN_FDNAMES"] = ":".join(names)
os.execv(sys.executable, [sys.executable, "-m", "chatd", *sys.argv[1:]])
