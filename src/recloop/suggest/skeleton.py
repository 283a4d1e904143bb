"""The safety skeleton of a text: one spelling for the many ways a word can be disguised.

A blocklist that compares plain text is beaten by "h4te", "h a t e", "hаte" (a Cyrillic а)
or "hate" with a zero-width space inside. The skeleton undoes those disguises on both
sides, the configured term and the query, so that they meet:

1. ``normalize`` (NFKC, lowercase, invisible characters removed) and full case folding.
2. Look-alike letters become the Latin letter they imitate (``CONFUSABLES``): Cyrillic and
   Greek letters that look Latin in either case, small capitals, IPA letters. Russian and
   Greek terms still match Russian and Greek text, since both sides are mapped alike.
3. ``fold``: diacritics of every Latin letter go (whatever the locale; "hàte" is a
   disguise here even where "à" is a letter), every decimal digit becomes ASCII.
4. Symbols used as letters inside a word become the letter (``LEET_SYMBOLS``: "sh!t",
   "h@te", "$hit"); a trailing "!" stays punctuation.
5. Every other punctuation mark or symbol is a space; apostrophes go ("don't" → "dont").
6. Scripts written without spaces (Chinese, Japanese, Korean, Thai, Lao, Khmer, Myanmar)
   become one token per character, so a term matches inside a longer run of them.
7. Three or more one-character tokens in a row join into one word ("h a t e", "h.a.t.e",
   "h-a-t-e" → "hate").
8. In a token that has a letter, digits read as letters (``LEET_DIGITS``: "h4te" → "hate",
   "k1ll" → "kiii"); a token of digits alone stays a number ("1488", "2024"). The letter
   l is written as i, because "1", "l", "I" and "|" all stand for either.
9. A run of three or more of one letter is also read as one and as two of it ("haaate" →
   "hate"; "kiiilll" → "kill" among others), so the query has a few variants.

A term matches the skeleton where its tokens occur in order as whole tokens, where the
whole query without spaces equals it ("ha te"), or anywhere inside a token spelled out
letter by letter ("i h a t e you").

What it does not undo: two-character splits inside a longer query ("i ha te you"),
phonetic spellings ("h8"), letters drawn from several look-alike characters ("rn" for
"m"), Cherokee and other rarer look-alikes, emoji spelling. Patterns cover what a term
cannot.
"""

# ruff: noqa: RUF001, RUF002, RUF003 (look-alike characters are this module's subject)

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from recloop.suggest import _tables
from recloop.suggest.normalize import fold, normalize

#: Look-alike letters (after case folding) → the Latin letter they imitate. Where the
#: capital and small letters imitate different Latin letters (Greek Η/η, Ν/ν), the capital
#: wins: "ΗΑΤΕ" in Greek capitals is what reads as "HATE".
CONFUSABLES: Final[Mapping[str, str]] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ь": "b", "ѕ": "s",
    "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "i", "һ": "h",
    "ү": "y", "ҳ": "x", "ԍ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ζ": "z", "η": "h", "ι": "i", "κ": "k",
    "μ": "m", "ν": "n", "ο": "o", "ρ": "p", "τ": "t", "υ": "y", "χ": "x", "ω": "w",
    "ϲ": "c", "ϳ": "j",
    # Armenian
    "օ": "o", "ս": "u", "ո": "n", "հ": "h", "ց": "g", "զ": "q",
    # Latin small capitals and IPA letters
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h",
    "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p",
    "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
    "ɡ": "g", "ɑ": "a", "ɐ": "a", "ɓ": "b", "ƅ": "b", "ɗ": "d", "ɛ": "e", "ǝ": "e", "ɘ": "e",
    "ɦ": "h", "ɩ": "i", "ı": "i", "ȷ": "j", "ʝ": "j", "ɲ": "n", "ɵ": "o", "ʁ": "r",
    "ʂ": "s", "ʊ": "u", "ʋ": "v", "ʐ": "z",
}  # fmt: skip
#: Symbols that stand for a letter inside a word.
LEET_SYMBOLS: Final[Mapping[str, str]] = {
    "@": "a", "$": "s", "!": "i", "|": "i", "+": "t", "€": "e", "¢": "c", "¡": "i", "§": "s",
}  # fmt: skip
#: Digits that stand for a letter inside a word that has a letter; and l, written as i.
LEET_DIGITS: Final[Mapping[str, str]] = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "l": "i",
}  # fmt: skip

_CONFUSABLE_TABLE: Final = str.maketrans(dict(CONFUSABLES))
_CONFUSABLE_RE: Final = re.compile("[" + "".join(CONFUSABLES) + "]")
_LEET_DIGIT_TABLE: Final = str.maketrans(dict(LEET_DIGITS))
_LEET_SYMBOL_RE: Final = re.compile(r"(?<=\w)[@$!|+€¢¡§](?=\w)|(?<!\w)[@$€¢§](?=\w)")
_LEET_CHAR_RE: Final = re.compile(r"[@$!|+€¢¡§]")
# Rule 5: punctuation and symbols (BMP and above) become spaces.
_P_BMP, _P_ASTRAL = _tables.char_class(_tables.PUNCTUATION)
_S_BMP, _S_ASTRAL = _tables.char_class(_tables.SYMBOLS)
_NON_WORD_RE: Final = re.compile(f"[{_P_BMP}{_S_BMP}]")
_NON_WORD_ASTRAL_RE: Final = re.compile(f"[{_P_ASTRAL}{_S_ASTRAL}]")
_ASTRAL_RE: Final = re.compile("[\U00010000-\U0010ffff]")
# Rule 6: scripts without spaces between words, one token per character.
_UNSPACED: Final = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3005-\u3007\u303b\u3040-\u30ff"
    "\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af"
    "\ud7b0-\ud7ff\uf900-\ufaff\U00020000-\U0003134f"
)
_UNSPACED_RE: Final = re.compile(f"[{_UNSPACED}]")
# Rule 7: three or more one-character words (not of an unspaced script) in a row.
_SINGLE: Final = f"[^ {_UNSPACED}]"
_SINGLES_RE: Final = re.compile(f"(?<![^ ]){_SINGLE}(?: {_SINGLE}){{2,}}(?![^ ])")
_RUN_RE: Final = re.compile(r"(.)\1{2,}")
_RUN_SPLIT_RE: Final = re.compile(r"((.)\2{2,})")
_MAX_RUNS: Final = 3
_DIGIT_RE: Final = re.compile("[0-9]")

