"""chatd's log lines on stderr: text for people, or one JSON object a line for shippers.

Both carry the same fields: the time, the level and the message; a line
about one connection (opened, closing, cut as too slow) also carries the
peer ("HOST:PORT") and, when closing, the reason, passed as `extra=` and
kept as separate fields in JSON so a shipper need not parse the message.
"""

import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# The fields a record may carry beyond the message (logging's `extra=`).
CONNECTION_FIELDS = ("peer", "reason")


def connection(peer, reason: str | None = None) -> dict:
    """`extra=` for a log line about the connection with `peer` (host, port)."""
    fields = {"peer": f"{peer[0]}:{peer[1]}"}
    if reason is not None:
        fields["reason"] = reason
    return fields


class JsonFormatter(logging.Formatter):
    """{"time", "level", "message"[, "peer", "reason"][, "exception"]}, one a line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname,
                "message": record.getMessage()}
        for name in CONNECTION_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)

    def formatTime(self, record, datefmt=None) -> str:
        # The text line's time, as ISO 8601 with milliseconds.
        return super().formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}"


def configure(level: str, log_format: str, stream) -> None:
    """The root logger: `level`, in `log_format` ("text" or "json"), to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
