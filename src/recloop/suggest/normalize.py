"""Query text normalization: the key a query is stored under, the key it is matched by, tokens.

Three forms of one query, each for one job:

- ``normalize(text, locale)``: the storage and display key. Queries are counted, deduplicated
  and shown under it, so it changes only what no reader would call a different query.
- ``match_key(text, locale)``: the matching key. ``normalize`` plus full case folding,
  diacritic folding where the locale allows it, one set of digits and punctuation as
  spaces, so that what a user types finds what others typed ("cafe" finds "Café").
- ``tokens(text, locale)``: the match key's words; runs of Chinese and Japanese, written
  without spaces, become overlapping character bigrams (``ngrams``).

The rules of ``normalize``, in order, and why:

1. Input past ``MAX_INPUT_CHARS`` is cut before any work: the function runs per keystroke
   and must cost the same whatever a client sends.
2. Spacing accents: ´ and the modifier apostrophes become the apostrophe they stand in for
   (NFKC would make "don´t" two words); the others (¨ ¸ ˜ …) become a space, and the
   combining mark NFKC leaves on no letter is removed; the Japanese spacing voicing marks
   become combining ones ("カ゛" → "ガ").
3. Invisible characters are removed: controls (tabs and newlines become spaces), format
   characters (zero-width space, soft hyphen, byte-order mark, tags, and the bidirectional
   controls, which only steer display and let "etah" be shown as "hate"), variation
   selectors and fillers. They change no meaning, make equal queries differ, and hide
   words from the blocklist. Right-to-left text is stored in logical order already;
   nothing here reorders it.
4. The zero-width joiner and non-joiner are kept only between two letters of a script that
   uses them (Arabic, Persian, the Indic scripts, emoji sequences), where they change how
   a word is written; anywhere else they are removed like any invisible character.
5. NFKC: full-width and half-width forms, ligatures, circled and mathematical letters
   become the ordinary characters people type ("ｈａｔｅ", "𝐡𝐚𝐭𝐞" → "hate"); composed and
   decomposed input become one form, so NFC and NFD spellings of a query are one query.
6. Lowercase (``str.lower``, with the Turkish and Azerbaijani dotted and dotless I when the
   locale asks for them; İ becomes i everywhere, since Unicode's default "i̇" keeps a second
   dot). Lowercasing, not case folding, keeps the display faithful (ß, final ς); the match
   key folds them.
7. Quotes and dashes of every style become ' " and -, so «x», “x” and "x" are one query.
8. Whitespace of every kind becomes single spaces; leading and trailing ones go.
9. Sentence punctuation at the ends goes (``¿Qué es?`` → ``qué es``): a suggestion is not
   a sentence. A leading dot (".net") and the symbols people search for (#, @, +, %) stay;
   a quote pair around the whole query goes, an unpaired quote at an end goes.
10. The result is cut to ``MAX_QUERY_CHARS``: at the last space in the final 30 characters
    when there is one, else never inside a character (a base letter keeps its marks).
"""

# ruff: noqa: RUF001, RUF002, RUF003 (look-alike characters are this module's subject)

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from recloop.errors import InvalidInput
from recloop.suggest import _tables

#: A query has at most this many characters after normalization (the suggestion surface's
#: limit on stored and served queries).
MAX_QUERY_CHARS: Final = 200
#: Raw input longer than this is cut before normalizing, and refused by ``validate_query``.
MAX_INPUT_CHARS: Final = 2_000

_ZWNJ: Final = "\u200c"
_ZWJ: Final = "\u200d"
_JOINERS: Final = _ZWNJ + _ZWJ
# Controls that str.split() already treats as whitespace: they become spaces, not nothing.
_WHITESPACE_CONTROLS: Final = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85"
# Invisible without being format characters: combining grapheme joiner, Hangul fillers,
# Mongolian free variation selectors, variation selectors.
_INVISIBLE_EXTRA: Final = "\u034f\u115f\u1160\u180b-\u180d\u180f\u3164\ufe00-\ufe0f\uffa0"
_INVISIBLE_BMP, _INVISIBLE_ASTRAL = _tables.char_class(
    _tables.OTHER, exclude=_WHITESPACE_CONTROLS + _JOINERS
)
_INVISIBLE_RE: Final = re.compile(f"[{_INVISIBLE_BMP}{_INVISIBLE_EXTRA}]+")
_INVISIBLE_ASTRAL_RE: Final = re.compile(f"[{_INVISIBLE_ASTRAL}\U000e0100-\U000e01ef]+")
# Scripts in which the joiners are part of spelling: Arabic (with Syriac, Thaana, N'Ko and
# the presentation forms), the Indic scripts, Myanmar, Khmer, Mongolian, and emoji.
_JOINING: Final = (
    "\u0600-\u08ff\u0900-\u0dff\u1000-\u109f\u1780-\u18af\ua8e0-\ua8ff\ufb50-\ufdff"
    "\ufe70-\ufefe\u2600-\u27bf\U0001f000-\U0001faff"
)
_STRAY_JOINER_RE: Final = re.compile(f"(?<![{_JOINING}])[{_JOINERS}]|[{_JOINERS}](?![{_JOINING}])")

