"""Just enough of the AMQP 1.0 type system to take messages apart and put them back together.

Messages are kept as the sender encoded them. Round-tripping through proton's `Message` class can alter a
payload, so the broker splits the bytes into sections, decodes only the small ones it needs (header,
annotations, properties), and re-encodes only what it changes (header and message annotations on every
delivery, application properties when dead-lettering).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proton import Data, Described, symbol, ubyte, uint, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

_BODY_SECTIONS = (DATA, AMQP_SEQUENCE, AMQP_VALUE)
_SYMBOL_DESCRIPTORS = {
    b"amqp:header:list": HEADER,
    b"amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    b"amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    b"amqp:properties:list": PROPERTIES,
    b"amqp:application-properties:map": APPLICATION_PROPERTIES,
    b"amqp:data:binary": DATA,
    b"amqp:amqp-sequence:list": AMQP_SEQUENCE,
    b"amqp:value:*": AMQP_VALUE,
    b"amqp:footer:map": FOOTER,
}

# Properties list field positions (AMQP 1.0 section 3.2.4).
PROP_MESSAGE_ID = 0
PROP_ABSOLUTE_EXPIRY = 8
PROP_GROUP_ID = 10


class CodecError(ValueError):
    """The bytes are not a well-formed AMQP message."""


def _skip_value(buf: bytes, pos: int) -> int:
    """Position just after the encoded value starting at `pos` (constructor included)."""
    code = buf[pos]
    pos += 1
    if code == 0x00:  # described: descriptor then value
        pos = _skip_value(buf, pos)
        return _skip_value(buf, pos)
    width = code >> 4
    if width == 0x4:
        return pos
    if width == 0x5:
        return pos + 1
    if width == 0x6:
        return pos + 2
    if width == 0x7:
        return pos + 4
    if width == 0x8:
        return pos + 8
    if width == 0x9:
        return pos + 16
    if width in (0xA, 0xC, 0xE):
        return pos + 1 + buf[pos]
    if width in (0xB, 0xD, 0xF):
        return pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
    raise CodecError(f"unknown AMQP format code 0x{code:02x}")


def split_sections(buf: bytes) -> list[tuple[int, bytes]]:
    """The message's sections as (descriptor code, encoded section bytes), in order."""
    sections: list[tuple[int, bytes]] = []
    pos = 0
    end = len(buf)
    try:
        while pos < end:
            start = pos
            if buf[pos] != 0x00:
                raise CodecError("section is not a described type")
            code = buf[pos + 1]
            if code == 0x53:
                descriptor = buf[pos + 2]
            elif code == 0x80:
                descriptor = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            elif code in (0xA3, 0xB3):
                after = _skip_value(buf, pos + 1)
                name = buf[pos + 3 : after] if code == 0xA3 else buf[pos + 6 : after]
                descriptor = _SYMBOL_DESCRIPTORS.get(bytes(name), -1)
            else:
                raise CodecError("unsupported section descriptor")
            if not HEADER <= descriptor <= FOOTER:
                raise CodecError(f"unknown section 0x{descriptor:x}")
            pos = _skip_value(buf, pos + 1)  # descriptor
            pos = _skip_value(buf, pos)  # value
            if pos > end:
                raise CodecError("truncated section")
            sections.append((descriptor, bytes(buf[start:pos])))
    except IndexError as error:
        raise CodecError("truncated message") from error
    if not sections:
        raise CodecError("empty message")
    return sections


def decode_value(encoded: bytes) -> Any:
    """The Python value of one encoded AMQP value (for a section: its content, without the descriptor)."""
    data = Data()
    data.decode(encoded)
    data.rewind()
    data.next()
    value = data.get_object()
    if isinstance(value, Described):
        value = value.value
    return _copy_out(value)


