"""G.711 μ-law and A-law: exact tables, known values, round trips, any input."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transports.g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    ULAW_DECODE,
    ULAW_ENCODE,
    alaw_to_pcm16,
    max_error,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)

EVERY_SAMPLE = np.arange(-32768, 32768, dtype="<i2").tobytes()


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


# (byte, μ-law value, A-law value): the ends of the range, both zeros, a few steps between
DECODED = [
    (0x00, -32124, -5504),
    (0x80, 32124, 5504),
    (0xFF, 0, 848),
    (0x7F, 0, -848),
    (0x55, -716, -8),
    (0xD5, 716, 8),
    (0x2A, -5372, -32256),
    (0xAA, 5372, 32256),
    (0x0F, -16764, -6784),
    (0x8F, 16764, 6784),
]

# (sample, μ-law byte, A-law byte)
ENCODED = [
    (0, 0xFF, 0xD5),
    (1, 0xFF, 0xD5),
    (-1, 0x7E, 0x55),
    (8, 0xFE, 0xD5),
    (100, 0xF2, 0xD3),
    (-100, 0x72, 0x53),
    (1000, 0xCE, 0xFA),
    (32767, 0x80, 0xAA),
    (-32768, 0x00, 0x2A),
]


@pytest.mark.parametrize(("byte", "ulaw", "alaw"), DECODED)
def test_known_bytes_decode_to_known_samples(byte: int, ulaw: int, alaw: int) -> None:
    assert samples(ulaw_to_pcm16(bytes([byte]))) == [ulaw]
    assert samples(alaw_to_pcm16(bytes([byte]))) == [alaw]


@pytest.mark.parametrize(("sample", "ulaw", "alaw"), ENCODED)
def test_known_samples_encode_to_known_bytes(sample: int, ulaw: int, alaw: int) -> None:
    assert pcm16_to_ulaw(pcm(sample)) == bytes([ulaw])
    assert pcm16_to_alaw(pcm(sample)) == bytes([alaw])


def test_the_tables_match_the_reference_implementation_for_every_value() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # in the standard library up to 3.12
    every_byte = bytes(range(256))
    assert pcm16_to_ulaw(EVERY_SAMPLE) == audioop.lin2ulaw(EVERY_SAMPLE, 2)
    assert pcm16_to_alaw(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE, 2)
    assert ulaw_to_pcm16(every_byte) == audioop.ulaw2lin(every_byte, 2)
    assert alaw_to_pcm16(every_byte) == audioop.alaw2lin(every_byte, 2)


def test_bytes_survive_decoding_and_encoding() -> None:
    assert list(ALAW_ENCODE[ALAW_DECODE.view(np.uint16)]) == list(range(256))
    ulaw = ULAW_ENCODE[ULAW_DECODE.view(np.uint16)]
    # μ-law has two zeros; the negative one encodes as the positive one
    assert [n for n in range(256) if ulaw[n] != n] == [0x7F]
    assert ulaw[0x7F] == 0xFF


@pytest.mark.parametrize(
    ("encode", "decode"), [(pcm16_to_ulaw, ulaw_to_pcm16), (pcm16_to_alaw, alaw_to_pcm16)]
)
def test_every_sample_round_trips_within_the_quantisation_error(
    encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    original = np.frombuffer(EVERY_SAMPLE, "<i2").astype(np.int64)
    back = np.frombuffer(decode(encode(EVERY_SAMPLE)), "<i2").astype(np.int64)
    bound = np.abs(original) // 16 + 16
    assert np.all(np.abs(back - original) <= bound)
    assert max_error(-32768) == 32768 // 16 + 16


def test_the_laws_keep_order() -> None:
    decoded = np.frombuffer(ulaw_to_pcm16(pcm16_to_ulaw(EVERY_SAMPLE)), "<i2")
    assert np.all(np.diff(decoded.astype(np.int64)) >= 0)  # a bigger sample never decodes smaller
    decoded = np.frombuffer(alaw_to_pcm16(pcm16_to_alaw(EVERY_SAMPLE)), "<i2")
    assert np.all(np.diff(decoded.astype(np.int64)) >= 0)


@given(st.binary(max_size=2000))
def test_any_bytes_decode(data: bytes) -> None:
    assert len(ulaw_to_pcm16(data)) == 2 * len(data)
    assert len(alaw_to_pcm16(data)) == 2 * len(data)


@given(st.lists(st.integers(-32768, 32767), max_size=500))
def test_any_samples_encode_one_byte_each_and_round_trip_near(values: list[int]) -> None:
    data = pcm(*values)
    for encode, decode in ((pcm16_to_ulaw, ulaw_to_pcm16), (pcm16_to_alaw, alaw_to_pcm16)):
        encoded = encode(data)
        assert len(encoded) == len(values)
        for original, back in zip(values, samples(decode(encoded)), strict=True):
            assert abs(back - original) <= max_error(original)


def test_an_odd_byte_count_is_not_pcm16() -> None:
    with pytest.raises(ValueError, match="even"):
        pcm16_to_ulaw(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="even"):
        pcm16_to_alaw(b"\x00")


def test_the_tables_are_read_only() -> None:
    with pytest.raises(ValueError, match="read-only"):
        ULAW_DECODE[0] = 1
