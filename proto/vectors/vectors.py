#!/usr/bin/env python3
"""Golden vectors of the Airlock wire protocol v1: annotate and check.

This is a second, independent decoder of PROTOCOL.md (written from the document, not
from the Swift code). It lays every valid vector out one field per line with the
decoded value as a comment, and checks that the invalid vectors are rejected with the
error code their header names.

    python3 proto/vectors/vectors.py check              # exit 1 on any difference
    python3 proto/vectors/vectors.py annotate FILE      # print FILE with fields laid out

File format: README.md in this folder.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ERROR_INVALID_PARAMETER = 87
ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED = 0x80338048
DEFAULT_MAX_FRAME_SIZE = 512_000


class Reject(Exception):
    """A protocol error: `code` is what an ERROR frame would carry."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def malformed(message):
    return Reject(ERROR_INVALID_PARAMETER, message)


# --- PROTOCOL.md section 5, transcribed: type -> (name, [(field, encoding)]) ---------

CONTEXT = "context"
MESSAGES = {
    0x0001: ("HELLO", [("magic", "u32"), ("minVersion", "u16"), ("maxVersion", "u16"), ("clientName", "str")]),
    0x0002: ("HELLO_ACK", [("version", "u16"), ("maxFrameSize", "u32"), ("maxOperations", "u32"),
                           ("serverVersion", "str"), ("peerUID", "u32"), ("peerUserName", "str")]),
    0x0003: ("PING", [("token", "u64")]),
    0x0004: ("PONG", [("token", "u64")]),
    0x000F: ("ERROR", [("errorCode", "u32"), ("message", "str")]),
    0x0101: ("CREATE_SHELL", [("plugin", "str"), ("resourceUri", "str"), ("timeoutMs", "u32"),
                              ("idleTimeoutMs", "u32"), ("inputStreams", "list<str>"),
                              ("outputStreams", "list<str>"), ("workingDirectory", "optstr"),
                              ("environment", "list<envvar>"), ("name", "optstr"),
                              ("options", "list<option>"), ("optionsMustUnderstand", "bool"),
                              ("inboundShellInformation", "data"), ("locale", "str"), ("dataLocale", "str")]),
    0x0102: ("RUN_COMMAND", [("shellId", "u64"), ("timeoutMs", "u32"), ("commandLine", "str"),
                             ("arguments", "list<str>"), ("options", "list<option>")]),
    0x0103: ("SEND", [("shellId", "u64"), ("commandId", "u64"), ("timeoutMs", "u32"), ("stream", "str"),
                      ("endOfStream", "bool"), ("data", "bytes")]),
    0x0104: ("RECEIVE", [("shellId", "u64"), ("commandId", "u64"), ("timeoutMs", "u32"), ("streams", "list<str>")]),
    0x0105: ("SIGNAL", [("shellId", "u64"), ("commandId", "u64"), ("timeoutMs", "u32"), ("code", "str")]),
    0x0106: ("CONNECT", [("shellId", "u64"), ("commandId", "u64"), ("timeoutMs", "u32"),
                         ("inboundConnectInformation", "data")]),
    0x0107: ("DISCONNECT", [("shellId", "u64"), ("idleTimeoutMs", "u32")]),
    0x0108: ("CLOSE_SHELL", [("shellId", "u64")]),
    0x0109: ("CANCEL", []),
    0x010A: ("ASSERT_IDENTITY", [("userName", "str"), ("authenticationMechanism", "str"), ("httpUrl", "str"),
                                 ("flags", "u32")]),
    0x010B: ("OPEN_RESULT_RING", [("size", "u32")]),
    0x010C: ("RELEASE_RESULT_RING", [("position", "u64")]),
    0x0181: ("STATUS", [("plugin", "str")]),
    0x0182: ("LIST_PLUGINS", []),
    0x0183: ("RESTART_PLUGIN", [("plugin", "str")]),
    0x0184: ("STOP_PLUGIN", [("plugin", "str")]),
    0x0185: ("RELOAD", []),
    0x0201: ("SHELL_CREATED", [("shellId", "u64"), ("plugin", "str"), ("resourceUri", "str")]),
    0x0202: ("COMMAND_CREATED", [("commandId", "u64")]),
    0x0203: ("RECEIVE_RESULT", [("flags", "u32"), ("stream", "optstr"), ("streamResult", "data"),
                                ("commandState", "optstr"), ("exitCode", "u32")]),
    0x0204: ("OPERATION_COMPLETE", [("errorCode", "u32"), ("extendedInformation", "optstr"), ("message", "str")]),
    0x0205: ("SHELL_CLOSED", [("shellId", "u64"), ("errorCode", "u32"), ("extendedInformation", "optstr"),
                              ("message", "str")]),
    0x0206: ("COMMAND_ENDED", [("shellId", "u64"), ("commandId", "u64"), ("errorCode", "u32"),
                               ("extendedInformation", "optstr"), ("message", "str")]),
    0x0207: ("RECEIVE_RESULT_IN_RING", [("flags", "u32"), ("stream", "optstr"), ("position", "u64"),
                                        ("length", "u32"), ("commandState", "optstr"), ("exitCode", "u32")]),
    0x0281: ("STATUS_REPLY", [("json", "str")]),
    0x0301: ("W_START", [("plugin", "str"), ("libraryPath", "str"), ("applicationIdentification", "str"),
                         ("extraInfo", "optstr"), ("startupFlags", "u32"), ("maxEnvelopeSize", "u32"),
                         ("outputWindowBytes", "u32"), ("dropOutput", "bool"), ("configuration", "list<config>"),
                         ("sandboxProfile", "bytes")]),
    0x0302: ("W_SHUTDOWN", [("reason", "u32"), ("graceMs", "u32")]),
    0x0303: ("W_CANCEL", []),
    0x0304: ("W_CREDIT", [("bytes", "u32")]),
    0x0311: ("W_SHELL", [(CONTEXT, CONTEXT), ("shellId", "u64"), ("idleTimeoutMs", "u32"),
                         ("inputStreams", "list<str>"), ("outputStreams", "list<str>"),
                         ("workingDirectory", "optstr"), ("environment", "list<envvar>"), ("name", "optstr"),
                         ("options", "list<option>"), ("optionsMustUnderstand", "bool"),
                         ("inboundShellInformation", "data")]),
    0x0312: ("W_COMMAND", [(CONTEXT, CONTEXT), ("shellId", "u64"), ("commandId", "u64"), ("commandLine", "str"),
                           ("arguments", "list<str>"), ("options", "list<option>")]),
    0x0313: ("W_SEND", [(CONTEXT, CONTEXT), ("shellId", "u64"), ("commandId", "u64"), ("stream", "str"),
                        ("endOfStream", "bool"), ("data", "bytes")]),
    0x0314: ("W_RECEIVE", [(CONTEXT, CONTEXT), ("shellId", "u64"), ("commandId", "u64"), ("streams", "list<str>")]),
    0x0315: ("W_SIGNAL", [(CONTEXT, CONTEXT), ("shellId", "u64"), ("commandId", "u64"), ("code", "str")]),
    0x0316: ("W_CONNECT", [(CONTEXT, CONTEXT), ("shellId", "u64"), ("commandId", "u64"),
                           ("inboundConnectInformation", "data")]),
    0x0381: ("W_READY", [("errorCode", "u32"), ("message", "str"), ("exports", "u32"), ("sandbox", "list<layer>")]),
    0x0382: ("W_CONTEXT", []),
    0x0383: ("W_RESULT", [("flags", "u32"), ("stream", "optstr"), ("streamResult", "data"),
                          ("commandState", "optstr"), ("exitCode", "u32")]),
    0x0384: ("W_COMPLETE", [("errorCode", "u32"), ("extendedInformation", "optstr")]),
    0x0385: ("W_BREACH", [("message", "str")]),
    0x0386: ("W_SHUTDOWN_DONE", [("errorCode", "u32"), ("threadsLeft", "u32")]),
    0x0387: ("W_FATAL", [("message", "str")]),
    0x0388: ("W_REPORT_COMPLETION", [("flags", "u32")]),
}

