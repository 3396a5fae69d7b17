"""Per-student variants: every random choice comes from HMAC(course secret, assignment/problem/student)."""
from __future__ import annotations

import hashlib
import hmac
import random

# Hex digits spelled as the letters a-p: what hwkit writes into a release can never hold a digit run that
# reads as an answer.
_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
_HEX = str.maketrans("abcdefghijklmnop", "0123456789abcdef")


def variant_seed(secret: bytes, *path: str) -> int:
    """A 128-bit seed for one (assignment, problem, student) triple; stable across machines and runs."""
    digest = hmac.new(secret, "/".join(path).encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:16], "big")


def variant_rng(secret: bytes, *path: str) -> random.Random:
    return random.Random(variant_seed(secret, *path))


def letters_digest(data: bytes, length: int = 32) -> str:
    """A digest spelled in the letters a-p only, so it can never contain a numeric answer's literal."""
    return hashlib.sha256(data).hexdigest()[:length].translate(_LETTERS)


def letters_of(raw: bytes) -> str:
    """Bytes spelled in the letters a-p (two per byte)."""
    return raw.hex().translate(_LETTERS)


def bytes_of_letters(text: str) -> bytes:
    """The inverse of letters_of; ValueError on anything else."""
    if not text.isascii():
        raise ValueError("not spelled in the letters a-p")
    return bytes.fromhex(text.translate(_HEX))


def keyed_letters(secret: bytes, *path: str, length: int = 24) -> str:
    return hmac.new(secret, "/".join(path).encode("utf-8"), hashlib.sha256).hexdigest()[:length].translate(_LETTERS)


def public_rng(course_secret: bytes, assignment_id: str, problem_id: str, part_id: str, student_id: str) -> random.Random:
    """The inputs of a part's public (self-check) probe: the same for the release's verification and for the
    student's `hwkit check`, and never those of grading (which draws fresh ones)."""
    return variant_rng(course_secret, "public", assignment_id, problem_id, part_id, student_id)
