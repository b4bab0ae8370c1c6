"""The output queue against a real socket pair: partial sends stay framed."""

import socket

from chatd.output import OutputQueue

FRAME = b"\x00\x00\x00\x60" + b"x" * 96


def drain(reader: socket.socket, expected: int) -> bytes:
    received = bytearray()
    while len(received) < expected:
        received += reader.recv(1 << 20)
    return bytes(received)


def test_many_small_frames_go_out_beyond_one_sendmsg_worth_of_buffers():
    writer, reader = socket.socketpair()
    with writer, reader:
        writer.setblocking(False)
        queue = OutputQueue()
        for _ in range(3000):
            queue.append(FRAME)
        sent = queue.send(writer, queue.size)
        # More than 512 frames in one call (the iovec cap), whatever the budget.
        assert sent > 512 * len(FRAME)
        assert queue.size == 3000 * len(FRAME) - sent
        assert drain(reader, sent) == (FRAME * 3000)[:sent]


def two_frames_the_first_sent_in_part(writer: socket.socket) -> OutputQueue:
    queue = OutputQueue()
    queue.append(b"a" * 100)
    queue.append(b"b" * 100)
    assert queue.send(writer, 30) == 30
    return queue


def test_a_budget_smaller_than_a_frame_sends_part_and_keeps_the_rest_in_order():
    writer, reader = socket.socketpair()
    with writer, reader:
        queue = two_frames_the_first_sent_in_part(writer)
        while queue.size:
            queue.send(writer, 64)
        assert drain(reader, 200) == b"a" * 100 + b"b" * 100


def test_drop_unsent_keeps_a_partly_sent_frame_whole():
    writer, reader = socket.socketpair()
    with writer, reader:
        queue = two_frames_the_first_sent_in_part(writer)
        assert queue.drop_unsent() == 100
        assert queue.size == 70
        queue.send(writer, 1000)
        assert drain(reader, 100) == b"a" * 100


def test_take_removes_up_to_a_budget_and_keeps_the_rest_of_a_cut_frame():
    queue = OutputQueue()
    for index in range(3):
        queue.append(bytes([index]) * 100)
    taken = queue.take(250)
    assert b"".join(taken) == b"\x00" * 100 + b"\x01" * 100 + b"\x02" * 50
    assert queue.size == 50 and bytes(queue.chunks[0]) == b"\x02" * 50
    assert queue.drop_unsent() == 0  # the cut frame's rest stays: the stream stays framed
    assert b"".join(queue.take(1000)) == b"\x02" * 50 and queue.size == 0
    assert queue.take(10) == []
