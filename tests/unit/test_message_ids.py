"""The batch entry size read from serialized Pulsar message IDs (bytes as pulsar-client 3.13 writes them)."""

from __future__ import annotations

import pytest

from pulsetrain.message_ids import UNKNOWN_BATCH_SIZE, entry_size


@pytest.mark.parametrize(("serialized", "size"), [
    ("087f100020003007", 7),  # ledger 127, entry 0, batch index 0 of 7
    ("087f100120023003", 3),  # entry 1, index 2 of 3
    ("087f1002", 1),  # unbatched
    ("08ffffffff0f10c0843d18022005309003", 400),  # multi-byte varints, partition 2, index 5 of 400
    ("087f10002005", UNKNOWN_BATCH_SIZE),  # a batch index without the size (older clients)
    ("087f1000209f49", 9376),  # ... at an index beyond that default: at least that many
    ("087f100020053080808080f0ffffffff01", UNKNOWN_BATCH_SIZE),  # a negative size, as a 10-byte varint
    ("087f10002a0201023007", 7),  # a length-delimited field (ack set) is skipped
])
def test_entry_size_of_serialized_ids(serialized: str, size: int) -> None:
    assert entry_size(bytes.fromhex(serialized)) == size


@pytest.mark.parametrize("opaque", [b"", b"m1", b"id-17", b"\x08", b"\x08\xff", b"\x00\x01", b"\x0f\x01"])
def test_bytes_that_are_no_message_id_count_as_one_message(opaque: bytes) -> None:
    assert entry_size(opaque) == 1
