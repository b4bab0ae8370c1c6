"""Throughput of the chat/1 codec (framing) against a naive decoder and plain json.loads.

Encodes ~100-byte `msg` events, then decodes the resulting stream from
64 KiB chunks (what one recv() typically hands the server) with
`framing.Decoder` (schema EVENTS, and REQUESTS on a stream of `say`
requests), with a naive loop that re-slices its buffer after every frame,
and with bare `json.loads` over the already-cut payloads: the floor any
decoder that builds dicts has to pay.  Every case runs on the same payloads
in the same process; the best of several repeats is kept, as in timeit.

    python -m benchmarks.codec [--messages N] [--repeats K] [--json FILE]
"""

import argparse
import gc
import json
import os
import platform
import struct
import sys
import time

if not __package__:  # run as `python benchmarks/codec.py`: make `framing` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import framing  # noqa: E402

CHUNK_SIZE = 64 * 1024
_unpack_header = struct.Struct(">I").unpack_from


def make_msg_events(count: int) -> list[dict]:
    """`msg` events shaped like chatd's, about 100 bytes of JSON each."""
    base_ts = 1_732_560_000.0
    return [{"type": "msg", "room": "lobby", "from": f"user{index % 1000:04d}",
             "text": f"hello #{index % 97:02d}", "id": index + 1,
             "ts": base_ts + index * 0.000137}
            for index in range(count)]


def make_say_requests(count: int) -> list[dict]:
    """`say` requests of about 100 bytes of JSON each."""
    return [{"type": "say", "room": "lobby",
             "text": f"message {index:07d} " + "lorem ipsum dolor sit amet, cons"[:index % 8 + 24]}
            for index in range(count)]