CONTEXT_FIELDS = [("senderName", "str"), ("authenticationMechanism", "str"), ("resourceUri", "str"),
                  ("locale", "str"), ("dataLocale", "str"), ("timeoutMs", "u32"), ("httpUrl", "str")]
COMPOSITES = {
    "option": [("name", "str"), ("value", "str"), ("mustComply", "bool")],
    "envvar": [("name", "str"), ("value", "str")],
    "config": [("flag", "u32"), ("value", "data")],
    "layer": [("name", "str"), ("state", "str")],
}
# The fewest bytes one list element can take: a count above remaining/minimum is invalid.
MINIMUM_SIZE = {"str": 4, "option": 9, "envvar": 8, "config": 5, "layer": 8}
HEX_FIELDS = {"magic", "exports", "token", "position"}


# --- Decoding ------------------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, count, field):
        if count > self.remaining():
            raise malformed(f"truncated field {field}: needs {count} byte(s), {self.remaining()} left")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def uint(self, size, field):
        return int.from_bytes(self.take(size, field), "little")

    def value(self, encoding, field):
        """Returns the decoded value of one field."""
        if encoding in ("u8", "u16", "u32", "u64"):
            return self.uint({"u8": 1, "u16": 2, "u32": 4, "u64": 8}[encoding], field)
        if encoding == "bool":
            b = self.uint(1, field)
            if b > 1:
                raise malformed(f"field {field}: boolean must be 0 or 1, got {b}")
            return b == 1
        if encoding == "str":
            raw = self.take(self.uint(4, field), field)
            if 0 in raw:
                raise malformed(f"field {field}: string contains NUL")
            try:
                return raw.decode("utf-8", errors="strict")  # rejects overlongs, surrogates, > U+10FFFF
            except UnicodeDecodeError:
                raise malformed(f"field {field}: string is not valid UTF-8") from None
        if encoding == "optstr":
            present = self.uint(1, field)
            if present > 1:
                raise malformed(f"field {field}: presence byte must be 0 or 1, got {present}")
            return self.value("str", field) if present else None
        if encoding == "bytes":
            return bytes(self.take(self.uint(4, field), field))
        if encoding == "data":
            kind = self.uint(1, field)
            if kind == 0:
                return ("none", None)
            if kind == 1:
                return ("text", self.value("str", field))
            if kind == 2:
                return ("binary", self.value("bytes", field))
            if kind == 4:
                return ("dword", self.uint(4, field))
            raise malformed(f"field {field}: unknown WSMAN_DATA kind {kind}")
        if encoding in COMPOSITES:
            return {name: self.value(enc, f"{field}.{name}") for name, enc in COMPOSITES[encoding]}
        if encoding.startswith("list<"):
            element = encoding[5:-1]
            count = self.uint(4, field)
            if count > self.remaining() // MINIMUM_SIZE[element]:
                raise malformed(f"field {field}: list count {count} exceeds the bytes left ({self.remaining()})")
            return [self.value(element, field) for _ in range(count)]
        raise AssertionError(encoding)


