#!/usr/bin/env python3
"""A minimal Iris client in plain Python 3 (standard library only), written from iris.proto,
PROTOCOL.md and the README as a new client author would.

It reads the schema itself (a small .proto parser), so it carries no generated code, and it is
the repository's check that the wire format is what the documents say:

    iris_client.py fixtures PROTO FIXTURES_DIR
        Every golden frame in FIXTURES_DIR is decoded from its protobuf bytes (.bin) into the
        readable form (.txt, protoc's text format) and into the canonical JSON text (.json), and
        encoded back from the JSON into the same bytes. Every operation and event must have a
        fixture.

    iris_client.py live PROTO HTTP_URL
        Against a running dev-mode server: logs two accounts in over HTTP (code 000000), connects
        one over framed TCP (protobuf) and one over WebSocket (iris.v1.json), sends both ways,
        receives, acks (the sender then gets the DELIVERED receipt), and checks the refusals a
        client author meets at the edges (subprotocol, body size, unknown fields).

Exits 0 when everything held, 1 with a message on the first thing that did not.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import struct
import sys
import urllib.parse

TIMEOUT_S = 10
SCALARS = {"bool", "bytes", "string", "uint32", "uint64", "int32", "int64"}
SIXTY_FOUR_BIT = {"uint64", "int64"}


class Failure(Exception):
    """Something the server or a fixture did differently from what the documents say."""


def expect(condition, what):
    if not condition:
        raise Failure(what)


# --------------------------------------------------------------------------------------------
# Schema: the subset of .proto that iris.proto uses (proto3 messages, enums, oneofs)
# --------------------------------------------------------------------------------------------


class Field:
    def __init__(self, name, number, type_name, label, oneof):
        self.name, self.number, self.type, self.label, self.oneof = name, number, type_name, label, oneof
        self.json_name = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)

    @property
    def repeated(self):
        return self.label == "repeated"

    @property
    def has_presence(self):
        """Sent even when zero: oneof members, `optional` scalars and messages."""
        return self.oneof is not None or self.label == "optional"


class Schema:
    def __init__(self, text):
        self.messages = {}  # name -> [Field] in declaration order
        self.enums = {}  # name -> {number: name}
        text = re.sub(r"//[^\n]*", "", text)
        tokens = re.findall(r'"[^"]*"|[A-Za-z_][A-Za-z0-9_.]*|\d+|[{}=;<>,()\[\]]', text)
        self._parse(tokens)

    def _parse(self, t):
        i = 0
        while i < len(t):
            if t[i] in ("syntax", "package", "option", "import"):
                i = t.index(";", i) + 1
            elif t[i] == "message":
                i = self._message(t, i + 1)
            elif t[i] == "enum":
                i = self._enum(t, i + 1)
            else:
                raise Failure(f"unsupported .proto construct at {t[i]!r}")

    def _message(self, t, i):
        name, fields, oneof = t[i], [], None
        expect(t[i + 1] == "{", f"message {name}: expected {{")
        i += 2
        while True:
            if t[i] == "}":
                if oneof is None:
                    self.messages[name] = fields
                    return i + 1
                oneof, i = None, i + 1
            elif t[i] == "oneof":
                oneof, i = t[i + 1], i + 3
            elif t[i] in ("message", "enum", "map", "reserved", "extensions"):
                raise Failure(f"message {name}: nested {t[i]} is not supported by this client")
            else:
                label = t[i] if t[i] in ("repeated", "optional") else None
                i += 1 if label else 0
                type_name, field_name, eq, number, semi = t[i : i + 5]
                expect(eq == "=" and semi == ";", f"message {name}: cannot read field {field_name}")
                fields.append(Field(field_name, int(number), type_name, label, oneof))
                i += 5

    def _enum(self, t, i):
        name, values = t[i], {}
        i += 2
        while t[i] != "}":
            values[int(t[i + 2])] = t[i]
            i += 4
        self.enums[name] = values
        return i + 1

    def field(self, message, number):
        return next((f for f in self.messages[message] if f.number == number), None)

    def wire_order(self, message):
        """prost writes fields by number, a oneof at the place of its lowest number."""
        fields = self.messages[message]
        first = {}
        for f in fields:
            if f.oneof is not None:
                first[f.oneof] = min(first.get(f.oneof, f.number), f.number)
        return sorted(fields, key=lambda f: first[f.oneof] if f.oneof is not None else f.number)

    def json_order(self, message):
        """pbjson writes plain fields in declaration order, then the oneofs."""
        fields = self.messages[message]
        return [f for f in fields if f.oneof is None] + [f for f in fields if f.oneof is not None]

    def is_varint(self, type_name):
        return type_name in ("bool", "uint32", "uint64", "int32", "int64") or type_name in self.enums


# --------------------------------------------------------------------------------------------
# Protobuf wire format
# --------------------------------------------------------------------------------------------


def read_varint(data, i):
    shift = value = 0
    while True:
        expect(i < len(data), "truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def write_varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode(schema, message, data):
    """Bytes -> {field name: value}; only fields present on the wire; unknown fields skipped."""
    out, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            raw, i = read_varint(data, i)
        elif wire == 1:
            raw, i = data[i : i + 8], i + 8
        elif wire == 5:
            raw, i = data[i : i + 4], i + 4
        elif wire == 2:
            n, i = read_varint(data, i)
            raw, i = data[i : i + n], i + n
            expect(len(raw) == n, "truncated length-delimited field")
        else:
            raise Failure(f"{message}: unsupported wire type {wire}")
        f = schema.field(message, number)
        if f is None:
            continue  # a field from a newer schema: ignored, as the protocol requires
        if wire == 2 and f.repeated and schema.is_varint(f.type):
            values, j = [], 0
            while j < len(raw):
                v, j = read_varint(raw, j)
                values.append(scalar_of(schema, f, v))
            out.setdefault(f.name, []).extend(values)
            continue
        if f.type in schema.messages:
            value = decode(schema, f.type, raw)
        elif f.type == "string":
            value = raw.decode("utf-8")
        elif f.type == "bytes":
            value = bytes(raw)
        else:
            value = scalar_of(schema, f, raw)
        if f.repeated:
            out.setdefault(f.name, []).append(value)
        else:
            if f.oneof is not None:  # the last member of a oneof seen wins
                for other in schema.messages[message]:
                    if other.oneof == f.oneof:
                        out.pop(other.name, None)
            out[f.name] = value
    return out


def scalar_of(schema, f, v):
    if f.type == "bool":
        return v != 0
    if f.type in ("int32", "int64") and v >= 1 << 63:
        return v - (1 << 64)
    if f.type in ("uint32", "int32"):
        return v & 0xFFFFFFFF if f.type == "uint32" else v
    return v


def is_default(v):
    """proto3 leaves out scalars that hold their zero value."""
    return not isinstance(v, dict) and v in (0, False, "", b"", [])


def encode(schema, message, value):
    """{field name: value} -> bytes, in the order prost writes them."""
    out = bytearray()
    for f in schema.wire_order(message):
        if f.name not in value:
            continue
        v = value[f.name]
        if not f.has_presence and f.type not in schema.messages and is_default(v):
            continue
        if f.repeated:
            if not v:
                continue
            if schema.is_varint(f.type):  # proto3 packs repeated numbers
                body = b"".join(write_varint(int(x)) for x in v)
                out += write_varint(f.number << 3 | 2) + write_varint(len(body)) + body
            else:
                for x in v:
                    out += encode_one(schema, f, x)
        else:
            out += encode_one(schema, f, v)
    return bytes(out)


def encode_one(schema, f, v):
    if schema.is_varint(f.type):
        return write_varint(f.number << 3) + write_varint(int(v))
    if f.type in schema.messages:
        body = encode(schema, f.type, v)
    elif f.type == "string":
        body = v.encode("utf-8")
    elif f.type == "bytes":
        body = v
    else:
        raise Failure(f"field {f.name}: unsupported type {f.type}")
    return write_varint(f.number << 3 | 2) + write_varint(len(body)) + body


# --------------------------------------------------------------------------------------------
# The readable form: protoc's text format (`protoc --decode` prints the same)
# --------------------------------------------------------------------------------------------


def c_escape(raw):
    special = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x22: '\\"', 0x27: "\\'", 0x5C: "\\\\"}
    return "".join(special.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in raw)


def text_format(schema, message, value, indent=0):
    pad, lines = "  " * indent, []
    for f in sorted(schema.messages[message], key=lambda f: f.number):
        if f.name not in value:
            continue
        for v in value[f.name] if f.repeated else [value[f.name]]:
            if f.type in schema.messages:
                lines.append(f"{pad}{f.name} {{")
                lines.extend(text_format(schema, f.type, v, indent + 1))
                lines.append(f"{pad}}}")
            elif f.type in schema.enums:
                lines.append(f"{pad}{f.name}: {schema.enums[f.type].get(v, v)}")
            elif f.type == "bool":
                lines.append(f"{pad}{f.name}: {'true' if v else 'false'}")
            elif f.type == "string":
                lines.append(f'{pad}{f.name}: "{c_escape(v.encode("utf-8"))}"')
            elif f.type == "bytes":
                lines.append(f'{pad}{f.name}: "{c_escape(v)}"')
            else:
                lines.append(f"{pad}{f.name}: {v}")
    return lines


# --------------------------------------------------------------------------------------------
# The JSON mapping: lowerCamelCase names, 64-bit integers as strings, bytes as base64, enums by
# name, default values left out, unknown fields ignored
# --------------------------------------------------------------------------------------------


def to_json(schema, message, value):
    out = {}
    for f in schema.json_order(message):
        if f.name not in value:
            continue
        out[f.json_name] = [json_scalar(schema, f, x) for x in value[f.name]] if f.repeated else json_scalar(
            schema, f, value[f.name]
        )
    return out


def json_scalar(schema, f, v):
    if f.type in schema.messages:
        return to_json(schema, f.type, v)
    if f.type in schema.enums:
        return schema.enums[f.type].get(v, v)
    if f.type in SIXTY_FOUR_BIT:
        return str(v)
    if f.type == "bytes":
        return base64.b64encode(v).decode("ascii")
    return v


def from_json(schema, message, obj):
    out = {}
    for f in schema.messages[message]:
        key = f.json_name if f.json_name in obj else f.name
        if key not in obj or obj[key] is None:
            continue
        v = obj[key]
        out[f.name] = [scalar_from_json(schema, f, x) for x in v] if f.repeated else scalar_from_json(schema, f, v)
    return out  # keys of obj that name no field are ignored


def scalar_from_json(schema, f, v):
    if f.type in schema.messages:
        return from_json(schema, f.type, v)
    if f.type in schema.enums:
        if isinstance(v, int):
            return v
        names = {name: number for number, name in schema.enums[f.type].items()}
        return names.get(v, 0)  # a name from a newer schema reads as UNSPECIFIED
    if f.type == "bytes":
        return base64.b64decode(v + "=" * (-len(v) % 4), altchars=b"-_" if ("-" in v or "_" in v) else None)
    if f.type in SIXTY_FOUR_BIT or f.type in ("uint32", "int32"):
        return int(v)
    return v


def json_text(obj):
    """The compact JSON text the server writes (serde_json's layout)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

# Messages whose every oneof member (each operation, event, group operation, inbox entry, group
# result) must appear in at least one fixture.
COVERED = ("ClientOp", "ServerEvent", "GroupOp", "GroupResult", "InboxItem")


def check_fixtures(schema, folder):
    names = sorted(n[: -len(".bin")] for n in os.listdir(folder) if n.endswith(".bin"))
    expect(names, f"no fixtures in {folder}")
    seen = set()
    for name in names:
        message = "ClientFrame" if name.startswith("client_") else "ServerFrame"
        expect(name.startswith(("client_", "server_")), f"{name}: a fixture is client_* or server_*")
        read = lambda ext: open(os.path.join(folder, name + ext), "rb").read()
        binary, text, js = read(".bin"), read(".txt").decode("utf-8"), read(".json").decode("utf-8")
        value = decode(schema, message, binary)
        got_text = "\n".join(text_format(schema, message, value)) + "\n"
        expect(got_text == text, f"{name}: decoded .bin differs from .txt:\n{got_text}\nvs\n{text}")
        got_json = json_text(to_json(schema, message, value))
        expect(got_json == js, f"{name}: .bin as JSON differs from .json:\n{got_json}\nvs\n{js}")
        again = encode(schema, message, from_json(schema, message, json.loads(js)))
        expect(again == binary, f"{name}: .json encoded differs from .bin:\n{again.hex()}\nvs\n{binary.hex()}")
        mark_seen(schema, message, value, seen)
    missing = [
        f"{m}.{f.name}" for m in COVERED for f in schema.messages[m] if f.oneof and (m, f.name) not in seen
    ]
    expect(not missing, f"no fixture covers {', '.join(missing)}")
    print(f"fixtures: {len(names)} frames decode, print, map to JSON and encode back identically")


def mark_seen(schema, message, value, seen):
    for f in schema.messages[message]:
        if f.name in value:
            seen.add((message, f.name))
            if f.type in schema.messages:
                for v in value[f.name] if f.repeated else [value[f.name]]:
                    mark_seen(schema, f.type, v, seen)


# --------------------------------------------------------------------------------------------
# live: HTTP, framed TCP and a WebSocket written with the standard library
# --------------------------------------------------------------------------------------------


class Http:
    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80

    def call(self, method, path, body=None, headers=None, raw=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        headers = dict(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers.setdefault("content-type", "application/json")
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        return resp.status, json.loads(payload) if payload[:1] in (b"{", b"[") else payload

    def login(self, phone, device):
        status, body = self.call("POST", "/v1/auth/request-code", {"phone": phone})
        expect(status == 200, f"request-code: {status} {body}")
        verify = {"phone": phone, "code": "000000", "device_name": device}
        status, creds = self.call("POST", "/v1/auth/verify", verify)
        expect(status == 200, f"verify: {status} {creds}")
        return creds


def hello_op(creds, request_id=1):
    hello = {"versions": [{"major": 1, "minor": 0}], "token": creds["access_token"], "device_id": creds["device_id"]}
    return {"request_id": request_id, "hello": hello}


class TcpConn:
    """Framed TCP: a u32 big-endian length, then one protobuf frame."""

    def __init__(self, schema, addr):
        host, port = addr.rsplit(":", 1)
        self.schema, self.sock, self.events = schema, socket.create_connection((host, int(port)), TIMEOUT_S), []

    def send(self, ops):
        body = encode(self.schema, "ClientFrame", {"ops": ops})
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            expect(chunk, "the server closed the TCP connection")
            buf += chunk
        return buf

    def event(self):
        while not self.events:
            (n,) = struct.unpack(">I", self._read(4))
            self.events = decode(self.schema, "ServerFrame", self._read(n)).get("events", [])
        return self.events.pop(0)


class WsConn:
    """A WebSocket client (RFC 6455) speaking iris.v1.json: one text message per frame."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, schema, host, port, path, subprotocol="iris.v1.json"):
        self.schema, self.events = schema, []
        self.sock = socket.create_connection((host, port), TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            expect(chunk, "the server closed during the WebSocket upgrade")
            head += chunk
        head, self.rest = head.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode().split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        if self.status == 101:
            accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
            expect(self.headers.get("sec-websocket-accept") == accept, "bad Sec-WebSocket-Accept")

    def refusal_body(self):
        """The body of a refused upgrade (its Content-Length is in the headers)."""
        n = int(self.headers.get("content-length", "0"))
        while len(self.rest) < n:
            self.rest += self.sock.recv(4096)
        return json.loads(self.rest[:n])

    def _read(self, n):
        while len(self.rest) < n:
            chunk = self.sock.recv(65536)
            expect(chunk, "the server closed the WebSocket")
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def send_text(self, text, opcode=0x1):
        payload, mask = text.encode() if isinstance(text, str) else text, os.urandom(4)
        n = len(payload)
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            length = bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode]) + length + mask + masked)

    def send(self, ops):
        self.send_text(json_text(to_json(self.schema, "ClientFrame", {"ops": ops})))

    def message(self):
        """The next data message: (opcode, payload); None on a close."""
        data, first_opcode = b"", None
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            payload = self._read(n)
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self.send_text(payload, opcode=0xA)
                continue
            if opcode == 0xA:
                continue
            first_opcode = first_opcode or opcode
            data += payload
            if b0 & 0x80:
                return first_opcode, data

    def event(self):
        while not self.events:
            got = self.message()
            expect(got is not None, "the server closed the WebSocket")
            opcode, data = got
            expect(opcode == 0x1, "a binary message on the JSON subprotocol")
            raw = json.loads(data)
            frame = from_json(self.schema, "ServerFrame", raw)
            self.events = [(e, r) for e, r in zip(frame.get("events", []), raw.get("events", []))]
        return self.events.pop(0)


def next_answer(conn, request_id):
    """The event answering `request_id`, skipping deliveries and other unsolicited events."""
    for _ in range(100):
        e = conn.event()
        e = e[0] if isinstance(e, tuple) else e
        if e.get("request_id", 0) == request_id:
            expect("error" not in e, f"request {request_id} refused: {e.get('error')}")
            return e
    raise Failure(f"no answer to request {request_id}")


def next_delivery(conn):
    for _ in range(100):
        e = conn.event()
        e = e[0] if isinstance(e, tuple) else e
        if "delivery" in e:
            return e["delivery"]["items"]
    raise Failure("no delivery")


def live(schema, base):
    api = Http(base)
    status, info = api.call("GET", "/v1/info")
    expect(status == 200 and info.get("dev"), f"/v1/info must answer a dev-mode server: {status} {info}")
    status, doc = api.call("GET", "/v1/openapi.json")
    expect(status == 200 and "/v1/auth/verify" in doc.get("paths", {}), "/v1/openapi.json documents the API")

    alice, bob = api.login("+15557770001", "python-tcp"), api.login("+15557770002", "python-ws")
    tcp = TcpConn(schema, info["tcp_addr"])
    tcp.send([hello_op(alice)])
    welcome = next_answer(tcp, 1)["welcome"]
    expect(welcome["account_id"] == alice["account_id"], f"Welcome for the wrong account: {welcome}")

    host, port = api.host, api.port
    ws = WsConn(schema, host, port, info["ws_path"])
    expect(ws.status == 101 and ws.headers.get("sec-websocket-protocol") == "iris.v1.json", f"upgrade: {ws.status}")
    ws.send([hello_op(bob)])
    event, raw = ws.event()
    expect("welcome" in event and raw["requestId"] == "1", f"expected Welcome with requestId \"1\": {raw}")
    expect(raw["welcome"]["accountId"] == str(bob["account_id"]), "u64 fields are JSON strings")

    # alice (TCP, protobuf) -> bob (WebSocket, JSON); bob acks; alice gets the DELIVERED receipt.
    wave = "hi 👋".encode()
    tcp.send([{"request_id": 2, "send": {"client_msg_id": "py-1", "to_phone": "+15557770002", "payload": wave}}])
    sent = next_answer(tcp, 2)["send_result"]
    expect(schema.enums["SendStatus"][sent["status"]] == "SEND_STATUS_ACCEPTED", f"send: {sent}")
    items = next_delivery(ws)
    msg = items[0]["message"]
    expect(msg["payload"] == wave and msg["from_account_id"] == alice["account_id"], f"{items}")
    expect(items[0]["server_msg_id"] == sent["server_msg_id"], "the delivery carries the sender's server id")
    ws.send([{"request_id": 2, "ack": {"up_to_seq": items[-1]["seq"]}}])
    receipt = next_delivery(tcp)[0]["receipt"]
    expect(schema.enums["ReceiptType"][receipt["type"]] == "RECEIPT_TYPE_DELIVERED", f"receipt: {receipt}")
    expect(receipt["server_msg_ids"] == [sent["server_msg_id"]], f"receipt for the wrong message: {receipt}")

    # bob (JSON) -> alice (protobuf); alice acks.
    reply = {"client_msg_id": "py-2", "to_account_id": alice["account_id"], "payload": b"hello back"}
    ws.send([{"request_id": 3, "send": reply}])
    next_answer(ws, 3)
    items = next_delivery(tcp)
    while "message" not in items[-1]:
        items = next_delivery(tcp)
    expect(items[-1]["message"]["payload"] == b"hello back", f"{items}")
    tcp.send([{"request_id": 3, "ack": {"up_to_seq": items[-1]["seq"]}}, {"request_id": 4, "ping": {}}])
    next_answer(tcp, 4)

    # Forward compatibility: fields and operations this server does not know are ignored.
    ws.send_text('{"ops":[{"requestId":"9","ping":{"clientTimeMs":"5","fromTheFuture":1},"zzz":[]}]}')
    expect(next_answer(ws, 9)["pong"]["client_time_ms"] == 5, "unknown JSON fields are ignored")

    # The edges: an upgrade without a subprotocol, and an oversized body, are typed refusals.
    refused = WsConn(schema, host, port, info["ws_path"], subprotocol=None)
    expect(refused.status == 400, f"an upgrade without a subprotocol is refused, got {refused.status}")
    expect(refused.refusal_body()["code"] == "ERROR_CODE_UNSUPPORTED_SUBPROTOCOL", "typed subprotocol refusal")
    status, body = api.call("POST", "/v1/auth/request-code", raw=b" " * (10 * 1024 * 1024))
    expect(status == 413 and body["code"] == "ERROR_CODE_BODY_TOO_LARGE", f"10 MB body: {status} {body}")
    print("live: login, TCP and WebSocket handshakes, send, receive, ack, receipt and refusals as documented")


def main(argv):
    if len(argv) != 4 or argv[1] not in ("fixtures", "live"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        schema = Schema(open(argv[2], encoding="utf-8").read())
        check_fixtures(schema, argv[3]) if argv[1] == "fixtures" else live(schema, argv[3])
    except (Failure, OSError, ValueError, KeyError) as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
