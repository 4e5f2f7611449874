"""Strict, allocation-light parsing of compact JWS (RFC 7515 §7.1).

jwcrypto's ``JWS`` object is correct but slow to construct (it deep-copies a registry): on the hot
path it alone would double the cost of a DPoP check (see ``docs/performance-notes.md``). Parsing a
compact JWS is small and fully specified, so we do it here, strictly: exactly three segments of
unpadded base64url, JSON objects with no duplicate members, no NaN/Infinity. The JSON serialization
is rejected by construction (it would let ``alg``/``jwk`` sit in an unprotected header).
"""

from __future__ import annotations

import binascii
import json
import json.scanner
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "CompactJWS",
    "JOSEFormatError",
    "b64url_decode",
    "b64url_encode",
    "b64url_encode_bytes",
    "numeric_date",
    "parse_compact",
    "parse_json_object",
    "split_compact",
]


class JOSEFormatError(ValueError):
    """The input is not a well-formed compact JWS; ``reason`` is a stable code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_encode_bytes(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2) as ASCII bytes, in C calls only (``ath`` is compared per request)."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return b64url_encode_bytes(data).decode("ascii")


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
_UNUSED_BITS = (0, 0, 0x0F, 0x03)  # low bits of the last character that carry no data, by length % 4


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url, rejecting padding, other alphabets and impossible lengths.

    Non-canonical encodings (unused low bits set in the last character) are refused too, so each
    byte string has exactly one accepted text form: a proof cannot be re-spelled. Written with
    C-level bytes operations only: this runs several times per request.
    """
    try:
        raw = segment.encode("ascii")
    except UnicodeEncodeError:
        raise JOSEFormatError("bad_base64url") from None
    rem = len(raw) % 4
    # translate(None, alphabet) deletes every valid character: anything left is foreign.
    if rem == 1 or raw.translate(None, _ALPHABET):
        raise JOSEFormatError("bad_base64url")
    if rem and _ALPHABET.index(raw[-1]) & _UNUSED_BITS[rem]:
        raise JOSEFormatError("bad_base64url")
    try:
        return binascii.a2b_base64(raw.translate(_TO_STANDARD) + _PADDING[rem])
    except binascii.Error as exc:  # pragma: no cover - the checks above exclude these
        raise JOSEFormatError("bad_base64url") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # A duplicate member is ambiguous: two parsers could disagree on which value counts.
        raise JOSEFormatError("duplicate_json_member")
    return obj


def _no_constants(name: str) -> Any:
    raise JOSEFormatError("bad_json")


# Built once: ``json.loads`` with hooks would construct a new decoder on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


# For claims sets: RFC 7519 §4 lets a parser keep the lexically last of duplicate claim names, which
# is what the C decoder does without a Python hook (much faster in the hot path). Headers stay strict.
_CLAIMS_DECODER = json.JSONDecoder(parse_constant=_no_constants)


# The decoders' scanners, called directly: ``JSONDecoder.decode`` adds two regex matches for
# surrounding whitespace and two Python calls (a good share of a parse). A segment with
# surrounding whitespace still parses, through the full decoder.
# (typeshed types make_scanner's argument as a scanner; at run time it takes the decoder.)
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(cast(Any, _DECODER))
_SCAN_CLAIMS: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(cast(Any, _CLAIMS_DECODER))


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a decoded JSON value (member names included) holds a lone surrogate.

    Only called when the text holds a ``\\uD8xx``-``\\uDFxx`` escape. Re-encoding the whole
    value is one C call and exact: a surrogate pair was joined into one code point by the decoder,
    and an escaped backslash followed by ``ud800`` is plain text; only a lone one fails UTF-8.
    """
    try:
        json.dumps(value, ensure_ascii=False, check_circular=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json_object(raw: bytes, *, allow_duplicates: bool = False) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object, without NaN/Infinity or lone surrogates.

    Duplicate member names are refused unless ``allow_duplicates`` (claims sets: the last wins).
    A string holding a lone UTF-16 surrogate (spelled as an escape: raw UTF-8 cannot carry one) is
    not Unicode text, so the whole object is refused here, once for every caller, instead of
    crashing whoever encodes the string later (the replay key, an app rendering claims).
    """
    try:
        text = raw.decode("utf-8")
        try:
            value, end = (_SCAN_CLAIMS if allow_duplicates else _SCAN)(text, 0)
        except StopIteration:  # leading whitespace, or no JSON value at all
            end = -1
        if end != len(text):  # the full decoder skips whitespace and refuses anything else
            value = (_CLAIMS_DECODER if allow_duplicates else _DECODER).decode(text)
        # Surrogates only come from escapes, so the exact check runs only for text holding one.
        # A one-character scan first (memchr, the cheapest test): typical proofs hold no backslash, and
        # a three-character search costs several times more. JSON's "u" is lower-case, the hex digits not.
        if "\\" in text and ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
            raise JOSEFormatError("json_lone_surrogate")
    except JOSEFormatError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise JOSEFormatError("bad_json") from exc
    if not isinstance(value, dict):
        raise JOSEFormatError("json_not_object")
    return value


def numeric_date(value: object) -> float | None:
    """A JWT NumericDate (RFC 7519 §2) as float, or ``None`` if ``value`` is not a usable number.

    Booleans are not numbers here, and integers too large for a float are refused instead of
    raising ``OverflowError`` deep in a comparison.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A parsed (not yet verified) compact JWS."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def split_compact(token: str) -> tuple[str, str, str]:
    """The three segments of a compact JWS (the JSON serialization is refused here)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JOSEFormatError("not_compact_jws")
    return parts[0], parts[1], parts[2]


def parse_compact(token: str) -> CompactJWS:
    """Split and decode a compact JWS whose payload is a JSON object. Verifies nothing."""
    header_b64, payload_b64, signature_b64 = split_compact(token)
    header = parse_json_object(b64url_decode(header_b64))
    payload = parse_json_object(b64url_decode(payload_b64))
    signature = b64url_decode(signature_b64)
    return CompactJWS(
        header=header,
        payload=payload,
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
    )
