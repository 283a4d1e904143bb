"""Query normalization: properties over any text, and short real queries in many languages."""

# ruff: noqa: RUF001, RUF003 (look-alike and invisible characters are the subject here)

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recloop.errors import InvalidInput
from recloop.suggest import _tables
from recloop.suggest.normalize import (
    MAX_INPUT_CHARS,
    MAX_QUERY_CHARS,
    fold,
    locale_rules,
    match_key,
    ngrams,
    normalize,
    tokens,
    validate_query,
)

pytestmark = pytest.mark.unit

LOCALES = st.sampled_from([None, "en", "de-DE", "fr", "es", "tr", "ru", "ar", "hi", "ja", "sv"])
# Any text, and text drawn from the characters that the rules treat specially, so that
# the interesting cases come up often: marks, joiners, controls, bidi, quotes, spacing
# accents, Turkish I, Greek sigma, digits of other scripts, CJK and Hangul.
SPECIAL = (
    "aAeEiIİıßςΣσé\u0301\u0308\u0327\u0300\u200b\u200c\u200d\u2060\u00ad\ufeff\u202e\u200f"
    "\u061c\ufe0f\u034f\t\n\x00\x7f\u0085\u00a0\u3000 .,;:!?¿¡'\"«»“”‘’´¨`-–—…#@%&"
    "ﬁﬂＡａ１①²ℌ٣३مرحباक्षिहिंदी日本語カ゛ｶﾞ한국어ǰΐᾳǼ"
)
TEXT = st.one_of(
    st.text(max_size=260),
    st.text(alphabet=st.sampled_from(SPECIAL), max_size=260),
)


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=400)
@given(TEXT, LOCALES)
def test_normalize_is_idempotent_and_capped(text: str, locale: str | None) -> None:
    once = normalize(text, locale)
    assert normalize(once, locale) == once
    assert len(once) <= MAX_QUERY_CHARS
    assert once == once.strip()
    assert "  " not in once


@settings(max_examples=400)
@given(TEXT, LOCALES)
def test_normalize_leaves_no_control_or_invisible_characters(text: str, locale: str | None) -> None:
    out = normalize(text, locale)
    categories = {unicodedata.category(c) for c in out}
    assert not categories & {"Cc", "Cs", "Co", "Zl", "Zp"}
    for i, ch in enumerate(out):
        if unicodedata.category(ch) == "Cf":
            # Only a joiner between two letters of a script that uses it.
            assert ch in "\u200c\u200d"
            assert 0 < i < len(out) - 1
    assert not any(c.isspace() and c != " " for c in out)


@settings(max_examples=400)
@given(TEXT, LOCALES)
# Decomposed, the grave accent stands between the virama and the joiner.
@example("\u00e0\u094d\u200c\u0606", None)
def test_nfc_and_nfd_spellings_normalize_alike(text: str, locale: str | None) -> None:
    assert normalize(_nfd(text), locale) == normalize(_nfc(text), locale)
    assert match_key(_nfd(text), locale) == match_key(_nfc(text), locale)
    assert tokens(_nfd(text), locale) == tokens(_nfc(text), locale)


@settings(max_examples=400)
@given(TEXT, LOCALES)
def test_match_key_is_idempotent_capped_and_a_key_of_normalize(
    text: str, locale: str | None
) -> None:
    key = match_key(text, locale)
    assert match_key(key, locale) == key
    assert match_key(normalize(text, locale), locale) == key
    assert len(key) <= MAX_QUERY_CHARS


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=300))
def test_the_ascii_fast_path_agrees_with_the_unicode_path(text: str) -> None:
    # A non-ASCII character that every rule deletes sends the text down the slow path.
    assert normalize(text) == normalize(text + "\u200b")


def test_input_past_the_input_limit_is_cut_before_any_work() -> None:
    assert normalize("a" * (MAX_INPUT_CHARS + 10_000)) == "a" * MAX_QUERY_CHARS
    assert normalize("\u200b" * MAX_INPUT_CHARS + "hidden") == ""


# -- the Unicode tables -------------------------------------------------------------------


