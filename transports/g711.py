"""G.711 μ-law and A-law in numpy, by table.

Both codecs map one 16-bit linear sample to one byte. The tables follow ITU-T G.711 as the
classic reference implementation computes it (the one Python's old ``audioop`` used): μ-law
works on the top 14 bits of the sample, A-law on the top 13, each with eight segments of
sixteen steps. Encoding is one lookup in a 65,536-entry table indexed by the sample's bit
pattern; decoding is one lookup in a 256-entry table. Decoding then encoding a byte gives the
byte back, except μ-law's two zeros (``0x7F`` decodes to 0, which encodes as ``0xFF``).

Quantisation error: a sample round-trips (encode then decode) to within about a sixteenth of
its magnitude (:func:`max_error`): the codecs keep a roughly constant signal-to-noise ratio.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "alaw_to_pcm16",
    "max_error",
    "pcm16_to_alaw",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
]

_ULAW_BIAS = 0x84  # 132, added before the segment search (in 16-bit units)
_ULAW_CLIP = 8159  # the largest 14-bit magnitude μ-law encodes


def _segment(magnitude: npt.NDArray[np.int64], ends: list[int]) -> npt.NDArray[np.int64]:
    """Index of the first segment end at or above ``magnitude`` (8 when above them all)."""
    return np.searchsorted(np.asarray(ends), magnitude, side="left").astype(np.int64)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    linear = np.arange(65536, dtype=np.int64).astype(np.uint16).view(np.int16).astype(np.int64)
    value = linear >> 2  # 14-bit, arithmetic shift
    negative = value < 0
    value = np.where(negative, -value, value)
    mask = np.where(negative, 0x7F, 0xFF)
    value = np.minimum(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = _segment(value, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    code = (np.minimum(seg, 7) << 4) | ((value >> (np.minimum(seg, 7) + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int64) & 0xFF
    step = ((code & 0x0F) << 3) + _ULAW_BIAS
    step <<= (code & 0x70) >> 4
    return np.where(code & 0x80, _ULAW_BIAS - step, step - _ULAW_BIAS).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    linear = np.arange(65536, dtype=np.int64).astype(np.uint16).view(np.int16).astype(np.int64)
    value = linear >> 3  # 13-bit, arithmetic shift
    negative = value < 0
    mask = np.where(negative, 0x55, 0xD5)
    value = np.where(negative, -value - 1, value)
    seg = _segment(value, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (np.minimum(seg, 7) << 4) | ((value >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int64) ^ 0x55
    value = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    value = np.where(seg == 0, value + 8, value + 0x108)
    value = np.where(seg > 1, value << np.maximum(seg - 1, 0), value)
    return np.where(code & 0x80, value, -value).astype(np.int16)


#: μ-law byte for each 16-bit sample, indexed by the sample's bits as ``uint16``
ULAW_ENCODE = _build_ulaw_encode()
#: 16-bit sample for each μ-law byte
ULAW_DECODE = _build_ulaw_decode()
#: A-law byte for each 16-bit sample, indexed by the sample's bits as ``uint16``
ALAW_ENCODE = _build_alaw_encode()
#: 16-bit sample for each A-law byte
ALAW_DECODE = _build_alaw_decode()
for _table in (ULAW_ENCODE, ULAW_DECODE, ALAW_ENCODE, ALAW_DECODE):
    _table.flags.writeable = False


def _samples(pcm: bytes) -> npt.NDArray[np.uint16]:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<u2")


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """PCM16 little-endian bytes to μ-law bytes (one per sample)."""
    return ULAW_ENCODE[_samples(pcm)].tobytes()


def ulaw_to_pcm16(data: bytes) -> bytes:
    """μ-law bytes to PCM16 little-endian bytes."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """PCM16 little-endian bytes to A-law bytes (one per sample)."""
    return ALAW_ENCODE[_samples(pcm)].tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    """A-law bytes to PCM16 little-endian bytes."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def max_error(sample: int) -> int:
    """A bound on ``|decode(encode(sample)) - sample|`` for either law: ``|sample| / 16 + 16``.

    Each segment doubles the step, so the error grows with the magnitude: at most 8 near zero,
    515 (μ-law) or 512 (A-law) in the loudest segment, 644 where μ-law clips (the tests check
    every 16-bit value against this bound).
    """
    return abs(sample) // 16 + 16
