"""The chat/1 codec: examples and hypothesis properties, no sockets."""

import json
import re
import struct

import pytest
from hypothesis import given, strategies as st

import framing
from framing import (EVENTS, MAX_FRAME, REQUESTS, BadFrame, BadMessage,
                     BadName, BadText, Decoder, FrameError, FrameTooLarge,
                     LocalProtocolError, MessageError, ProtocolError,
                     UnknownType, encode, frame)
from support import raw_frame


def decode_all(data: bytes, schema=REQUESTS):
    return Decoder(schema=schema).feed(data)


# ---------------------------------------------------------------- examples

def test_round_trip_one_message():
    message = {"type": "say", "room": "lobby", "text": "héllo ☃ 😀"}
    assert decode_all(encode(message)) == [message]


def test_encode_is_compact_utf8_with_length_prefix():
    data = encode({"type": "ping", "data": "é"})
    payload = '{"type":"ping","data":"é"}'.encode()
    assert data == struct.pack(">I", len(payload)) + payload


def test_three_quick_sends_are_three_messages_never_merged():
    data = b"".join(encode({"type": "say", "text": t}) for t in "abc")
    assert [m["text"] for m in decode_all(data)] == ["a", "b", "c"]


def test_multibyte_character_split_across_reads_decodes():
    data = encode({"type": "say", "text": "€"})
    cut = data.index("€".encode()) + 1  # inside the 3-byte character
    decoder = Decoder(schema=REQUESTS)
    assert decoder.feed(data[:cut]) == []
    assert decoder.feed(data[cut:]) == [{"type": "say", "text": "€"}]


def test_one_byte_feeds():
    message = {"type": "join", "room": "r"}
    decoder = Decoder(schema=REQUESTS)
    out = []
    for byte in encode(message) * 2:
        out += decoder.feed(bytes([byte]))
    assert out == [message, message]
    assert decoder.buffered == 0


def test_memoryview_and_bytearray_input():
    data = encode({"type": "rooms"})
    assert Decoder().feed(memoryview(data)) == [{"type": "rooms"}]
    assert Decoder().feed(bytearray(data)) == [{"type": "rooms"}]


@pytest.mark.parametrize("size,error", [(0, BadFrame), (MAX_FRAME + 1, FrameTooLarge),
                                        (0xFFFFFFFF, FrameTooLarge)])
def test_bad_length_refused_after_four_bytes(size, error):
    decoder = Decoder()
    good = encode({"type": "ping"})
    header = struct.pack(">I", size)
    assert decoder.feed(good + header[:3]) == [{"type": "ping"}]
    out = decoder.feed(header[3:])
    assert len(out) == 1 and type(out[0]) is error and out[0].fatal
    assert decoder.broken and decoder.buffered == 0
    # Nothing after a broken header is buffered or decoded.
    assert decoder.feed(b"x" * 100_000 + good) == []
    assert decoder.buffered == 0


def test_max_frame_is_inclusive():
    payload = json.dumps({"type": "ping", "data": "x" * 100}).encode()
    assert Decoder(max_frame=len(payload)).feed(raw_frame(payload))[0]["type"] == "ping"
    out = Decoder(max_frame=len(payload) - 1).feed(raw_frame(payload))
    assert type(out[0]) is FrameTooLarge


@pytest.mark.parametrize("payload,error", [
    (b"\xff\xfe", BadMessage),                      # not UTF-8
    (b"\xed\xa0\x80", BadMessage),                  # UTF-8-encoded surrogate
    (b"{", BadMessage),                             # not JSON
    (b"[1,2]", BadMessage),                         # not an object
    (b'"type"', BadMessage),
    (b"{}", BadMessage),                            # no type
    (b'{"type":3}', BadMessage),                    # type not a string
    (b'{"type":"ping"} x', BadMessage),             # trailing data
    (b'{"type":"ping","data":NaN}', BadMessage),
    (b'{"type":"ping","data":-Infinity}', BadMessage),
    (b'{"type":"ping","data":1e400}', BadMessage),  # overflows to inf
    (b'{"type":"ping","data":9223372036854775808}', BadMessage),
    (b'{"type":"ping","data":' + b"9" * 5000 + b"}", BadMessage),
    (b'{"type":"ping","data":"\\ud800"}', BadMessage),
    (b'{"type":"ping","\\udfff":1}', BadMessage),
    (b'{"type":"ping","ref":"\\ud800"}', BadMessage),   # the ref cannot be echoed
    (b'{"type":"ping","ref":true}', BadMessage),
    (b'{"type":"ping","ref":"' + b"r" * 129 + b'"}', BadMessage),
    (b'{"type":"ping","ref":1.5}', BadMessage),
    (b'{"type":"shout"}', UnknownType),
    (b'{"type":"say","text":""}', BadText),
    (b'{"type":"say","text":"a\\u0000b"}', BadText),
    (b'{"type":"say","text":"\\ud800"}', BadText),
    (b'{"type":"say","text":7}', BadText),
    (b'{"type":"say"}', BadMessage),
    (b'{"type":"hello","name":"caf\\u00e9"}', BadName),
    (b'{"type":"hello","name":"' + b"a" * 33 + b'"}', BadName),
    (b'{"type":"hello","name":"ok","version":2}', BadMessage),
    (b'{"type":"history"}', BadMessage),
    (b'{"type":"history","room":"a","with":"b"}', BadMessage),
    (b'{"type":"history","room":"a","limit":0}', BadMessage),
    (b'{"type":"history","room":"a","since":true}', BadMessage),
])
def test_bad_payload_gives_typed_error_and_stream_goes_on(payload, error):
    good = encode({"type": "ping"})
    out = decode_all(good + raw_frame(payload) + good)
    assert out[0] == out[2] == {"type": "ping"}
    assert type(out[1]) is error and not out[1].fatal