def decode_header(data, max_frame_size):
    """Checks a frame's 16-byte header in PROTOCOL.md's order; returns (type, flags, op)."""
    if len(data) >= 4:
        length = int.from_bytes(data[0:4], "little")
        if length < 12:
            raise malformed(f"length {length} is below the minimum of 12")
        if length + 4 > max_frame_size:
            raise Reject(ERROR_WSMAN_MAX_ENVELOPE_SIZE_EXCEEDED, f"frame of {length + 4} bytes exceeds the limit")
        if length + 4 != len(data):
            raise malformed(f"length prefix says {length + 4} bytes but the frame has {len(data)}")
    else:
        raise malformed("a frame needs at least 16 bytes")
    kind = int.from_bytes(data[4:6], "little")
    if kind not in MESSAGES:
        raise malformed(f"unknown message type 0x{kind:04X}")
    flags = int.from_bytes(data[6:8], "little")
    if flags & ~1:
        raise malformed(f"undefined flag bits 0x{flags:x}")
    return kind, flags, int.from_bytes(data[8:16], "little")


def walk(reader, label, encoding, rows):
    """Decodes one field into rows of (label, encoding, value, raw bytes), one per primitive."""
    if encoding == CONTEXT:
        for sub, enc in CONTEXT_FIELDS:
            walk(reader, f"context.{sub}", enc, rows)
    elif encoding in COMPOSITES:
        for sub, enc in COMPOSITES[encoding]:
            walk(reader, f"{label}.{sub}", enc, rows)
    elif encoding.startswith("list<"):
        start = reader.pos
        count = reader.uint(4, label)
        element = encoding[5:-1]
        if count > reader.remaining() // MINIMUM_SIZE[element]:
            raise malformed(f"field {label}: list count {count} exceeds the bytes left ({reader.remaining()})")
        rows.append((label, "count", count, reader.data[start:reader.pos]))
        for i in range(count):
            walk(reader, f"{label}[{i}]", element, rows)
    else:
        start = reader.pos
        value = reader.value(encoding, label)
        rows.append((label, encoding, value, reader.data[start:reader.pos]))


