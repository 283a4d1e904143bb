"""Personal data in query text: e-mail addresses, phone numbers, payment cards, IBANs and
long digit runs, found and replaced by a tag.

The detectors run on the normalized text with every decimal digit read as ASCII (a phone
number in Arabic-Indic or full-width digits is still a phone number), and report spans in
the normalized text. A finding says what kind was found and where, never the value, so that
findings can be logged and audited without copying the personal data they point at.

- ``email``: ``local@domain.tld``, with spaces around the @ allowed. Obfuscated forms are
  found too: "name (at) example (dot) com", "name [at] example [dot] com", and the bare
  words "name at example dot com" when the address ends in a common top-level domain.
- ``iban``: two letters, two check digits and the account (spaces allowed), of the length
  its country's IBAN has, passing the ISO 13616 mod-97 check.
- ``card``: 13 to 19 digits, grouped by single spaces or dashes or not at all, starting
  with 2-6 (the card networks' ranges), passing the Luhn check.
- ``phone``: international ("+" or "00", then 8 to 15 digits: E.164's limit) in any
  grouping; national with 9 to 12 digits in at least two groups of two or more digits (a
  one-digit trunk prefix allowed before ten or more: 1-800-…, 8 (495) …). Nine digits
  need three groups, so that a ZIP+4 code ("90210-1234") is not a phone number; a run of
  four-digit years ("1990 2000 2010"), a date (25.12.2019) or an IPv4 address is not
  either.
- ``digits``: a run of at least ``PiiConfig.min_digit_run`` digits (9 by default: account
  and ID numbers) that no other detector claimed; also the US social security shape
  (123-45-6789) and 13 to 19 digits grouped like a card that fails the card checks (an
  account number, or a card with a typo), unless it is a valid ISBN-13 or EAN-13 (a
  barcode typed without separators is a digit run like any other).

Where detectors overlap, the first in that order wins.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from recloop.suggest import _tables
from recloop.suggest.normalize import MAX_QUERY_CHARS, normalize

PiiKind = Literal["email", "iban", "card", "phone", "digits"]

#: The tag that replaces each kind in scrubbed text.
TAGS: Final[Mapping[PiiKind, str]] = {
    "email": "<email>",
    "iban": "<iban>",
    "card": "<card>",
    "phone": "<phone>",
    "digits": "<digits>",
}


class PiiConfig(BaseModel):
    """Which detectors run, and how long a digit run must be to count."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    emails: bool = True
    obfuscated_emails: bool = True
    ibans: bool = True
    cards: bool = True
    phones: bool = True
    digit_runs: bool = True
    min_digit_run: int = Field(default=9, ge=5, le=40)


@dataclass(frozen=True, slots=True)
class PiiFinding:
    """One piece of personal data: its kind and its span in the normalized text."""

    kind: PiiKind
    start: int
    end: int


class Scrubbed(NamedTuple):
    """The normalized text with every finding replaced by its tag, and the findings."""

    text: str
    findings: tuple[PiiFinding, ...]


# -- e-mail ------------------------------------------------------------------------------

_LOCAL: Final = r"[\w.+-]{1,64}"
_LABEL: Final = r"[\w-]{1,63}"
_TLD: Final = r"[^\W\d_]{2,24}"
_EMAIL_RE: Final = re.compile(
    rf"(?<![\w.+-]){_LOCAL} ?@ ?{_LABEL}(?:\.{_LABEL}){{0,8}}\.{_TLD}(?![\w-])"
)
_AT: Final = r" ?[(\[{<] ?at ?[)\]}>] ?"
_BRACKETED_AT_RE: Final = re.compile(_AT)
_DOT: Final = r" ?[(\[{<] ?dot ?[)\]}>] ?"
_BRACKETED_EMAIL_RE: Final = re.compile(
    rf"(?<![\w.+-]){_LOCAL}(?:{_AT}|@){_LABEL}(?:(?:{_DOT}|\.){_LABEL}){{0,8}}"
    rf"(?:{_DOT}|\.){_TLD}(?![\w-])"
)
# Bare words only before a common top-level domain: "look at google dot com" is a search
# for a web site and is found too, which costs nothing worse than not suggesting it.
_COMMON_TLDS: Final = (
    "com|net|org|edu|gov|mil|info|biz|io|co|me|us|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|"
    "pl|ru|ua|cz|pt|br|ar|mx|ca|au|nz|in|cn|jp|kr|tr|ir|za|eu"
)
_WORDS_EMAIL_RE: Final = re.compile(
    rf"(?<![\w.+-]){_LOCAL} at {_LABEL}(?: dot {_LABEL}){{0,4}} dot (?:{_COMMON_TLDS})(?![\w-])"
)

# -- IBAN --------------------------------------------------------------------------------