def test_error_codes_match_the_contract():
    assert {cls.code for cls in (BadFrame, FrameTooLarge, BadMessage, UnknownType,
                                 BadName, BadText)} == {
        "bad_frame", "frame_too_large", "bad_message", "unknown_type",
        "bad_name", "bad_text"}
    assert issubclass(FrameError, ProtocolError) and issubclass(MessageError, ProtocolError)


def test_nesting_limit_counts_the_top_object_as_level_one():
    def nested(levels):  # an object holding levels - 1 nested lists
        return b'{"type":"ping","data":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"
    assert decode_all(raw_frame(nested(32)))[0]["type"] == "ping"
    assert type(decode_all(raw_frame(nested(33)))[0]) is BadMessage
    # Deep enough for json's C scanner to raise RecursionError.
    assert type(decode_all(raw_frame(nested(30000)), schema=None)[0]) is BadMessage


def test_a_ref_that_cannot_be_encoded_is_not_carried_by_the_error():
    out = decode_all(raw_frame(b'{"type":"say","text":"","ref":"\\ud800"}'))
    assert type(out[0]) is BadMessage and out[0].ref is None
    framing.encode({"type": "error", "code": out[0].code, "message": out[0].message})


def test_error_carries_the_ref_of_its_request():
    out = decode_all(raw_frame(b'{"type":"say","text":"","ref":"r1"}')
                     + raw_frame(b'{"type":"nope","ref":42}'))
    assert out[0].ref == "r1" and out[1].ref == 42


def test_unknown_members_are_ignored():
    message = {"type": "say", "text": "x", "colour": [1, {"a": None}]}
    assert decode_all(encode(message)) == [message]


def test_event_schema_accepts_server_shapes():
    msg = {"type": "msg", "room": "lobby", "from": "bob", "text": "t", "id": 1, "ts": 1.5}
    assert decode_all(encode(msg), schema=EVENTS) == [msg]
    out = decode_all(encode({"type": "msg", "from": "bob", "text": "t", "id": 1, "ts": 1}),
                     schema=EVENTS)
    assert type(out[0]) is BadMessage  # neither room nor to


@pytest.mark.parametrize("message", [
    {"type": "ping", "data": float("nan")},
    {"type": "say", "text": "\ud800"},
    {"type": "ping", "data": object()},
    {"type": "ping", "data": "x" * MAX_FRAME},
])
def test_encode_refuses_what_the_peer_would_refuse(message):
    with pytest.raises(LocalProtocolError):
        encode(message)


def test_frame_refuses_empty_payload():
    with pytest.raises(LocalProtocolError):
        frame(b"")


# -------------------------------------------------------------- properties

names = st.from_regex(r"[A-Za-z0-9_.\-]{1,32}", fullmatch=True)
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=200)
refs = st.one_of(st.text(max_size=128), st.integers(-(2 ** 63), 2 ** 63 - 1))


def with_ref(strategy):
    return st.tuples(strategy, st.one_of(st.none(), refs)).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "ref": pair[1]})


requests = with_ref(st.one_of(
    st.builds(lambda n: {"type": "hello", "name": n}, names),
    st.builds(lambda r, t: {"type": "say", "room": r, "text": t}, names, texts),
    st.builds(lambda n, t: {"type": "dm", "to": n, "text": t}, names, texts),
    st.builds(lambda r: {"type": "join", "room": r}, names),
    st.builds(lambda n: {"type": "nick", "name": n}, names),
    st.builds(lambda r, s, l: {"type": "history", "room": r, "since": s, "limit": l},
              names, st.integers(0, 2 ** 63 - 1), st.integers(1, 1000)),
    st.builds(lambda d: {"type": "ping", "data": d},
              st.recursive(st.none() | st.booleans() | texts
                           | st.integers(-(2 ** 63), 2 ** 63 - 1)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=10)),
))


@given(requests)
def test_round_trip_any_valid_request(message):
    assert decode_all(encode(message)) == [message]