def _copy_out(value: Any) -> Any:
    """Proton hands binaries out as views into its own buffers; copy them before the buffer is reused."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {_copy_out(key): _copy_out(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_out(item) for item in value]
    return value


def encode_section(descriptor: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(descriptor), value))
    return bytes(data.encode())


def encode_value(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return bytes(data.encode())


def encode_header(durable: bool | None, priority: int | None, ttl_ms: int | None, delivery_count: int) -> bytes:
    # Proton drops default header fields, so the list is written here with delivery-count always present.
    return encode_section(
        HEADER,
        [
            durable,
            None if priority is None else ubyte(priority),
            None if ttl_ms is None else uint(ttl_ms),
            None,
            uint(delivery_count),
        ],
    )


def encode_annotations(annotations: dict[Any, Any]) -> bytes:
    return encode_section(MESSAGE_ANNOTATIONS, {symbol(str(key)): value for key, value in annotations.items()})


@dataclass
class ParsedMessage:
    """A message split into what the broker needs to read and what it passes through untouched."""

    durable: bool | None = None
    priority: int | None = None
    ttl_ms: int | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    properties: list[Any] = field(default_factory=list)
    application_properties: dict[str, Any] | None = None
    # Encoded properties section onwards, application-properties excluded (kept separately).
    properties_raw: bytes = b""
    application_properties_raw: bytes = b""
    body_raw: bytes = b""

    @property
    def message_id(self) -> Any:
        return self.properties[PROP_MESSAGE_ID] if len(self.properties) > PROP_MESSAGE_ID else None

    @property
    def session_id(self) -> str | None:
        value = self.properties[PROP_GROUP_ID] if len(self.properties) > PROP_GROUP_ID else None
        return None if value is None else str(value)

    def tail(self) -> bytes:
        """Properties, application properties, body and footer, encoded."""
        return self.properties_raw + self.application_properties_raw + self.body_raw


def _section_content(section: bytes) -> Any:
    # Skip the descriptor: decode the described value and take its content.
    return decode_value(section)


def parse_message(buf: bytes) -> ParsedMessage:
    parsed = ParsedMessage()
    has_body = False
    for descriptor, section in split_sections(buf):
        if descriptor == HEADER:
            header = _section_content(section) or []
            header = list(header) + [None] * (5 - len(header))
            parsed.durable = header[0]
            parsed.priority = None if header[1] is None else int(header[1])
            parsed.ttl_ms = None if header[2] is None else int(header[2])
        elif descriptor == MESSAGE_ANNOTATIONS:
            parsed.annotations = {str(key): value for key, value in (_section_content(section) or {}).items()}
        elif descriptor == PROPERTIES:
            parsed.properties = list(_section_content(section) or [])
            parsed.properties_raw = section
        elif descriptor == APPLICATION_PROPERTIES:
            parsed.application_properties_raw = section
        elif descriptor in _BODY_SECTIONS or descriptor == FOOTER:
            has_body = has_body or descriptor in _BODY_SECTIONS
            parsed.body_raw += section
        # Delivery annotations are hop-by-hop: dropped.
    if not has_body:
        raise CodecError("message without a body")
    return parsed


def read_application_properties(parsed: ParsedMessage) -> dict[str, Any]:
    if not parsed.application_properties_raw:
        return {}
    return {str(key): value for key, value in (_section_content(parsed.application_properties_raw) or {}).items()}


def with_application_properties(parsed: ParsedMessage, updates: dict[str, Any]) -> ParsedMessage:
    """A copy of the message with application properties added or replaced (used when dead-lettering)."""
    properties = read_application_properties(parsed)
    properties.update(updates)
    return ParsedMessage(
        durable=parsed.durable,
        priority=parsed.priority,
        ttl_ms=parsed.ttl_ms,
        annotations=dict(parsed.annotations),
        properties=list(parsed.properties),
        properties_raw=parsed.properties_raw,
        application_properties_raw=encode_section(APPLICATION_PROPERTIES, properties),
        body_raw=parsed.body_raw,
    )


def encode_stored(parsed: ParsedMessage) -> bytes:
    """The message as stored: header (without delivery count), annotations, then the untouched tail."""
    head = encode_header(parsed.durable, parsed.priority, parsed.ttl_ms, 0)
    annotations = encode_annotations(parsed.annotations) if parsed.annotations else b""
    return head + annotations + parsed.tail()


def split_batch(buf: bytes) -> list[bytes] | None:
    """The messages inside a batch transfer, or None when `buf` is an ordinary message.

    The SDK marks batches with message-format 0x80013700, which proton's binding does not expose, so a
    batch is recognised by its shape: no application properties, and a body of data sections that each
    hold a complete encoded message with a body of its own.
    """
    try:
        sections = split_sections(buf)
    except CodecError:
        return None
    data_sections = [section for code, section in sections if code == DATA]
    if not data_sections or any(code in (APPLICATION_PROPERTIES, AMQP_VALUE, AMQP_SEQUENCE) for code, _ in sections):
        return None
    inner: list[bytes] = []
    for section in data_sections:
        payload = decode_value(section)
        if not isinstance(payload, bytes | bytearray) or len(payload) < 3 or payload[0] != 0x00:
            return None
        try:
            inner_sections = split_sections(bytes(payload))
        except CodecError:
            return None
        if not any(code in _BODY_SECTIONS for code, _ in inner_sections):
            return None
        inner.append(bytes(payload))
    return inner
