"""The one decoder of uploaded text: tables (`modsnet.features.tabular.read_table`), texts and scans.

UTF-8 (a BOM dropped), else Windows-1252, else Latin-1: legacy spreadsheet exports are common, and bytes
that are not valid UTF-8 were almost never meant as UTF-8. UTF-16 and binary content (control bytes other
than tab, LF and CR) are refused with `InvalidArgument` naming the file and the byte.
"""

from __future__ import annotations

from modsnet.runtime.errors import InvalidArgument

__all__ = ["decode_text"]

# Bytes of text: everything but the control characters (tab, LF and CR excepted).
_TEXT_BYTES = bytes(b for b in range(256) if b in (9, 10, 13) or (b >= 0x20 and b != 0x7F))


def decode_text(data: bytes, name: str, *, what: str = "text") -> str:
    """`data` as text, or `InvalidArgument` naming `name`.

    `what` is how the refusal calls what was expected ("text", "a text table").
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidArgument(f"{name}: UTF-16 text is not supported; save it as UTF-8")
    binary = data.translate(None, _TEXT_BYTES)  # the control bytes, in order; ~8x faster than a regex
    if binary:
        raise InvalidArgument(f"{name}: not {what} (binary content at byte {data.index(binary[:1])})")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")  # decodes every byte string
