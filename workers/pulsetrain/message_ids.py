"""How many messages share a message's batch entry, read from its serialized Pulsar message ID.

Why this exists: a producer that batches writes many messages into one entry, and a broker with Pulsar's
default `acknowledgmentAtBatchIndexLevelEnabled=false` removes the entry only once every message in it is
acknowledged. A worker that stops (or crashes) with an entry partly committed gets the whole entry back,
the committed part included, so the ledger must still cover that part however many checkpoints ago it
was trained (see `Ledger.commit`). The entry's size is in the ID: `MessageId.serialize()` writes the
`MessageIdData` protobuf (ledger 1, entry 2, partition 3, batch index 4, ack set 5, batch size 6, ...).
This reads it with a few lines of wire-format parsing, so that the ledger needs no Pulsar library.
"""

from __future__ import annotations

__all__ = ["UNKNOWN_BATCH_SIZE", "entry_size"]

UNKNOWN_BATCH_SIZE = 1000  # a batched ID without its size (older clients): Pulsar's default batchingMaxMessages
MAX_BATCH_SIZE = 1 << 20  # more is no batch size a client writes (a corrupt or negative field): taken as unknown
_BATCH_INDEX, _BATCH_SIZE = 4, 6
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def entry_size(message_id: bytes) -> int:
    """How many messages the ID's entry holds: its batch size, 1 for an unbatched message, and 1 for bytes
    that are not a serialized message ID (the ledger's IDs are opaque to it otherwise)."""
    try:
        fields = _varint_fields(message_id)
    except ValueError:
        return 1
    size = fields.get(_BATCH_SIZE, 0)
    if 0 < size <= MAX_BATCH_SIZE:
        return size
    if _BATCH_INDEX not in fields:
        return 1
    return max(UNKNOWN_BATCH_SIZE, min(fields[_BATCH_INDEX], MAX_BATCH_SIZE) + 1)


def _varint_fields(data: bytes) -> dict[int, int]:
    """The varint fields of a protobuf message by number (the last value of a repeated one); other wire
    types are skipped. ValueError when the bytes are not a well-formed message."""
    fields: dict[int, int] = {}
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire_type == _VARINT:
            fields[number], position = _varint(data, position)
        elif wire_type == _LENGTH:
            length, position = _varint(data, position)
            position += length
        elif wire_type in (_FIXED64, _FIXED32):
            position += 8 if wire_type == _FIXED64 else 4
        else:
            raise ValueError(f"wire type {wire_type}")
        if position > len(data):
            raise ValueError("truncated")
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position
