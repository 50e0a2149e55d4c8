"""The exactly-once counter's per-message digest: batch and single agree, values are fixed, changes show."""

from __future__ import annotations

import numpy as np

from pulsetrain.digest import DIGEST_BITS, digest, digests


def payloads(count: int, length: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, length, dtype=np.uint8).tobytes() for _ in range(count)]


def test_a_batch_gives_each_payload_its_own_digest() -> None:
    batch = payloads(64, 3144) + payloads(5, 13, seed=1) + [b"", b"x", b"12345678", b"123456789"]
    together = digests(batch)
    assert together.dtype == np.int64
    assert together.tolist() == [digest(p) for p in batch]
    assert ((together >= 0) & (together < 2**DIGEST_BITS)).all()


def test_the_digest_of_a_payload_never_changes() -> None:
    """Sums of these digests are compared with sums computed elsewhere: the function is part of the format."""
    assert digest(b"") == 330883120693
    assert digest(b"hello") == 436495012183
    assert digest(bytes(range(256)) * 12) == 407862058193


def test_any_change_to_a_payload_changes_its_digest() -> None:
    base = payloads(1, 3144)[0]
    variants = [base[:-1], base + b"\0", b"\0" + base[1:]]
    for position in range(0, len(base), 97):  # one bit flipped, all over the payload
        flipped = bytearray(base)
        flipped[position] ^= 1 << (position % 8)
        variants.append(bytes(flipped))
    assert digest(base) not in set(digests(variants).tolist())


def test_a_hundred_thousand_random_payloads_do_not_collide() -> None:
    values = np.concatenate([digests(payloads(10_000, 64, seed=s)) for s in range(10)])
    assert len(np.unique(values)) == len(values)
