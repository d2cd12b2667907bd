"""The one decoder of uploaded text: tables (`modsnet.features.tabular.read_table`), texts and scans.

UTF-8 (a BOM dropped), else Windows-1252, else Latin-1: legacy spreadsheet exports are common, and bytes
that are not valid UTF-8 were almost never meant as UTF-8. UTF-16 and binary content are refused with
`InvalidArgument` naming the file and the first control byte (other than tab, LF and CR). Binary means a NUL
byte, or control bytes past one in `CONTROL_SHARE` of the data: real exports carry a stray one now and then
(U.S. HHS's breach reports in R's Ecdat hold a byte 0x19 for an apostrophe), and one must not refuse a whole file.
"""

from __future__ import annotations

import codecs

from modsnet.runtime.errors import InvalidArgument

__all__ = ["decode_text", "text_encoding"]

# Bytes of text: everything but the control characters (tab, LF and CR excepted).
_TEXT_BYTES = bytes(b for b in range(256) if b in (9, 10, 13) or (b >= 0x20 and b != 0x7F))
CONTROL_SHARE = 1_000  # bytes of data per control byte a text may carry (no NUL) and still be text


def decode_text(data: bytes, name: str, *, what: str = "text") -> str:
    """`data` as text, or `InvalidArgument` naming `name`.

    `what` is how the refusal calls what was expected ("text", "a text table").
    """
    return data.decode(text_encoding(data, name, what=what))


_BLOCK = 1 << 22


def text_encoding(data: bytes, name: str, *, what: str = "text") -> str:
    """The encoding `decode_text` reads `data` with, or `InvalidArgument` naming `name`.

    Each candidate is tried block by block and its output dropped, so a large upload is never held twice
    (a parser that reads the bytes itself, as pandas does, needs only the name).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidArgument(f"{name}: UTF-16 text is not supported; save it as UTF-8")
    binary = data.translate(None, _TEXT_BYTES)  # the control bytes, in order; ~8x faster than a regex
    if b"\x00" in binary or len(binary) * CONTROL_SHARE > len(data):
        raise InvalidArgument(f"{name}: not {what} (binary content at byte {data.index(binary[:1])})")
    # A BOM is stripped by hand: utf-8-sig's incremental decoder accepts a cut BOM (b"\xef") as final input,
    # which `bytes.decode` then refuses.
    bom = data.startswith(codecs.BOM_UTF8)
    for encoding in ("utf-8-sig" if bom else "utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder("utf-8" if encoding == "utf-8-sig" else encoding)()
        view = memoryview(data)[3 if encoding == "utf-8-sig" else 0 :]
        try:
            for start in range(0, len(view), _BLOCK):
                decoder.decode(view[start : start + _BLOCK])
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"  # decodes every byte string