events = st.one_of(
    st.builds(lambda r, f, t, i, ts: {"type": "msg", "room": r, "from": f, "text": t,
                                      "id": i, "ts": ts},
              names, names, texts, st.integers(1, 2 ** 63 - 1),
              st.floats(0, 4e9, allow_nan=False)),
    st.builds(lambda to, f, t, i: {"type": "msg", "to": to, "from": f, "text": t,
                                   "id": i, "ts": 1.5}, names, names, texts,
              st.integers(1, 2 ** 63 - 1)),
    st.builds(lambda r, n: {"type": "joined", "room": r, "name": n}, names, names),
    st.builds(lambda r, n, why: {"type": "left", "room": r, "name": n, "reason": why},
              names, names, texts),
    st.builds(lambda o, n: {"type": "renamed", "old": o, "new": n}, names, names),
    st.builds(lambda r, ns: {"type": "users", "room": r, "names": ns},
              names, st.lists(names, max_size=20)),
    st.builds(lambda c, m: {"type": "error", "code": c, "message": m},
              st.sampled_from(["bad_message", "rate_limited", "name_taken"]), texts),
    st.builds(lambda why: {"type": "bye", "reason": why},
              st.sampled_from(["quit", "shutdown", "too_slow"])),
)


@given(with_ref(events))
def test_round_trip_any_valid_event(message):
    assert decode_all(encode(message), schema=EVENTS) == [message]


@given(st.lists(requests, min_size=1, max_size=20), st.data())
def test_any_chunking_decodes_the_same(messages, data):
    stream = b"".join(encode(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    decoder = Decoder(schema=REQUESTS)
    out = []
    for start, end in zip([0] + cuts, cuts + [len(stream)]):
        out += decoder.feed(stream[start:end])
    assert out == messages
    assert decoder.buffered == 0


@given(st.lists(requests, min_size=1, max_size=5))
def test_one_byte_at_a_time_decodes_the_same(messages):
    stream = b"".join(encode(m) for m in messages)
    decoder = Decoder(schema=REQUESTS)
    out = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i:i + 1])
    assert out == messages


@given(st.binary(max_size=2000), st.integers(1, 64))
def test_arbitrary_bytes_give_only_codec_errors(data, chunk):
    decoder = Decoder(max_frame=1024, schema=REQUESTS)
    out = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i:i + chunk])  # must return, never raise
    for item in out:
        assert isinstance(item, (dict, ProtocolError))
    # Only the last item may be a stream error, and it breaks the decoder.
    fatal = [i for i, item in enumerate(out) if isinstance(item, FrameError)]
    assert fatal in ([], [len(out) - 1])
    assert decoder.buffered <= max(len(data), 4)


@given(st.binary(min_size=1, max_size=500), requests, requests)
def test_bad_payload_between_two_good_messages_keeps_both(junk, first, last):
    out = decode_all(encode(first) + raw_frame(junk) + encode(last))
    assert len(out) == 3 and out[0] == first and out[2] == last
    assert isinstance(out[1], (dict, MessageError))


@given(st.integers(MAX_FRAME + 1, 2 ** 32 - 1), st.binary(max_size=100))
def test_oversized_header_refused_after_its_four_bytes(size, tail):
    decoder = Decoder()
    out = decoder.feed(struct.pack(">I", size))
    assert len(out) == 1 and type(out[0]) is FrameTooLarge
    assert decoder.feed(tail) == [] and decoder.buffered == 0


@given(st.text(max_size=50))
def test_arbitrary_json_text_never_escapes_the_codec(text):
    for payload in (text.encode("utf-8", "surrogatepass"),
                    json.dumps({"type": "say", "text": text}).encode()):
        out = decode_all(raw_frame(payload) if payload else b"\0\0\0\1 ")
        assert len(out) == 1 and isinstance(out[0], (dict, ProtocolError))


@given(st.one_of(st.text(max_size=40), names, st.integers(), st.none()))
def test_is_name_is_exactly_the_contract_rule(value):
    rule = type(value) is str and re.fullmatch(r"[A-Za-z0-9_.\-]{1,32}", value) is not None
    assert framing.is_name(value) == rule


@given(st.one_of(st.text(max_size=130), st.integers(), st.floats(allow_nan=False)),
       st.sampled_from(["ping", "say", "shout"]))
def test_every_error_can_be_sent_back_with_its_ref(ref, kind):
    payload = json.dumps({"type": kind, "ref": ref}).encode()  # \ud800 for surrogates
    for item in decode_all(raw_frame(payload)):
        if isinstance(item, ProtocolError):
            error = {"type": "error", "code": item.code, "message": item.message}
            if item.ref is not None:
                error["ref"] = item.ref
            encode(error)  # must not raise: the server sends this back


def test_package_exports_the_codec():
    assert framing.MAX_FRAME == 65_536 and framing.HEADER_SIZE == 4