# Rule 2: spacing accents. Before NFKC, the acute accent and the modifier apostrophes
# become apostrophes, which they stand in for ("don´t"), and the Japanese
# spacing voicing marks become the combining ones, so "カ゛" composes to "ガ". NFKC turns
# the other spacing accents into a space and a combining mark; those marks, left on no
# letter, are removed after it.
_APOSTROPHES: Final = {
    **dict.fromkeys(map(ord, "\u00b4\u02b9\u02bb\u02bc\u02bd\u1ffd"), "'"),
    0x309B: "\u3099",
    0x309C: "\u309a",
}
_APOSTROPHES_RE: Final = re.compile("[" + "".join(chr(cp) for cp in _APOSTROPHES) + "]")
_COMBINING: Final = (
    "\u0300-\u036f\u0591-\u05c7\u064b-\u065f\u0670\u1ab0-\u1aff\u1dc0-\u1dff"
    "\u20d0-\u20ff\u3099\u309a\ufe20-\ufe2f"
)
_COMBINING_RE: Final = re.compile(f"[{_COMBINING}]")
_ORPHAN_MARKS_RE: Final = re.compile(f"(?:^|(?<=\\s))[{_COMBINING}]+")
_LEADING_MARKS_RE: Final = re.compile(f"[{_COMBINING}]+")

# Rule 7: one apostrophe, one double quote, one dash.
_UNIFY: Final[dict[int, str]] = str.maketrans(
    {
        **dict.fromkeys("`\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u301d\u301e", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63", "-"),
    }
)
_UNIFY_RE: Final = re.compile("[" + "".join(map(chr, _UNIFY)) + "]")
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")
# The ASCII fast path: delete the non-whitespace controls, lowercase, unify the backtick.
_ASCII: Final = str.maketrans(
    {
        **{chr(c): None for c in (*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F)},
        **{chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)},
        "`": "'",
    }
)

# Rule 9: what goes from the ends. Not "." at the start (".net"), nor - (negative numbers).
_TRIM_END: Final = " " + _JOINERS + ".,;:!?¿¡'\u3001\u3002\u060c\u061b\u061f\u06d4\u0964\u0965"
_TRIM_START: Final = _TRIM_END.replace(".", "")
_CUT_AT_SPACE_WITHIN: Final = 30


@dataclass(frozen=True, slots=True, eq=False)
class LocaleRules:
    """What a locale changes in the text rules."""

    language: str
    """The language subtag, lowercase; "" when the locale is absent or unreadable."""
    turkic: bool
    """Dotted and dotless I are different letters (Turkish, Azerbaijani)."""
    folds_diacritics: bool
    """``match_key`` folds Latin and Greek diacritics ("café" → "cafe")."""
    apostrophe: str
    """What an apostrophe becomes in the match key: "" (don't → dont), or " " where it
    marks an elision (French l'homme → l homme)."""
    fold_table: Mapping[int, str | None] = field(repr=False)
    """``str.translate`` table of the match key's character folds."""
    foldable: re.Pattern[str] = field(repr=False)
    """Runs of BMP characters that ``fold_table`` changes (found fast, translated slowly)."""

    def fold_run(self, run: re.Match[str]) -> str:
        """``fold_table`` applied to one run that ``foldable`` found."""
        return run.group().translate(self.fold_table)


