"""Zip archives whose members are compressed with zstd (method 93), as Inspect writes its .eval logs since 0.3.206 —
written here by the zip format's layout (APPNOTE 4.3), since Python's zipfile writes zstd only from 3.14."""

import struct
import zlib
from pathlib import Path

import zstandard

ZSTD = 93
LOCAL = struct.Struct("<4s2B4HL2L2H")
CENTRAL = struct.Struct("<4s4B4HL2L5HLL")
END = struct.Struct("<4s4H2LH")


def write_zstd_zip(path: Path, members: dict[str, bytes], frames: int = 1, corrupt: str | None = None) -> None:
    """Write `members` zstd-compressed, each in `frames` frames (one, as Inspect's writers do: zipfile-zstd, whose
    reader then reads them back, and Python 3.14's zipfile); the member named `corrupt` gets a wrong CRC."""
    body, directory = bytearray(), bytearray()
    for name, data in members.items():
        step = max(1, -(-len(data) // frames))
        packed = b"".join(zstandard.ZstdCompressor().compress(data[k:k + step]) for k in range(0, len(data), step))
        crc = zlib.crc32(data) ^ (1 if name == corrupt else 0)
        encoded, offset = name.encode(), len(body)
        body += LOCAL.pack(b"PK\x03\x04", 63, 0, 0, ZSTD, 0, 0x21, crc, len(packed), len(data), len(encoded), 0)
        body += encoded + packed
        directory += CENTRAL.pack(b"PK\x01\x02", 63, 0, 63, 0, 0, ZSTD, 0, 0x21, crc, len(packed), len(data),
                                  len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = END.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory + end))
