"""The safety test corpus: disguised blocked terms, personal data in many forms, and the
ordinary queries that must stay suggestible. Written for these tests; every entry of the
first two lists must be refused (0 suggested)."""

# ruff: noqa: RUF001, RUF003 (look-alike characters are the point of this corpus)

from __future__ import annotations

from recloop.suggest.pii import PiiKind
from recloop.suggest.safety import SafetyPolicy

#: The corpus policy: a few terms, each disguised below.
POLICY = SafetyPolicy(
    blocked_terms=("hate", "kill yourself", "nazi", "scam", "赌博", "убийство"),
    sensitive_topics={"self-harm": ("suicide", "self harm")},
)

ZWSP, ZWNJ, ZWJ, WJ, SHY, BOM, CGJ, VS16 = (
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\u00ad",
    "\ufeff",
    "\u034f",
    "\ufe0f",
)

#: (query, the configured term it disguises).
BLOCKED_FORMS: tuple[tuple[str, str], ...] = (
    # plain and cased
    ("hate", "hate"),
    ("HATE", "hate"),
    ("I Hate Mondays", "hate"),
    ("hate!!!", "hate"),
    ("#hate", "hate"),
    # leetspeak
    ("h4te", "hate"),
    ("h@te", "hate"),
    ("H4T3", "hate"),
    ("i h4te you", "hate"),
    ("n4z1", "nazi"),
    ("$cam", "scam"),
    ("5cam", "scam"),
    ("sc@m alert", "scam"),
    ("k1ll y0urs3lf", "kill yourself"),
    ("ki11 yourse1f", "kill yourself"),
    # spacing and separators
    ("h a t e", "hate"),
    ("i h a t e you", "hate"),
    ("h.a.t.e", "hate"),
    ("h-a-t-e", "hate"),
    ("h_a_t_e", "hate"),
    ("h*a*t*e", "hate"),
    ("h/a/t/e", "hate"),
    ("h • a • t • e", "hate"),
    ("ha te", "hate"),
    ("killyourself", "kill yourself"),
    ("kill   yourself", "kill yourself"),
    ("KILL-YOURSELF", "kill yourself"),
    ("k i l l y o u r s e l f", "kill yourself"),
    ("s c a m", "scam"),
    ("赌 博", "赌博"),
    # elongation
    ("haaaate", "hate"),
    ("hateeee", "hate"),
    ("kiiilll yourself", "kill yourself"),
    # invisible characters
    (f"h{ZWSP}ate", "hate"),
    (f"h{ZWNJ}a{ZWJ}t{WJ}e", "hate"),
    (f"ha{SHY}te", "hate"),
    (f"{BOM}hate", "hate"),
    (f"ha{CGJ}te", "hate"),
    (f"ha{VS16}te", "hate"),
    (f"sc{ZWSP}am", "scam"),
    # look-alike letters
    ("hаte", "hate"),  # Cyrillic а
    ("НАТЕ", "hate"),  # Cyrillic capitals
    ("ΗΑΤΕ", "hate"),  # Greek capitals
    ("nаzі", "nazi"),  # Cyrillic а and і
    ("ʜᴀᴛᴇ", "hate"),  # small capitals
    ("ｈａｔｅ", "hate"),  # full width
    ("𝐡𝐚𝐭𝐞", "hate"),  # mathematical bold
    ("𝒽𝒶𝓉ℯ", "hate"),  # mathematical script
    ("ⓗⓐⓣⓔ", "hate"),  # circled
    ("⒣⒜⒯⒠", "hate"),  # parenthesized
    ("ѕсаm", "scam"),  # all Cyrillic
    # diacritics and overlays
    ("hàte", "hate"),
    ("hâté", "hate"),
    ("h̶a̶t̶e̶", "hate"),
    ("h̷a̷t̷e̷", "hate"),
    ("ḧäẗë", "hate"),
    # scripts without spaces, and other languages
    ("网上赌博网站", "赌博"),
    ("ＳＣＡＭ", "scam"),
    ("убийство", "убийство"),
    ("Убийство в городе", "убийство"),
    ("yбийствo", "убийство"),  # Latin y and o mixed into the Russian word
)