#: IBAN length by country (ISO 13616 registry).
IBAN_LENGTHS: Final[Mapping[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN_RE: Final = re.compile(r"(?<![a-z0-9])[a-z]{2}[0-9]{2}(?: ?[a-z0-9]){11,30}")


def iban_valid(compact: str) -> bool:
    """Whether ``compact`` (no spaces, any case) has its country's length and passes
    the mod-97 check: the first four characters moved to the end, letters as 10-35, the
    number mod 97 is 1."""
    text = compact.upper()
    if IBAN_LENGTHS.get(text[:2]) != len(text) or not text.isalnum() or not text.isascii():
        return False
    digits = "".join(str(int(c, 36)) for c in text[4:] + text[:4])
    return int(digits) % 97 == 1


def _find_ibans(text: str) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for match in _IBAN_RE.finditer(text):
        length = IBAN_LENGTHS.get(match.group()[:2].upper())
        if length is None:
            continue
        # The candidate may run into the next word; the country's length says where the
        # IBAN ends.
        taken = 0
        end = match.start()
        for end in range(match.start(), match.end()):
            if text[end] != " ":
                taken += 1
                if taken == length:
                    break
        if taken == length and iban_valid(text[match.start() : end + 1].replace(" ", "")):
            found.append((match.start(), end + 1))
    return found


# -- numbers: cards, phones, digit runs ----------------------------------------------------

# A number as people write one: digits and the separators of phone and card numbers,
# starting with a digit, "+" or "(", and ending with a digit or ")". Each class is one
# character, so a scan is linear.
_NUMBER_RE: Final = re.compile(r"(?<![\w+])(?:\+ ?|\()?[0-9](?:[0-9 ().\-/]*[0-9])?\)?")
_GROUP_RE: Final = re.compile(r"[0-9]+")
_CARD_SEPARATORS_RE: Final = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_SSN_RE: Final = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")
_YEAR_RE: Final = re.compile(r"1[5-9][0-9]{2}|20[0-9]{2}")
_YEAR: Final = r"(?:1[5-9]|20)[0-9]{2}"
_DATE_RE: Final = re.compile(
    rf"(?<![0-9])(?:[0-3]?[0-9]([./-])[01]?[0-9]\1{_YEAR}|{_YEAR}([./-])[01]?[0-9]\2[0-3]?[0-9])"
    r"(?![0-9])"
)
_IPV4_RE: Final = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (payment card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card(number: str) -> bool:
    digits = "".join(_GROUP_RE.findall(number))
    return (
        13 <= len(digits) <= 19
        and digits[0] in "23456"
        and _CARD_SEPARATORS_RE.fullmatch(number) is not None
        and luhn_valid(digits)
    )


def _is_phone(number: str) -> bool:
    if _DATE_RE.search(number) or _IPV4_RE.fullmatch(number):
        return False
    groups = _GROUP_RE.findall(number)
    digits = sum(len(g) for g in groups)
    if number.startswith("+"):
        return 8 <= digits <= 15
    if number.startswith("00") and len(groups[0]) <= 4:
        return 10 <= digits <= 17
    if not 9 <= digits <= 12 or len(groups) < 2 or len(groups) > 6:
        return False
    # A one-digit trunk or country prefix: 1-800-…, Russia's 8 (495) ….
    rest = groups[1:] if len(groups[0]) == 1 and digits >= 10 else groups
    if any(len(g) < 2 for g in rest) or (digits == 9 and len(groups) < 3):
        return False
    return not all(_YEAR_RE.fullmatch(g) for g in groups)


def _is_grouped_id(number: str) -> bool:
    """13 to 19 digits grouped like a card number that fails its checks: an account or
    identity number (or a mistyped card), not a list of years."""
    groups = _GROUP_RE.findall(number)
    digits = sum(len(g) for g in groups)
    return (
        13 <= digits <= 19
        and _CARD_SEPARATORS_RE.fullmatch(number) is not None
        and not all(_YEAR_RE.fullmatch(g) for g in groups)
        and not ean13_valid("".join(groups))
    )


def ean13_valid(digits: str) -> bool:
    """Whether 13 digits pass the EAN-13 check (ISBN-13 and product barcodes: public
    numbers, not personal ones): weights 1 and 3 alternating, the sum a multiple of 10."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0


def _classify(number: str, config: PiiConfig) -> PiiKind | None:
    if config.cards and _is_card(number):
        return "card"
    if config.digit_runs and _SSN_RE.fullmatch(number):
        return "digits"
    if config.phones and _is_phone(number):
        return "phone"
    if config.digit_runs and _is_grouped_id(number):
        return "digits"
    return None


def _find_numbers(text: str, config: PiiConfig) -> list[tuple[PiiKind, int, int]]:
    found: list[tuple[PiiKind, int, int]] = []
    for match in _NUMBER_RE.finditer(text):
        number = match.group()
        kind = _classify(number, config)
        if kind is not None:
            found.append((kind, match.start(), match.end()))
            continue
        # A number run together with its neighbours by spaces ("call 555 123 4567 2
        # times"): try the spans that drop whole space-separated parts, longest first.
        # Dots and dashes bind a number (a date, an address, an ISBN): no cut there.
        if _DATE_RE.search(number) or _IPV4_RE.fullmatch(number):
            continue
        spans = [(g.start(), g.end()) for g in _GROUP_RE.finditer(number)]
        cuts = {0, len(spans)} | {
            i for i in range(1, len(spans)) if number[spans[i - 1][1] : spans[i][0]] == " "
        }
        for first, last in _sub_spans(len(spans)):
            if first not in cuts or last + 1 not in cuts:
                continue
            lo, hi = spans[first][0], spans[last][1]
            if first == 0 and number[0] in "+(":
                lo = 0
            elif lo > 0 and number[lo - 1] == "(":
                lo -= 1
            kind = _classify(number[lo:hi], config)
            if kind is not None:
                found.append((kind, match.start() + lo, match.start() + hi))
                break
    return found


def _sub_spans(groups: int) -> list[tuple[int, int]]:
    """Group ranges shorter than all of them, longest first: (first, last) inclusive."""
    return [
        (first, first + size - 1)
        for size in range(groups - 1, 1, -1)
        for first in range(groups - size + 1)
    ]


# -- all together ----------------------------------------------------------------------------

_HAS_DIGIT_RE: Final = re.compile(r"[0-9]")


def find_pii(normalized: str, config: PiiConfig | None = None) -> list[PiiFinding]:
    """The personal data in a normalized text (see ``normalize``), by position."""
    config = config or _DEFAULT
    text = _ascii_digits(normalized)
    taken: list[PiiFinding] = []

    def claim(kind: PiiKind, start: int, end: int) -> None:
        if all(end <= f.start or start >= f.end for f in taken):
            taken.append(PiiFinding(kind, start, end))

    if config.emails and "@" in text:
        for m in _EMAIL_RE.finditer(text):
            claim("email", m.start(), m.end())
    if config.obfuscated_emails and " dot " in text and " at " in text:
        for m in _WORDS_EMAIL_RE.finditer(text):
            claim("email", m.start(), m.end())
    if config.obfuscated_emails and _BRACKETED_AT_RE.search(text):
        for m in _BRACKETED_EMAIL_RE.finditer(text):
            claim("email", m.start(), m.end())
    if _HAS_DIGIT_RE.search(text):
        if config.ibans:
            for start, end in _find_ibans(text):
                claim("iban", start, end)
        for kind, start, end in _find_numbers(text, config):
            claim(kind, start, end)
        if config.digit_runs:
            for m in _digit_run_re(config.min_digit_run).finditer(text):
                claim("digits", m.start(), m.end())
    return sorted(taken, key=lambda f: f.start)


@functools.lru_cache(maxsize=64)
def _digit_run_re(length: int) -> re.Pattern[str]:
    return re.compile(rf"(?<![0-9])[0-9]{{{length},}}(?![0-9])")


def scrub(text: str, config: PiiConfig | None = None, locale: str | None = None) -> Scrubbed:
    """``normalize(text, locale)`` with every piece of personal data replaced by its tag
    (``TAGS``), and the findings. Scrubbing the result again finds nothing. A tag can be
    longer than what it replaces (``a@b.cd``); past ``MAX_QUERY_CHARS`` the text is cut
    at a space, never inside a tag."""
    normalized = normalize(text, locale)
    findings = find_pii(normalized, config)
    if not findings:
        return Scrubbed(normalized, ())
    parts: list[str] = []
    at = 0
    for f in findings:
        parts += [normalized[at : f.start], TAGS[f.kind]]
        at = f.end
    parts.append(normalized[at:])
    scrubbed = "".join(parts)
    if len(scrubbed) > MAX_QUERY_CHARS:
        scrubbed = _cut_outside_tags(scrubbed)
    return Scrubbed(scrubbed, tuple(findings))


_PARTIAL_TAG_RE: Final = re.compile(r"<[a-z]*$")


def _cut_outside_tags(text: str) -> str:
    cut = text.rfind(" ", 0, MAX_QUERY_CHARS + 1)
    text = text[:cut] if cut > 0 else _PARTIAL_TAG_RE.sub("", text[:MAX_QUERY_CHARS])
    return text.rstrip()


# Every non-ASCII decimal digit, one character for one, so spans carry over.
_DIGITS: Final[dict[int, str]] = {
    zero + d: str(d) for zero in _tables.DIGIT_ZEROS if zero != 0x30 for d in range(10)
}
_BMP_DIGIT_RE: Final = re.compile(
    "["
    + "".join(f"\\u{z:04x}-\\u{z + 9:04x}" for z in _tables.DIGIT_ZEROS if 0x30 < z <= 0xFFFF)
    + "]+"
)
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")


def _ascii_digits(text: str) -> str:
    if text.isascii():
        return text
    if _ASTRAL_RE.search(text):
        return text.translate(_DIGITS)
    return _BMP_DIGIT_RE.sub(_digit_run, text)


def _digit_run(run: re.Match[str]) -> str:
    return run.group().translate(_DIGITS)


_DEFAULT: Final = PiiConfig()
