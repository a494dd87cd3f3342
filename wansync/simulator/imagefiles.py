"""Real, small pictures made from nothing but the stdlib: PNG, baseline JPEG, lossless WebP.

The simulator hands out pictures a real viewer opens (and the tests decode or check
against independent tools), so each format is written as its specification says:

- PNG: signature, IHDR (8-bit RGB), one zlib IDAT of filter-0 rows, IEND; CRCs by zlib.
- JPEG: baseline sequential DCT (SOF0), 3 components at 1x1 sampling sharing one
  quantisation table and one pair of Huffman tables. The Huffman tables are not the
  Annex K ones: every DC category gets a 4-bit code and every AC (run, size) symbol an
  8-bit code, which is a valid canonical table by construction (lengths fit, no code is
  all ones) and needs no memorised constants.
- WebP: lossless (VP8L) of one colour: five "simple" prefix codes of one symbol each, so
  every pixel costs zero bits and the whole bitstream is a few bytes.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator

Pixel = tuple[int, int, int]


def gradient(width: int, height: int, seed: int) -> list[list[Pixel]]:
    """A colour gradient with a diagonal band; `seed` shifts the colours (pictures differ)."""
    rows = []
    for y in range(height):
        row = []
        for x in range(width):
            band = 80 if (x + y + seed) % 24 < 6 else 0
            r = (x * 255 // max(1, width - 1) + seed * 37) % 256
            g = (y * 255 // max(1, height - 1) + seed * 91) % 256
            b = min(255, (seed * 53) % 256 // 2 + band)
            row.append((r, g, b))
        rows.append(row)
    return rows


# -- PNG ----------------------------------------------------------------------------------
def png(pixels: list[list[Pixel]]) -> bytes:
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\0" + bytes(c for p in row for c in p) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# -- JPEG (baseline) ----------------------------------------------------------------------
QUANT = 8  # one flat quantisation step: coefficients stay within baseline's ranges
DC_BITS = [0, 0, 0, 12] + [0] * 12  # 12 DC categories, all 4-bit codes
AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]
AC_BITS = [0] * 7 + [len(AC_SYMBOLS)] + [0] * 8  # 162 symbols, all 8-bit codes
ZIGZAG = [
    (row, col)
    for s in range(15)
    for row, col in (
        [(r, s - r) for r in range(8) if 0 <= s - r < 8]
        if s % 2
        else [(r, s - r) for r in reversed(range(8)) if 0 <= s - r < 8]
    )
]
COS = [
    [
        (math.sqrt(0.5) if u == 0 else 1.0) / 2 * math.cos((2 * x + 1) * u * math.pi / 16)
        for x in range(8)
    ]
    for u in range(8)
]


def _codes(bits: list[int], symbols: list[int]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes (JPEG Annex C): symbol -> (code, length)."""
    table, code, at = {}, 0, 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            table[symbols[at]] = (code, length)
            code, at = code + 1, at + 1
        code <<= 1
    return table


DC_CODES = _codes(DC_BITS, list(range(12)))
AC_CODES = _codes(AC_BITS, AC_SYMBOLS)


class _Bits:
    """The entropy-coded segment: bits MSB first, a 0x00 stuffed after every 0xFF."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc, self.count = 0, 0

    def put(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.count += 1
            if self.count == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.count = 0, 0

    def done(self) -> bytes:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)  # pad with ones
        return bytes(self.out)


def _category(value: int) -> tuple[int, int]:
    """(size, bits) of a coefficient as JPEG codes it: negatives are one's complement."""
    size = abs(value).bit_length()
    return size, value if value >= 0 else value + (1 << size) - 1


def _block(samples: list[list[float]]) -> list[int]:
    """One 8x8 block: forward DCT (rows, then columns), quantisation, zigzag order."""
    rows = [[sum(COS[u][x] * line[x] for x in range(8)) for u in range(8)] for line in samples]
    coeffs = [[sum(COS[v][y] * rows[y][u] for y in range(8)) for u in range(8)] for v in range(8)]
    return [round(coeffs[row][col] / QUANT) for row, col in ZIGZAG]