#: (query, the kind of personal data in it).
PII_FORMS: tuple[tuple[str, PiiKind], ...] = (
    # e-mail
    ("john.doe@example.com", "email"),
    ("John.Doe@Example.COM", "email"),
    ("mail jane_doe+promo@mail.co.uk today", "email"),
    ("jane @ example.org", "email"),
    ("ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email"),
    (f"john@exa{ZWSP}mple.com", "email"),
    ("почта ivan.petrov@mail.ru", "email"),
    ("用户 wang.wei@qq.com", "email"),
    ("name at example dot com", "email"),
    ("name (at) example (dot) com", "email"),
    ("name [at] example [dot] org", "email"),
    ("name{at}example{dot}co{dot}uk", "email"),
    ("NAME AT EXAMPLE DOT DE", "email"),
    # phone numbers
    ("+1 (555) 123-4567", "phone"),
    ("+1-555-123-4567", "phone"),
    ("+15551234567", "phone"),
    ("555-123-4567", "phone"),
    ("(555) 123-4567", "phone"),
    ("555.123.4567", "phone"),
    ("1-800-555-0199", "phone"),
    ("call me 555 123 4567 tonight", "phone"),
    ("+44 20 7946 0958", "phone"),
    ("020 7946 0958", "phone"),
    ("+49 30 12345678", "phone"),
    ("0049 30 12345678", "phone"),
    ("030 12345678", "phone"),
    ("+33 6 12 34 56 78", "phone"),
    ("06 12 34 56 78", "phone"),
    ("+34 612 345 678", "phone"),
    ("612 345 678", "phone"),
    ("+7 (495) 123-45-67", "phone"),
    ("8 (495) 123-45-67", "phone"),
    ("+81 3-1234-5678", "phone"),
    ("090-1234-5678", "phone"),
    ("+86 138 0013 8000", "phone"),
    ("138 0013 8000", "phone"),
    ("+91 98765 43210", "phone"),
    ("+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨", "phone"),  # Arabic-Indic digits
    ("+९१ ९८७६५ ४३२१०", "phone"),  # Devanagari digits
    ("＋１ ５５５ １２３ ４５６７", "phone"),  # full width
    # payment cards (test numbers that pass Luhn)
    ("4111 1111 1111 1111", "card"),
    ("4111-1111-1111-1111", "card"),
    ("4111111111111111", "card"),
    ("my card 5555 5555 5555 4444 exp 12", "card"),
    ("3782 822463 10005", "card"),
    ("6011 1111 1111 1117", "card"),
    ("４１１１ １１１１ １１１１ １１１１", "card"),
    # IBANs (the registry's examples)
    ("DE89 3704 0044 0532 0130 00", "iban"),
    ("de89370400440532013000", "iban"),
    ("iban GB82 WEST 1234 5698 7654 32 please", "iban"),
    ("FR14 2004 1010 0505 0001 3M02 606", "iban"),
    ("NL91 ABNA 0417 1643 00", "iban"),
    ("ES91 2100 0418 4502 0005 1332", "iban"),
    ("BE68 5390 0754 7034", "iban"),
    ("CH93 0076 2011 6238 5295 7", "iban"),
    ("IT60 X054 2811 1010 0000 0123 456", "iban"),
    # long digit runs
    ("123456789", "digits"),
    ("account 0012345678901", "digits"),
    ("ssn 123-45-6789", "digits"),
    ("order 4111 1111 1111 1112", "digits"),  # card-shaped, fails Luhn
    ("४५६७८९१२३४", "digits"),  # Devanagari digits
)

#: Ordinary queries, many with numbers or near-misses of the terms above, that must stay
#: suggestible under ``POLICY``.
SAFE: tuple[str, ...] = (
    "what is paula deen's brother",
    "how many 1000 in 1 million",
    "iphone 15 pro max",
    "between 1990 and 2000",
    "1990 2000 2010 census",
    "zip code 90210",
    "zip 90210-1234",
    "what std code is 01764",
    "isbn 978-3-16-148410-0",
    "192.168.1.1 login",
    "windows 10 version 1909",
    "3.5 mm jack",
    "2 1/2 cups in ml",
    "c# tutorial",
    "at&t phone number",
    "email address format",
    "what is an iban",
    "look at this",
    "whatever happened to",
    "chateau margaux 2015",
    "scampi recipe",
    "nazir ahmed cricket",
    "kill bill",
    "yourself",
    "shiitake mushrooms",
    "class action lawsuit",
    "a b testing",
    "l'ingénieur qui a construit la tour eiffel",
    "wie groß ist der größte python",
    "¿qué significa cuauhtémoc?",
    "когда родилась князева марина леонидовна",
    "ما هي المسألة الشرقية ؟",
    "भारत में कुल कितने राज्य है?",
    "ロジャー・フェデラーはいつ生まれた",
    "로마의 면적은 서울시의 2배인가요?",
    "月球到地球的距离是多少？",
    "博物馆开放时间",
)