def decode_frame(data, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
    """Decodes one whole frame; returns (type, flags, op, [(field, encoding, value, raw bytes)])."""
    kind, flags, op = decode_header(data, max_frame_size)
    reader = Reader(data)
    reader.pos = 16
    rows = []
    for name, encoding in MESSAGES[kind][1]:
        walk(reader, name, encoding, rows)
    if reader.remaining():
        raise malformed(f"{MESSAGES[kind][0]}: {reader.remaining()} unexpected trailing byte(s)")
    return kind, flags, op, rows


# --- Rendering -----------------------------------------------------------------------

def render(field, encoding, value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if encoding == "count":
        return f"{value} item{'s' if value != 1 else ''}"
    if isinstance(value, int):
        if field in HEX_FIELDS or (field.endswith("errorCode") and value >= 0x10000):
            width = {"magic": 8, "token": 16, "position": 16}.get(field, 0)
            return f"0x{value:0{width}X}"
        return str(value)
    if value is None:
        return "absent"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return f"bytes({value.hex()})"
    if isinstance(value, tuple):
        kind, payload = value
        if kind == "none":
            return "none"
        if kind == "binary":
            return f"binary({payload.hex()})"
        return f"{kind}({render(field, 'str' if kind == 'text' else 'u32', payload)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={render(k, None, v)}" for k, v in value.items()) + "}"
    raise AssertionError(value)


def hex_lines(encoding, raw):
    """Lays a primitive field's bytes out: its prefix bytes (presence, kind, count) apart
    from its contents, and contents 16 bytes to a line."""
    if encoding in ("str", "bytes"):
        head, body = [raw[:4]], raw[4:]
    elif encoding == "optstr" and len(raw) > 1:
        head, body = [raw[:1], raw[1:5]], raw[5:]
    elif encoding == "data" and raw[0] in (1, 2):
        head, body = [raw[:1], raw[1:5]], raw[5:]
    elif encoding == "data" and raw[0] == 4:
        head, body = [raw[:1], raw[1:5]], b""
    else:
        return [raw.hex()]
    indent = " " * (sum(2 * len(h) + 1 for h in head))
    chunks = [body[i:i + 16].hex() for i in range(0, len(body), 16)] or [""]
    lines = [(" ".join(h.hex() for h in head) + " " + chunks[0]).rstrip()]
    lines += [indent + c for c in chunks[1:]]
    return lines


COMMENT_COLUMN = 48


def with_comment(hex_text, comment):
    return f"{hex_text.ljust(COMMENT_COLUMN - 1)} # {comment}"


def annotate_frame(data):
    kind, flags, op, fields = decode_frame(data)
    name = MESSAGES[kind][0]
    header = f"{data[0:4].hex()} {data[4:6].hex()} {data[6:8].hex()} {data[8:16].hex()}"
    flag_text = "FINAL" if flags else "0"
    out = [with_comment(header, f"length={len(data) - 4} type={name} (0x{kind:04X}) flags={flag_text} operationID={op}")]
    for label, encoding, value, raw in fields:
        lines = hex_lines(encoding, raw)
        out.append(with_comment(lines[0], f"{label}={render(label, encoding, value)}"
                                if encoding != "count" else f"{label}: {render(label, encoding, value)}"))
        out += lines[1:]
    return out


# --- Vector files --------------------------------------------------------------------

SECTION = re.compile(r"^\s*\[([^\]\s]+)((?:\s+[^\]\s=]+=[^\]\s]+)*)\s*\]\s*(#.*)?$")


def parse(text):
    """Returns (preamble lines, [(name, attributes, leading comment lines, bytes)])."""
    preamble, sections = [], []
    for number, line in enumerate(text.split("\n"), 1):
        match = SECTION.match(line)
        if match:
            attributes = dict(pair.split("=", 1) for pair in match.group(2).split())
            sections.append([match.group(1), attributes, [], bytearray(), line])
            continue
        code = line.split("#", 1)[0]
        digits = re.sub(r"\s+", "", code)
        if not sections:
            if digits:
                sys.exit(f"line {number}: hex digits before the first section")
            preamble.append(line)
            continue
        if not digits and line.strip().startswith("#") and not sections[-1][3]:
            sections[-1][2].append(line)  # a description comment, kept by `annotate`
        if digits:
            if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", digits):
                sys.exit(f"line {number}: not a sequence of hex byte pairs: {code!r}")
            sections[-1][3] += bytes.fromhex(digits)
    return preamble, sections


def annotate(text):
    preamble, sections = parse(text)
    while preamble and preamble[-1] == "":
        preamble.pop()
    out = preamble + ([""] if preamble else [])
    for name, _attributes, comments, data, header_line in sections:
        out.append(header_line)
        out += comments
        out += annotate_frame(bytes(data))
        out.append("")
    return "\n".join(out)


def check():
    failures = 0
    frames = (HERE / "frames.txt").read_text(encoding="utf-8")
    names = [s[0] for s in parse(frames)[1]]
    if len(names) != len(set(names)):
        print("frames.txt: duplicate vector names")
        failures += 1
    covered = set()
    for name, _attributes, _comments, data, _line in parse(frames)[1]:
        try:
            covered.add(decode_frame(bytes(data))[0])
        except Reject as error:
            print(f"frames.txt [{name}]: rejected: {error}")
            failures += 1
    missing = sorted(MESSAGES[k][0] for k in set(MESSAGES) - covered)
    if missing:
        print(f"frames.txt: no vector for {', '.join(missing)}")
        failures += 1
    if annotate(frames) != frames.rstrip("\n") + "\n" and annotate(frames) + "\n" != frames:
        print("frames.txt: layout or comments differ from `vectors.py annotate frames.txt`")
        failures += 1
    invalid = (HERE / "invalid.txt").read_text(encoding="utf-8")
    for name, attributes, _comments, data, _line in parse(invalid)[1]:
        expected = int(attributes["reject"], 0)
        limit = int(attributes.get("maxFrameSize", DEFAULT_MAX_FRAME_SIZE))
        try:
            decode_frame(bytes(data), limit)
            print(f"invalid.txt [{name}]: accepted")
            failures += 1
        except Reject as error:
            if error.code != expected:
                print(f"invalid.txt [{name}]: rejected with {error.code:#x}, expected {expected:#x}: {error}")
                failures += 1
    total = len(names) + len(parse(invalid)[1])
    print(f"{total} vectors checked, {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "check":
        sys.exit(check())
    if len(sys.argv) == 3 and sys.argv[1] == "annotate":
        sys.stdout.write(annotate(Path(sys.argv[2]).read_text(encoding="utf-8")))
        sys.exit(0)
    sys.exit(__doc__)