def _encode_block(bits: _Bits, zz: list[int], previous_dc: int) -> int:
    size, value = _category(zz[0] - previous_dc)
    bits.put(*DC_CODES[size])
    bits.put(value, size)
    run = 0
    for coefficient in zz[1:]:
        if coefficient == 0:
            run += 1
            continue
        while run > 15:
            bits.put(*AC_CODES[0xF0])  # ZRL: sixteen zeros
            run -= 16
        size, value = _category(coefficient)
        bits.put(*AC_CODES[(run << 4) | size])
        bits.put(value, size)
        run = 0
    if run:
        bits.put(*AC_CODES[0x00])  # EOB
    return zz[0]


def _planes(pixels: list[list[Pixel]]) -> Iterator[list[list[float]]]:
    """Y, Cb, Cr planes, level-shifted by -128 (JFIF's conversion)."""
    yield [[0.299 * r + 0.587 * g + 0.114 * b - 128 for r, g, b in row] for row in pixels]
    yield [[-0.1687 * r - 0.3313 * g + 0.5 * b for r, g, b in row] for row in pixels]
    yield [[0.5 * r - 0.4187 * g - 0.0813 * b for r, g, b in row] for row in pixels]


def jpeg(pixels: list[list[Pixel]]) -> bytes:
    """A baseline JPEG of `pixels` (width and height multiples of 8)."""
    height, width = len(pixels), len(pixels[0])
    planes = list(_planes(pixels))
    bits, previous = _Bits(), [0, 0, 0]
    for by in range(0, height, 8):
        for bx in range(0, width, 8):
            for c, plane in enumerate(planes):  # an MCU: one block of each component
                samples = [row[bx : bx + 8] for row in plane[by : by + 8]]
                previous[c] = _encode_block(bits, _block(samples), previous[c])
    jfif = b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"".join(
        bytes([c, 0x11, 0]) for c in (1, 2, 3)
    )
    scan = bytes([3]) + b"".join(bytes([c, 0x00]) for c in (1, 2, 3)) + bytes([0, 63, 0])
    return (
        b"\xff\xd8"
        + _segment(0xE0, jfif)
        + _segment(0xDB, bytes([0]) + bytes([QUANT] * 64))
        + _segment(0xC0, frame)
        + _segment(0xC4, bytes([0x00]) + bytes(DC_BITS) + bytes(range(12)))
        + _segment(0xC4, bytes([0x10]) + bytes(AC_BITS) + bytes(AC_SYMBOLS))
        + _segment(0xDA, scan)
        + bits.done()
        + b"\xff\xd9"
    )


def _segment(marker: int, data: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data


# -- WebP (lossless, one colour) ------------------------------------------------------------
def webp(width: int, height: int, colour: Pixel) -> bytes:
    """A lossless WebP of `width` x `height` pixels of one opaque colour."""
    bits: list[tuple[int, int]] = [(0x2F, 8), (width - 1, 14), (height - 1, 14), (0, 1), (0, 3)]
    bits += [(0, 1), (0, 1), (0, 1)]  # no transform, no colour cache, no meta prefix codes
    r, g, b = colour
    for symbol in (g, r, b, 255, 0):  # green, red, blue, alpha, distance: one symbol each
        bits += [(1, 1), (0, 1), (1, 1), (symbol, 8)]  # simple code, 1 symbol, 8-bit
    data = _lsb_first(bits)
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _lsb_first(fields: list[tuple[int, int]]) -> bytes:
    """VP8L packs each value least significant bit first, from bit 0 of each byte."""
    value = total = 0
    for field, width in fields:
        value |= field << total
        total += width
    return value.to_bytes((total + 7) // 8, "little")