def cut_into_chunks(stream: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    return [stream[start:start + size] for start in range(0, len(stream), size)]


def encode_all(messages: list[dict]) -> int:
    encode = framing.encode
    for message in messages:
        encode(message)
    return len(messages)


def decode_with_framing(chunks: list[bytes], schema) -> int:
    decoder = framing.Decoder(schema=schema)
    decoded = 0
    for chunk in chunks:
        decoded += len(decoder.feed(chunk))
    return decoded


def decode_naively(chunks: list[bytes]) -> int:
    """The decoder people write first: slice the buffer after every frame.

    Each slice copies everything still buffered, so one 64 KiB chunk of
    ~100-byte frames costs O(chunk^2 / frame) bytes of copying.
    """
    loads = json.loads
    buffer = b""
    decoded = 0
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 4:
            (size,) = _unpack_header(buffer)
            if len(buffer) < 4 + size:
                break
            loads(buffer[4:4 + size])
            decoded += 1
            buffer = buffer[4 + size:]
    return decoded


def loads_only(payloads: list[bytes]) -> int:
    loads = json.loads
    for payload in payloads:
        loads(payload)
    return len(payloads)


def best_time(run, argument, expected: int, repeats: int) -> float:
    """Fastest of `repeats` runs, in seconds; checks every run did all the work."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        done = run(argument)
        elapsed = time.perf_counter() - started
        if done != expected:
            raise RuntimeError(f"{run.__name__} handled {done} of {expected} messages")
        best = min(best, elapsed)
    return best


def check_decoders_agree(msg_chunks, say_chunks, msg_events, say_requests) -> None:
    """The timed loops only count; make sure once that they decode correctly."""
    decoder = framing.Decoder(schema=framing.EVENTS)
    decoded = [m for chunk in msg_chunks for m in decoder.feed(chunk)]
    if decoded != msg_events:
        raise RuntimeError("framing.Decoder(EVENTS) did not round-trip the msg events")
    decoder = framing.Decoder(schema=framing.REQUESTS)
    decoded = [m for chunk in say_chunks for m in decoder.feed(chunk)]
    if decoded != say_requests:
        raise RuntimeError("framing.Decoder(REQUESTS) did not round-trip the say requests")


def run_benchmark(count: int, repeats: int) -> dict:
    msg_events = make_msg_events(count)
    say_requests = make_say_requests(count)
    msg_payloads = [framing.encode_payload(m) for m in msg_events]
    say_payloads = [framing.encode_payload(m) for m in say_requests]
    msg_chunks = cut_into_chunks(b"".join(map(framing.frame, msg_payloads)))
    say_chunks = cut_into_chunks(b"".join(map(framing.frame, say_payloads)))
    check_decoders_agree(msg_chunks, say_chunks, msg_events, say_requests)

    msg_bytes = sum(map(len, msg_payloads)) + 4 * count
    say_bytes = sum(map(len, say_payloads)) + 4 * count
    cases = [
        # (name, function, argument, stream bytes)
        ("encode msg (framing.encode)", encode_all, msg_events, msg_bytes),
        ("decode msg, Decoder(EVENTS)", lambda c: decode_with_framing(c, framing.EVENTS),
         msg_chunks, msg_bytes),
        ("decode msg, Decoder(no schema)", lambda c: decode_with_framing(c, None),
         msg_chunks, msg_bytes),
        ("decode msg, naive slicing loop", decode_naively, msg_chunks, msg_bytes),
        ("json.loads msg payloads", loads_only, msg_payloads, msg_bytes),
        ("encode say (framing.encode)", encode_all, say_requests, say_bytes),
        ("decode say, Decoder(REQUESTS)", lambda c: decode_with_framing(c, framing.REQUESTS),
         say_chunks, say_bytes),
        ("json.loads say payloads", loads_only, say_payloads, say_bytes),
    ]
    results = []
    for name, run, argument, stream_bytes in cases:
        seconds = best_time(run, argument, count, repeats)
        results.append({"case": name, "messages": count, "seconds": seconds,
                        "msgs_per_s": count / seconds,
                        "us_per_msg": seconds / count * 1e6,
                        "mb_per_s": stream_bytes / seconds / 1e6})
    rate = {r["case"]: r["msgs_per_s"] for r in results}
    ratios = {
        # >1: the framing Decoder is that many times faster than the naive loop.
        "decoder_events_vs_naive": rate["decode msg, Decoder(EVENTS)"]
                                   / rate["decode msg, naive slicing loop"],
        # >1: the Decoder costs that many times what bare json.loads costs.
        "decoder_events_cost_vs_json_loads": rate["json.loads msg payloads"]
                                             / rate["decode msg, Decoder(EVENTS)"],
        "decoder_requests_cost_vs_json_loads": rate["json.loads say payloads"]
                                               / rate["decode say, Decoder(REQUESTS)"],
    }
    return {
        "benchmark": "codec",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "chunk_size": CHUNK_SIZE,
        "messages": count,
        "repeats": repeats,
        "mean_msg_payload_bytes": (msg_bytes - 4 * count) / count,
        "mean_say_payload_bytes": (say_bytes - 4 * count) / count,
        "results": results,
        "ratios": ratios,
    }


def print_report(report: dict) -> None:
    print(f"chat/1 codec, {report['messages']:,} messages per case, best of "
          f"{report['repeats']}, {report['chunk_size'] // 1024} KiB chunks, "
          f"msg payload {report['mean_msg_payload_bytes']:.0f} B, "
          f"say payload {report['mean_say_payload_bytes']:.0f} B, "
          f"Python {report['python']}")
    print(f"{'case':<34} {'msgs/s':>12} {'us/msg':>8} {'MB/s':>8}")
    for r in report["results"]:
        print(f"{r['case']:<34} {r['msgs_per_s']:>12,.0f} {r['us_per_msg']:>8.2f} "
              f"{r['mb_per_s']:>8.1f}")
    ratios = report["ratios"]
    print(f"Decoder(EVENTS) vs naive slicing loop: "
          f"{ratios['decoder_events_vs_naive']:.2f}x the throughput")
    print(f"Decoder(EVENTS) vs plain json.loads:   "
          f"{ratios['decoder_events_cost_vs_json_loads']:.2f}x the time per message")
    print(f"Decoder(REQUESTS) vs plain json.loads: "
          f"{ratios['decoder_requests_cost_vs_json_loads']:.2f}x the time per message")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000,
                        help="messages per case (default 20,000)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs per case; the fastest counts (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    report = run_benchmark(args.messages, args.repeats)
    print_report(report)
    if args.json:
        directory = os.path.dirname(args.json)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