def _latin_greek_folds() -> dict[int, str]:
    """Each precomposed Latin or Greek letter to its base letter (é → e, ά → α), and the
    letters with no decomposition that readers still read as a base letter with a mark."""
    table: dict[int, str] = {}
    for lo, hi in ((0x00C0, 0x024F), (0x1E00, 0x1EFF), (0x0370, 0x03FF), (0x1F00, 0x1FFF)):
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            base = "".join(
                c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c)
            )
            if len(base) == 1 and base != ch and base.isalpha():
                table[cp] = base.lower()
    extras = {"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "ħ": "h"}
    extras |= {"ŧ": "t", "þ": "th", "ı": "i", "ƀ": "b", "ɨ": "i", "ё": "е"}
    table.update({ord(k): v for k, v in extras.items()})
    # One pass of str.translate must reach the end: ǽ → æ → ae.
    return {cp: base.translate(table) for cp, base in table.items()}


def _universal_folds() -> dict[int, str | None]:
    """Folds for every locale: all decimal digits to ASCII; the optional Arabic and Hebrew
    vowel marks and the Arabic tatweel (elongation) removed, since most text omits them and
    users type without them; the joiners removed."""
    table: dict[int, str | None] = {}
    for zero in _tables.DIGIT_ZEROS:
        if zero != 0x30:
            table.update({zero + d: str(d) for d in range(10)})
    arabic = [
        *range(0x064B, 0x0660),
        0x0640,
        0x0670,
        *range(0x06D6, 0x06DD),
        *range(0x06DF, 0x06E5),
    ]
    arabic += [0x06E7, 0x06E8, *range(0x06EA, 0x06EE)]
    hebrew = [*range(0x0591, 0x05BE), 0x05BF, 0x05C1, 0x05C2, 0x05C4, 0x05C5, 0x05C7]
    # The joiners too: Persian writes "می" + "خواهم" with a non-joiner, a space or nothing.
    table.update(dict.fromkeys([*arabic, *hebrew, 0x200C, 0x200D]))
    return table


_LATIN_GREEK_FOLDS: Final = _latin_greek_folds()
_UNIVERSAL_FOLDS: Final = _universal_folds()
# Letters that are letters of their own in a language's alphabet, not a base letter with a
# mark: folding them changes words (Spanish año/ano, Swedish får/far).
_KEEP_LETTERS: Final[Mapping[str, str]] = {
    "es": "ñ",
    "gl": "ñ",
    "sv": "åäö",
    "fi": "åäö",
    "et": "äöõüšž",
    "da": "æøå",
    "nb": "æøå",
    "nn": "æøå",
    "no": "æøå",
    "is": "áéíóúýþæöð",
    "be": "ё",
}
_TURKIC: Final = frozenset({"tr", "az"})
_ELISION: Final = frozenset({"fr", "it", "ca"})
_LANGUAGE_RE: Final = re.compile(r"[a-z]{2,8}")


def _class_of(code_points: Iterable[int]) -> str:
    """A character class body for BMP code points, as ranges."""
    out: list[str] = []
    ordered = sorted(cp for cp in code_points if cp <= 0xFFFF)
    start = prev = -2
    for cp in [*ordered, -1]:
        if cp != prev + 1:
            if start >= 0:
                out.append(f"\\u{start:04x}" + ("" if prev == start else f"-\\u{prev:04x}"))
            start = cp
        prev = cp
    return "".join(out)


def locale_rules(locale: str | None) -> LocaleRules:
    """The text rules of ``locale`` (a BCP 47 tag such as "de-DE" or "tr"; "_" also splits).

    Turkish and Azerbaijani do not fold diacritics at all: their dotted and dotless i, and
    ş/s, ç/c, ğ/g, are different letters. Elsewhere Latin and Greek diacritics fold, except
    the letters a language's alphabet lists on their own (``_KEEP_LETTERS``). Scripts whose
    marks are part of the letter (Devanagari vowel signs, Japanese voicing marks, Hangul)
    are never touched: the fold tables hold Latin, Greek and Russian ё only.
    """
    return _language_rules(_language(locale))


@functools.lru_cache(maxsize=1024)
def _language(locale: str | None) -> str:
    language = (locale or "").strip().replace("_", "-").split("-")[0].lower()
    return language if _LANGUAGE_RE.fullmatch(language) else ""


@functools.lru_cache(maxsize=256)
def _language_rules(language: str) -> LocaleRules:
    turkic = language in _TURKIC
    table: dict[int, str | None] = dict(_UNIVERSAL_FOLDS)
    if not turkic:
        table.update(_LATIN_GREEK_FOLDS)
        for letter in _KEEP_LETTERS.get(language, ""):
            table.pop(ord(letter), None)
    return LocaleRules(
        language=language,
        turkic=turkic,
        folds_diacritics=not turkic,
        apostrophe=" " if language in _ELISION else "",
        fold_table=table,
        foldable=re.compile(f"[{_class_of(table)}]+"),
    )


# -- normalize --------------------------------------------------------------------------


def normalize(text: str, locale: str | None = None) -> str:
    """The storage and display key of ``text``: rules 1-10 of this module, at most
    ``MAX_QUERY_CHARS`` characters, idempotent."""
    return _normalize(text, locale_rules(locale), MAX_QUERY_CHARS)


def validate_query(text: str, locale: str | None = None, *, field: str = "query") -> str:
    """The normalized query, or ``InvalidInput`` naming ``field`` and the rule it broke:
    too long before normalization, empty after it, or longer than ``MAX_QUERY_CHARS``
    after it (refused rather than cut, so a client learns its query was not taken whole).
    """
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidInput(field, f"must be at most {MAX_INPUT_CHARS} characters (has {len(text)})")
    normalized = _normalize(text, locale_rules(locale), None)
    if not normalized:
        raise InvalidInput(field, "must not be empty after normalization")
    if len(normalized) > MAX_QUERY_CHARS:
        raise InvalidInput(
            field,
            f"must be at most {MAX_QUERY_CHARS} characters after normalization "
            f"(has {len(normalized)})",
        )
    return normalized


def _normalize(text: str, rules: LocaleRules, cap: int | None) -> str:
    text = text[:MAX_INPUT_CHARS]
    if text.isascii() and not (rules.turkic and "I" in text):
        # Per keystroke most queries are ASCII: NFKC and Unicode lowercasing are the
        # identity there, so a translate table does rules 3, 6 and 7 in one pass.
        text = " ".join(text.translate(_ASCII).split())
    else:
        text = _normalize_unicode(text, rules)
    text = _trim(text)
    return text if cap is None or len(text) <= cap else _cap(text, cap)


def _normalize_unicode(text: str, rules: LocaleRules) -> str:
    if _APOSTROPHES_RE.search(text):
        text = text.translate(_APOSTROPHES)
    text = _INVISIBLE_RE.sub("", text)
    if _ASTRAL_RE.search(text):
        text = _INVISIBLE_ASTRAL_RE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    # After composing: in a decomposed spelling a combining mark can stand between a
    # joining letter and its joiner, which would make the joiner look stray.
    if _ZWNJ in text or _ZWJ in text:
        text = _STRAY_JOINER_RE.sub("", text)
    if rules.turkic:
        text = text.replace("I", "ı")
    text = text.replace("İ", "i").lower()
    if not unicodedata.is_normalized("NFKC", text):
        # Lowercasing can leave a letter and a mark that compose (or a compatibility
        # character); one more NFKC settles it.
        text = unicodedata.normalize("NFKC", text)
    if _COMBINING_RE.search(text):
        text = _ORPHAN_MARKS_RE.sub("", text)
    # A regular expression finds the few quotes and dashes; translating the whole text
    # through a dict costs a lookup per character.
    text = _UNIFY_RE.sub(_unify, text)
    return " ".join(text.split())


def _unify(quote_or_dash: re.Match[str]) -> str:
    return _UNIFY[ord(quote_or_dash.group())]


def _trim(text: str) -> str:
    while True:
        trimmed = text.lstrip(_TRIM_START).rstrip(_TRIM_END)
        if trimmed and not trimmed[0].isascii():
            # Trimming can leave a mark on no letter, as NFKC can (rule 2).
            marks = _LEADING_MARKS_RE.match(trimmed)
            if marks:
                trimmed = trimmed[marks.end() :]
        quotes = trimmed.count('"')
        if quotes == 2 and len(trimmed) > 1 and trimmed[0] == trimmed[-1] == '"':
            trimmed = trimmed[1:-1]
        elif quotes % 2 == 1 and trimmed[:1] == '"':
            trimmed = trimmed[1:]
        elif quotes % 2 == 1 and trimmed[-1:] == '"':
            trimmed = trimmed[:-1]
        if trimmed == text:
            return text
        text = trimmed


def _attached(ch: str) -> bool:
    """A character that belongs to the one before it: a combining mark or a joiner."""
    return ch in _JOINERS or unicodedata.category(ch)[0] == "M"


def _cap(text: str, cap: int) -> str:
    cut = text.rfind(" ", cap - _CUT_AT_SPACE_WITHIN, cap + 1)
    if cut <= 0:
        cut = cap
        while cut > 0 and (_attached(text[cut]) or text[cut - 1] in _JOINERS):
            cut -= 1
    return _trim(text[:cut])


# -- match_key ---------------------------------------------------------------------------

# Punctuation becomes a space in the match key, except what people search for as part of a
# word: the apostrophe (handled per locale), # @ % & (c#, at&t, 100%), and "." or ","
# between digits (3.5, 1,000). Three expressions, not one alternation, so that each is a
# plain character class, which ``re`` scans fastest.
_PUNCT_BMP, _PUNCT_ASTRAL = _tables.char_class(_tables.PUNCTUATION, exclude="'#@%&.,")
_SEPARATOR_RE: Final = re.compile(f"[{_PUNCT_BMP}]")
_SEPARATOR_ASTRAL_RE: Final = re.compile(f"[{_PUNCT_ASTRAL}]")
_POINT_RE: Final = re.compile(r"(?<!\d)[.,]|[.,](?!\d)")
# Combining marks left after a folded Latin or Greek letter (stacked or unusual ones that
# have no precomposed form, or overlays such as strike-through).
_RESIDUAL_MARKS_RE: Final = re.compile(
    "(?<=[a-z\u03b1-\u03c9])[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+"
)


def match_key(text: str, locale: str | None = None) -> str:
    """The matching key of ``text``: ``normalize``, then ``fold``, then apostrophes per
    locale and other punctuation as spaces. Two queries a user would expect to find each
    other have the same key; it is for lookups, never for display."""
    rules = locale_rules(locale)
    return _match(_normalize(text, rules, MAX_QUERY_CHARS), rules)


def fold(normalized: str, locale: str | None = None) -> str:
    """Case-fold and diacritic-fold an already normalized text (the letters of
    ``match_key``, punctuation untouched): full case folding (ß → ss, ς → σ), the locale's
    diacritic folds, Arabic and Hebrew optional vowel marks removed, every decimal digit
    as ASCII (٣ → 3)."""
    return _fold(normalized, locale_rules(locale))


def _fold(text: str, rules: LocaleRules) -> str:
    if text.isascii():
        return text
    text = text.casefold()
    for _ in range(3):
        if _ASTRAL_RE.search(text):
            text = text.translate(rules.fold_table)
        else:
            text = rules.foldable.sub(rules.fold_run, text)
        if rules.folds_diacritics and _COMBINING_RE.search(text):
            text = _RESIDUAL_MARKS_RE.sub("", text)
        if unicodedata.is_normalized("NFC", text):
            break
        # Removing a mark can let the next one compose with the letter (a, a kana
        # voicing mark, a grave → à): fold what composed.
        text = unicodedata.normalize("NFC", text)
    return text


def _match(normalized: str, rules: LocaleRules) -> str:
    # Apostrophes first: deleting one can bring a letter and a mark together to fold.
    text = normalized.replace("'", rules.apostrophe) if "'" in normalized else normalized
    text = _fold(text, rules)
    text = _SEPARATOR_RE.sub(" ", text)
    if "." in text or "," in text:
        text = _POINT_RE.sub(" ", text)
    if not text.isascii():
        if _ASTRAL_RE.search(text):
            text = _SEPARATOR_ASTRAL_RE.sub(" ", text)
        if _COMBINING_RE.search(text):
            text = _ORPHAN_MARKS_RE.sub("", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_QUERY_CHARS else _cap(text, MAX_QUERY_CHARS)


# -- tokens ------------------------------------------------------------------------------

#: Scripts written without spaces between words: Han ideographs (with the iteration and
#: closing marks), Hiragana and Katakana (with the prolonged sound mark).
UNSEGMENTED: Final = (
    "\u3005-\u3007\u303b\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
_UNSEGMENTED_RUN_RE: Final = re.compile(f"[{UNSEGMENTED}]+")


def ngrams(text: str, n: int = 2) -> list[str]:
    """The overlapping character ``n``-grams of ``text``; ``text`` itself when shorter."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if len(text) <= n:
        return [text] if text else []
    return [text[i : i + n] for i in range(len(text) - n + 1)]


def tokens(text: str, locale: str | None = None) -> list[str]:
    """The words of ``match_key(text, locale)``. A run of Chinese or Japanese characters
    becomes its character bigrams (a lone character stays a unigram): there is no space to
    split on and no dictionary here, and bigrams are what CJK search analyzers index, so a
    query shares tokens with every text that contains a two-character word of it. Korean
    is written with spaces and keeps its words."""
    key = match_key(text, locale)
    if key.isascii() or not _UNSEGMENTED_RUN_RE.search(key):
        return key.split()
    out: list[str] = []
    for word in key.split():
        if word.isascii():
            out.append(word)
            continue
        start = 0
        for run in _UNSEGMENTED_RUN_RE.finditer(word):
            if run.start() > start:
                out.append(word[start : run.start()])
            out.extend(ngrams(run.group(), 2))
            start = run.end()
        if start < len(word):
            out.append(word[start:])
    return out