Tokens = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Skeleton:
    """The skeleton of a query: its token variants, and the words it spelled out."""

    words: str
    """The text after rules 1-7 (look-alikes, diacritics, symbols, spacing undone; digits
    and l as written): what blocklist patterns see besides the normalized query."""
    variants: tuple[Tokens, ...]
    """The tokens, then the variants of rule 9 (when the text has a run of three)."""
    spelled: tuple[str, ...] = ()
    """Tokens that rule 7 joined from one-character words. A term may sit anywhere in
    one ("i h a t e u" → "ihateu"): the writer chose to spell it out, so looking inside
    costs no innocent word."""


def skeleton(text: str) -> Skeleton:
    """The skeleton of ``text``."""
    return skeleton_of_normalized(normalize(text))


def term_skeleton(term: str) -> Tokens:
    """The skeleton tokens of a configured term (no variants: a term is written plainly)."""
    return _leet(_words(normalize(term), []))


def skeleton_of_normalized(normalized: str) -> Skeleton:
    """``skeleton`` of a text that ``normalize`` already returned (saves doing it twice)."""
    spelled: list[str] = []
    words = _words(normalized, spelled)
    spelled_tokens = _leet(" ".join(spelled)) if spelled else ()
    # Rule 9 before rule 8, so that "killll" reaches "kill" before l is written as i.
    if not _RUN_RE.search(words):
        return Skeleton(words, (_leet(words),), spelled_tokens)
    variants = dict.fromkeys((_leet(words), *map(_leet, _run_variants(words))))
    return Skeleton(words, tuple(variants), spelled_tokens)


def _run_variants(words: str) -> list[str]:
    """Rule 9: each run of three or more read as one and as two of its letter. Every
    combination up to ``_MAX_RUNS`` runs ("kiiilll" → "kil", "kill", "kiil", "kiill"),
    beyond that all runs alike."""
    parts = _RUN_SPLIT_RE.split(words)  # text, run, letter, text, run, letter, ...
    runs = len(parts) // 3
    if runs > _MAX_RUNS:
        return [_RUN_RE.sub(r"\1", words), _RUN_RE.sub(r"\1\1", words)]
    out: list[str] = []
    for counts in itertools.product((1, 2), repeat=runs):
        pieces = [parts[0]]
        for i, count in enumerate(counts):
            pieces += [parts[3 * i + 2] * count, parts[3 * i + 3]]
        out.append("".join(pieces))
    return out


def _leet(words: str) -> Tokens:
    """Rule 8, on space-separated words."""
    if not _DIGIT_RE.search(words):
        # Only l is left to rewrite; str.replace is faster than translate on non-ASCII.
        return tuple(words.replace("l", "i").split())
    return tuple(w if w.isdigit() else w.translate(_LEET_DIGIT_TABLE) for w in words.split())


def _letters(normalized: str) -> str:
    """Rules 1-5: the text with look-alikes, diacritics and leet symbols undone and every
    other punctuation mark or symbol as a space."""
    text = normalized.casefold()
    if _CONFUSABLE_RE.search(text):
        text = text.translate(_CONFUSABLE_TABLE)
    text = fold(text)
    if _LEET_CHAR_RE.search(text):
        text = _LEET_SYMBOL_RE.sub(_leet_symbol, text)
    text = text.replace("'", "")
    text = _NON_WORD_RE.sub(" ", text)
    if _ASTRAL_RE.search(text):
        text = _NON_WORD_ASTRAL_RE.sub(" ", text)
    return text


def _leet_symbol(symbol: re.Match[str]) -> str:
    return LEET_SYMBOLS[symbol.group()]


def _words(normalized: str, spelled: list[str]) -> str:
    """Rules 1-7: the words, separated by single spaces; the tokens that rule 7 joined
    are added to ``spelled``."""
    text = _letters(normalized)
    if not text.isascii() and _UNSPACED_RE.search(text):
        text = _UNSPACED_RE.sub(r" \g<0> ", text)
    text = " ".join(text.split())
    if _SINGLES_RE.search(text):
        text = _SINGLES_RE.sub(lambda run: _joined(run, spelled), text)
    return text


def _joined(singles: re.Match[str], spelled: list[str]) -> str:
    word = singles.group().replace(" ", "")
    spelled.append(word)
    return word


def collapsed(tokens: Tokens) -> str:
    """The tokens with no spaces: a whole query compared with a whole term this way
    catches any spacing of it ("ha te", "h ate")."""
    return "".join(tokens)