def test_tables_match_this_interpreters_unicode_database() -> None:
    scanned = _tables.scan()
    if unicodedata.unidata_version == _tables.UNICODE_VERSION:
        assert scanned["OTHER"] == _tables.OTHER
        assert scanned["PUNCTUATION"] == _tables.PUNCTUATION
        assert scanned["SYMBOLS"] == _tables.SYMBOLS
        assert scanned["DIGIT_ZEROS"] == _tables.DIGIT_ZEROS
    else:  # a newer Unicode only adds characters: what the tables list keeps its class
        for name, first in (("OTHER", "C"), ("PUNCTUATION", "P"), ("SYMBOLS", "S")):
            table = getattr(_tables, name)
            assert all(unicodedata.category(chr(cp))[0] == first for lo, _ in table for cp in (lo,))
    for zero in _tables.DIGIT_ZEROS:
        assert [unicodedata.digit(chr(zero + d)) for d in range(10)] == list(range(10))


# -- rules, one at a time -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  New   York\tPizza\n", "new york pizza"),
        ("ＮＥＷ ＹＯＲＫ", "new york"),  # full width
        ("ﬁnancial ﬂow", "financial flow"),  # ligatures
        ("𝐛𝐨𝐥𝐝 ⓒⓘⓡⓒⓛⓔ", "bold circle"),  # mathematical and circled letters
        ("don´t stop", "don't stop"),  # acute accent as apostrophe
        ("don’t “stop”", 'don\'t "stop"'),  # curly quotes
        ("«Спокойный» бой", '"спокойный" бой'),  # guillemets
        ("1990–2000 — war", "1990-2000 - war"),  # dashes
        ("¿Qué es?", "qué es"),  # sentence punctuation at the ends
        ('"the matrix"', "the matrix"),  # a quote pair around the whole query
        ('the "matrix', 'the "matrix'),  # an inner quote stays
        (".net framework", ".net framework"),  # a leading dot stays
        ("c# and c++", "c# and c++"),
        ("-40 celsius", "-40 celsius"),
        ("what???!!!", "what"),
        ("ha\u200bte", "hate"),  # zero-width space
        ("soft\u00adware", "software"),  # soft hyphen
        ("\ufeffbom", "bom"),  # byte-order mark
        ("a\u202eb\u202cc", "abc"),  # bidi override
        ("e\u0301te\u0301", "été"),  # decomposed input composes
        ("カ゛ラス", "ガラス"),  # spacing voicing mark composes
        ("ｶﾞﾗｽ", "ガラス"),  # half-width katakana
        ("İstanbul", "istanbul"),  # no stray dot above
        ("STRAßE", "straße"),  # lowercase, not case folding: ß kept for display
        ("ΟΔΟΣ", "οδος"),  # final sigma kept for display
        ("word\x00\x07bell", "wordbell"),
        ("", ""),
        ("   \t\n ", ""),
    ],
)
def test_normalize_rules(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_turkish_i_follows_the_locale() -> None:
    assert normalize("ISPARTA İZMİR", "tr") == "ısparta izmir"
    assert normalize("ISPARTA İZMİR", "en") == "isparta izmir"
    assert match_key("Kadıköy", "tr") == "kadıköy"  # nothing folds in Turkish
    assert match_key("Kadıköy", "en") == "kadikoy"  # elsewhere the dotless ı folds too
    assert match_key("ışık", "tr") != match_key("isik", "tr")
    assert match_key("IŞIK", "az") == "ışık"


def test_right_to_left_text_stays_in_logical_order() -> None:
    arabic = "ما هي المسألة الشرقية"
    marked = "\u200f" + arabic.replace(" ", " \u200e") + "\u061c ؟"
    assert normalize(marked, "ar") == arabic
    hebrew = "\u202bשלום עולם\u202c"
    assert normalize(hebrew) == "שלום עולם"
    # An override that displays "etah" as "hate" is removed; the stored text is "etah".
    assert normalize("\u202eetah") == "etah"


def test_joiners_stay_only_where_a_script_spells_with_them() -> None:
    persian = "می\u200cخواهم"
    assert normalize(persian, "fa") == persian
    hindi = "क्\u200dष"
    assert normalize(hindi, "hi") == hindi
    family = "👩\u200d👩\u200d👧"
    assert normalize(family) == family
    assert normalize("ha\u200cte\u200d") == "hate"
    # The match key drops them: users type the Persian word with or without one.
    assert match_key(persian, "fa") == "میخواهم"


def test_length_cap_cuts_at_a_word_and_never_inside_a_character() -> None:
    words = " ".join(["word"] * 60)  # 299 characters
    out = normalize(words)
    assert len(out) <= MAX_QUERY_CHARS
    assert out.endswith("word")
    hindi = "कि" * 150  # no spaces: consonant + vowel sign pairs
    cut = normalize(hindi)
    assert len(cut) <= MAX_QUERY_CHARS
    assert cut.endswith("कि")


def test_validate_query_names_the_rule() -> None:
    assert validate_query("  Café? ") == "café"
    with pytest.raises(InvalidInput) as empty:
        validate_query(" ?! \u200b")
    assert empty.value.field == "query"
    assert "empty" in empty.value.rule
    with pytest.raises(InvalidInput) as long:
        validate_query("x" * 201, field="prefix")
    assert long.value.field == "prefix"
    assert "at most 200 characters after normalization (has 201)" in long.value.rule
    assert validate_query("x" * 200 + " ???") == "x" * 200  # punctuation trimmed first
    with pytest.raises(InvalidInput) as raw:
        validate_query("\u200b" * (MAX_INPUT_CHARS + 1))
    assert f"at most {MAX_INPUT_CHARS} characters" in raw.value.rule


# -- matching keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["fr", "es", "de", "en", "fr-CA", "en_US", None])
def test_cafe_finds_cafe_where_the_locale_folds(locale: str | None) -> None:
    assert match_key("Café", locale) == match_key("cafe", locale) == "cafe"
    assert match_key("CRÈME BRÛLÉE", locale) == "creme brulee"


def test_folding_keeps_the_letters_an_alphabet_lists_on_their_own() -> None:
    assert match_key("año", "es") == "año"  # año (year) is not ano
    assert match_key("año", "en") == "ano"
    assert match_key("får", "sv") != match_key("far", "sv")
    assert match_key("Müller", "de") == "muller"
    assert match_key("Œuvre", "fr") == "oeuvre"
    assert match_key("Łódź", "pl") == "lodz"


def test_match_key_case_folds_and_unifies_digits() -> None:
    assert match_key("STRASSE") == match_key("Straße") == "strasse"
    assert match_key("ΟΔΟΣ") == match_key("οδός") == "οδοσ"
    assert match_key("١٢٣ كتاب", "ar") == "123 كتاب"
    assert match_key("२०२४ चुनाव", "hi") == "2024 चुनाव"
    assert fold("ЁЛКА", "ru") == "елка"


def test_match_key_punctuation() -> None:
    assert match_key("don't stop") == "dont stop"
    assert match_key("l'ingénieur", "fr") == "l ingenieur"  # elision: two words
    assert match_key("3.5 mm, 1,000 items.") == "3.5 mm 1,000 items"
    assert match_key("AT&T c# 100%") == "at&t c# 100%"
    assert match_key("t-shirt / ac-dc") == "t shirt ac dc"


# -- ten languages and more: short real queries ------------------------------------------------

CASES = [
    # (locale, typed, normalize, match_key)
    ("en", "  How long does a Philosophy degree take?", "how long does a philosophy degree take",
     "how long does a philosophy degree take"),
    ("en", "Résumé tips for 2024!", "résumé tips for 2024", "resume tips for 2024"),
    ("de", "Wie groß ist der größte Python?", "wie groß ist der größte python",
     "wie gross ist der grosste python"),
    ("de", "Müller-Lüdenscheidt Straße", "müller-lüdenscheidt straße",
     "muller ludenscheidt strasse"),
    ("fr", "Où se trouve Halle en Allemagne ?", "où se trouve halle en allemagne",
     "ou se trouve halle en allemagne"),
    ("fr", "Comment s'appelle l'ingénieur ?", "comment s'appelle l'ingénieur",
     "comment s appelle l ingenieur"),
    ("es", "¿Quién fue George Armstrong Custer?", "quién fue george armstrong custer",
     "quien fue george armstrong custer"),
    ("es", "Año Nuevo en España", "año nuevo en españa", "año nuevo en españa"),
    ("ru", "Когда родилась Князева Марина Леонидовна?", "когда родилась князева марина леонидовна",
     "когда родилась князева марина леонидовна"),
    ("ru", "Ёлка «Новый год»", 'ёлка "новый год"', "елка новый год"),
    ("ar", "كم تبعد بيت لحم على القدس؟", "كم تبعد بيت لحم على القدس",
     "كم تبعد بيت لحم على القدس"),
    ("ar", "مُحَمَّد ٢٠٢٤", "مُحَمَّد ٢٠٢٤", "محمد 2024"),
    ("hi", "भारत में कुल कितने राज्य है?", "भारत में कुल कितने राज्य है",
     "भारत में कुल कितने राज्य है"),
    ("hi", "बिल गेट्स का जन्म कोनसे वर्ष में हुआ?", "बिल गेट्स का जन्म कोनसे वर्ष में हुआ",
     "बिल गेट्स का जन्म कोनसे वर्ष में हुआ"),
    ("ja", "ロジャー・フェデラーはいつ生まれた？", "ロジャー・フェデラーはいつ生まれた",
     "ロジャー フェデラーはいつ生まれた"),
    ("ja", "ｶﾞﾝﾀﾞﾑ　ＲＧ", "ガンダム rg", "ガンダム rg"),
    ("ko", "로마의 면적은 서울시의 2배인가요?", "로마의 면적은 서울시의 2배인가요",
     "로마의 면적은 서울시의 2배인가요"),
    ("ko", "오대호의 크기는?", "오대호의 크기는", "오대호의 크기는"),
    ("zh", "月球到地球的距离是多少？", "月球到地球的距离是多少", "月球到地球的距离是多少"),
    ("zh", "郑州市位于中国哪个省？", "郑州市位于中国哪个省", "郑州市位于中国哪个省"),
    ("tr", "İSTANBUL'DA HAVA", "istanbul'da hava", "istanbulda hava"),
    ("el", "Πού είναι η Αθήνα;", "πού είναι η αθήνα", "που ειναι η αθηνα"),  # Greek ";" is "?"
    ("pt", "Ação de graças", "ação de graças", "acao de gracas"),
    ("he", "שָׁלוֹם עולם", "שָׁלוֹם עולם", "שלום עולם"),
]  # fmt: skip


@pytest.mark.parametrize(("locale", "typed", "display", "key"), CASES)
def test_real_queries(locale: str, typed: str, display: str, key: str) -> None:
    assert normalize(typed, locale) == display
    assert match_key(typed, locale) == key


def test_scripts_whose_marks_are_letters_are_never_folded() -> None:
    for locale in (None, "en", "hi", "ja", "ko", "ar"):
        assert match_key("किताब", locale) == "किताब"  # Devanagari vowel signs stay
        assert match_key("がぎぐ", locale) == "がぎぐ"  # voiced kana stay
        assert match_key("한국어", locale) == "한국어"  # Hangul syllables stay composed
        assert match_key("كتاب", locale) == "كتاب"


def test_locale_rules_read_any_tag_spelling() -> None:
    assert locale_rules("de-DE").language == "de"
    assert locale_rules("pt_BR").language == "pt"
    assert locale_rules("zh-Hant-TW").language == "zh"
    assert locale_rules("TR").turkic
    assert locale_rules("not a locale!").language == ""
    assert locale_rules(None).folds_diacritics


# -- tokens -------------------------------------------------------------------------------------


def test_ngrams() -> None:
    assert ngrams("地球的", 2) == ["地球", "球的"]
    assert ngrams("地", 2) == ["地"]
    assert ngrams("", 2) == []
    assert ngrams("abcd", 3) == ["abc", "bcd"]
    with pytest.raises(ValueError, match="at least 1"):
        ngrams("abc", 0)


def test_tokens_split_words_and_bigram_unspaced_scripts() -> None:
    assert tokens("Running Shoes, blue!") == ["running", "shoes", "blue"]
    assert tokens("月球到地球", "zh") == ["月球", "球到", "到地", "地球"]
    assert tokens("iPhone15手机壳", "zh") == ["iphone15", "手机", "机壳"]
    assert tokens("東京 天気", "ja") == ["東京", "天気"]
    assert tokens("ガンダムの歴史", "ja") == ["ガン", "ンダ", "ダム", "ムの", "の歴", "歴史"]
    assert tokens("서울 날씨", "ko") == ["서울", "날씨"]  # Korean keeps its words
    assert tokens("किताब की दुकान", "hi") == ["किताब", "की", "दुकान"]


def test_a_query_shares_tokens_with_a_longer_one_that_contains_it() -> None:
    assert set(tokens("地球", "zh")) <= set(tokens("月球到地球的距离", "zh"))
    assert set(tokens("東京", "ja")) <= set(tokens("東京の天気", "ja"))
