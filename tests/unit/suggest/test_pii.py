"""Personal-data detectors: known answers, negatives that look like numbers, scrubbing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.suggest.normalize import MAX_QUERY_CHARS, normalize
from recloop.suggest.pii import (
    TAGS,
    PiiConfig,
    ean13_valid,
    find_pii,
    iban_valid,
    luhn_valid,
    scrub,
)
from tests.unit.suggest.safety_corpus import PII_FORMS, SAFE

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "kind"), PII_FORMS)
def test_every_corpus_form_is_found_and_scrubbed(text: str, kind: str) -> None:
    scrubbed = scrub(text)
    assert kind in {f.kind for f in scrubbed.findings}
    assert TAGS[kind] in scrubbed.text  # type: ignore[index]
    assert scrub(scrubbed.text).findings == ()


@pytest.mark.parametrize("text", SAFE)
def test_ordinary_queries_hold_no_personal_data(text: str) -> None:
    assert find_pii(normalize(text)) == []


@pytest.mark.parametrize(
    "text",
    [
        "between 1990 and 2000",
        "1990 2000 2010 2020",  # years, not a phone or an account
        "zip 90210-1234",  # ZIP+4
        "12/25/2019",
        "25.12.2019 10:30",
        "192.168.100.200",
        "version 1.2.3.4",
        "isbn 978-3-16-148410-0",  # ISBN-13 with its own check digit
        "ean 400-6381-33393-1",  # EAN-13 barcode, grouped
        "isbn 0-306-40615-2",
        "3 4 5 6 7 8 9 10 11 12",
        "2 x 4 x 8 lumber",
        "1 800 flowers",
        "12345678",  # eight digits: below the default run length
        "look at this",
        "at dot com",
        "where is it at",
        "john at the example",
        "@ mentions",
        "email@",
        "model b00005n5pf",
    ],
)
def test_numbers_that_are_not_personal_data(text: str) -> None:
    assert find_pii(normalize(text)) == [], text


def test_findings_are_spans_of_the_normalized_text_and_hold_no_value() -> None:
    text = normalize("Mail Jane.Doe@Example.com or call +44 20 7946 0958")
    findings = find_pii(text)
    assert [(f.kind, text[f.start : f.end]) for f in findings] == [
        ("email", "jane.doe@example.com"),
        ("phone", "+44 20 7946 0958"),
    ]
    assert not hasattr(findings[0], "value")
    assert scrub("Mail Jane.Doe@Example.com or call +44 20 7946 0958").text == (
        "mail <email> or call <phone>"
    )


def test_luhn_iban_and_ean_checks() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000")
    assert iban_valid("gb82west12345698765432")
    assert not iban_valid("DE89370400440532013001")  # check digits fail
    assert not iban_valid("DE8937040044053201300")  # one character short for DE
    assert not iban_valid("ZZ89370400440532013000")  # no such country
    assert ean13_valid("9783161484100")
    assert not ean13_valid("9783161484101")


def test_an_iban_ends_at_its_countrys_length() -> None:
    text = normalize("pay DE89 3704 0044 0532 0130 00 bank fees")
    [finding] = find_pii(text)
    assert text[finding.start : finding.end] == "de89 3704 0044 0532 0130 00"


def test_a_phone_number_is_found_inside_a_longer_run_of_numbers() -> None:
    assert scrub("call 555 123 4567 2 times").text == "call <phone> 2 times"
    assert scrub("dial 8 (495) 123-45-67 x 2").text == "dial <phone> x 2"


def test_detectors_can_be_switched_off_and_the_run_length_set() -> None:
    assert scrub("a@b.com", PiiConfig(emails=False)).findings == ()
    assert scrub("x (at) y (dot) com", PiiConfig(obfuscated_emails=False)).findings == ()
    assert [f.kind for f in scrub("4111 1111 1111 1111", PiiConfig(cards=False)).findings] == [
        "digits"
    ]
    assert scrub("+44 20 7946 0958", PiiConfig(phones=False)).findings == ()
    assert scrub("1234567", PiiConfig(min_digit_run=7)).text == "<digits>"
    assert scrub("1234567").findings == ()
    assert scrub("123456789", PiiConfig(digit_runs=False)).findings == ()
    with pytest.raises(ValueError, match="min_digit_run"):
        PiiConfig(min_digit_run=2)
    with pytest.raises(ValueError, match="extra"):
        PiiConfig(cards=True, passports=True)  # type: ignore[call-arg]


def test_scrubbed_text_never_grows_past_the_cap_or_cuts_a_tag() -> None:
    text = " ".join(["a@b.cd"] * 29)  # 202 characters before normalization's cut
    scrubbed = scrub(text)
    assert len(scrubbed.text) <= MAX_QUERY_CHARS
    assert scrubbed.text.split(" ")[-1] == "<email>"


@settings(max_examples=300)
@given(st.text(alphabet="0123456789 -+().@abcdeimnotx", max_size=120))
def test_scrub_is_idempotent_and_capped(text: str) -> None:
    once = scrub(text)
    assert len(once.text) <= MAX_QUERY_CHARS
    assert scrub(once.text).text == once.text
    spans = [(f.start, f.end) for f in once.findings]
    assert spans == sorted(spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
