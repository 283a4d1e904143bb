"""Query text on real queries: normalization cost and effect, personal-data flags, blocks.

Reads the query files in ``../shared/datasets/queries/`` (MIRACL questions in ten
languages, MS MARCO web queries; ``qid<TAB>query`` per line, see its SOURCE.txt) and
prints, per file: queries read, ``normalize`` / ``match_key`` / ``tokens`` / ``check`` /
``scrub`` cost per query (p50 and p99 of each query's best of three calls, one thread,
the timer's own cost included), how many queries normalization changes (and how many
beyond case, spacing and end punctuation), how many break the 200-character rule, the
share each personal-data detector flags (on MS MARCO: the false-positive rate, with every
flagged query printed to judge), and the share an example policy refuses, with the terms
that did it and how many matched only through the skeleton (look-alike, leetspeak or
spacing folding: on ordinary text, those are the skeleton's false positives).

    nice -n 10 .venv/bin/python benchmarks/suggest_text.py
    nice -n 10 .venv/bin/python benchmarks/suggest_text.py --limit 1000   # quicker
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.report import REPO_ROOT, RESULTS_DIR, environment, json_line, percentile, table
from harness.report import write_json as write_json_file
from recloop.errors import InvalidInput
from recloop.suggest.normalize import match_key, normalize, tokens, validate_query
from recloop.suggest.pii import find_pii, scrub
from recloop.suggest.safety import SafetyFilter, SafetyPolicy

DATA = REPO_ROOT.parent / "shared" / "datasets" / "queries"
REPEATS = 3
# What a naive normalizer would trim at the ends; changes beyond this and lowercasing are
# the Unicode rules at work (NFKC, quotes, invisible characters, Turkish I, …).
_END_PUNCTUATION = " ?!.¿¡\uff1f\u3002\u061f"

#: A small example policy: a few terms a real deployment would list, in three languages,
#: and two sensitive topics. Informational queries that use these words (a "sex hormones"
#: question) are refused by design: that is the policy, not a matching error.
EXAMPLE_POLICY = SafetyPolicy(
    blocked_terms=(
        "porn", "nude", "sex", "hate", "nazi", "kill yourself", "cocaine", "heroin",
        "casino", "gambling", "赌博", "казино",
    ),
    sensitive_topics={"self-harm": ("suicide", "self harm"), "weapons": ("gun", "bomb")},
)  # fmt: skip


def read_queries(path: Path) -> list[str]:
    """The query column of a ``qid<TAB>query`` file (CRLF or LF, blank lines skipped)."""
    out: list[str] = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        _, _, query = line.partition("\t")
        if query.strip():
            out.append(query)
    return out


def locale_of(path: Path) -> str:
    """The language of a file: MIRACL names it (``topics.miracl-v1.0-de-dev.tsv``)."""
    parts = path.name.split("-")
    return parts[2] if path.name.startswith("topics.miracl") else "en"


def plainly_in(term: str, key: str) -> bool:
    """Whether a term is in a match key as it is written: whole words, or anywhere for a
    term in a script written without spaces."""
    term_key = match_key(term)
    if any("\u3040" <= c <= "\u9fff" for c in term_key):
        return term_key in key
    return f" {term_key} " in f" {key} "


def best_us(fn: Callable[[str, str], object], queries: list[str], locale: str) -> list[float]:
    """Each query's best of ``REPEATS`` calls, in microseconds."""
    out: list[float] = []
    clock = time.perf_counter_ns
    for q in queries:
        best = 1 << 62
        for _ in range(REPEATS):
            start = clock()
            fn(q, locale)
            best = min(best, clock() - start)
        out.append(best / 1000)
    return out


def measure_file(path: Path, limit: int | None, safety: SafetyFilter) -> dict[str, Any]:
    queries = read_queries(path)[:limit]
    locale = locale_of(path)
    uncached = SafetyFilter(EXAMPLE_POLICY, cache_size=0)
    timings = {
        "normalize": best_us(normalize, queries, locale),
        "match_key": best_us(match_key, queries, locale),
        "tokens": best_us(tokens, queries, locale),
        "check": best_us(lambda q, loc: uncached.check(q, loc), queries, locale),
        "check_first": best_us(
            lambda q, loc: uncached.check(q, loc, explain=False), queries, locale
        ),
        "scrub": best_us(lambda q, loc: scrub(q, locale=loc), queries, locale),
    }
    changed = beyond_case = too_long = key_differs = 0
    pii: Counter[str] = Counter()
    flagged: list[tuple[str, str]] = []
    refused_queries = 0
    by_term: Counter[str] = Counter()
    skeleton_only: list[tuple[str, str]] = []
    for q in queries:
        n = normalize(q, locale)
        changed += n != q
        beyond_case += n != " ".join(q.lower().split()).strip(_END_PUNCTUATION)
        key_differs += match_key(q, locale) != n
        try:
            validate_query(q, locale)
        except InvalidInput:
            too_long += 1
        kinds = sorted({f.kind for f in find_pii(n)})
        for kind in kinds:
            pii[kind] += 1
            flagged.append((kind, n))
        verdict = safety.check(q, locale)
        if not verdict.allowed:
            refused_queries += 1
            key = match_key(q, locale)
            for r in verdict.reasons:
                by_term[f"{r.rule}:{r.detail}"] += 1
                if r.rule in ("blocked_term", "sensitive_topic") and not plainly_in(r.detail, key):
                    skeleton_only.append((r.detail, n))
    count = len(queries)
    return {
        "file": path.name,
        "locale": locale,
        "queries": count,
        "us": {
            name: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99)}
            for name, v in timings.items()
        },
        "changed": changed,
        "changed_beyond_case_and_spacing": beyond_case,
        "match_key_differs": key_differs,
        "over_200_chars": too_long,
        "pii": dict(pii),
        "pii_share": sum(pii.values()) / count if count else 0.0,
        "pii_flagged": flagged,
        "refused": refused_queries,
        "refused_share": refused_queries / count if count else 0.0,
        "refused_by": dict(by_term.most_common()),
        "skeleton_only": skeleton_only,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the queries folder")
    parser.add_argument("--limit", type=int, default=None, help="queries per file at most")
    args = parser.parse_args()
    files = sorted(args.data.glob("topics.*"))
    if not files:
        raise SystemExit(f"no query files in {args.data}")
    safety = SafetyFilter(EXAMPLE_POLICY)
    results = [measure_file(path, args.limit, safety) for path in files]

    table(
        "Normalization per query (µs: p50 / p99 of each query's best of 3 calls, one thread)",
        ["file", "queries", "normalize", "match_key", "tokens", "check", "check 1st", "scrub"],
        [
            [
                r["file"].removeprefix("topics.").removesuffix(".tsv").removesuffix(".txt"),
                r["queries"],
                *(
                    f"{r['us'][k]['p50']:.1f} / {r['us'][k]['p99']:.1f}"
                    for k in ("normalize", "match_key", "tokens", "check", "check_first", "scrub")
                ),
            ]
            for r in results
        ],
        note="check: the example policy, every reason, no verdict cache; check 1st: "
        "explain=False (stops at the first reason).",
    )
    table(
        "What normalization changes, what the detectors flag, what the example policy refuses",
        ["file", "changed", "beyond case/space/?!", "key != norm", ">200", "PII", "refused"],
        [
            [
                r["file"].removeprefix("topics.").removesuffix(".tsv").removesuffix(".txt"),
                f"{r['changed']} ({r['changed'] / r['queries']:.1%})",
                f"{r['changed_beyond_case_and_spacing']} "
                f"({r['changed_beyond_case_and_spacing'] / r['queries']:.1%})",
                r["match_key_differs"],
                r["over_200_chars"],
                f"{sum(r['pii'].values())} ({r['pii_share']:.3%}) {r['pii'] or ''}",
                f"{r['refused']} ({r['refused_share']:.2%})",
            ]
            for r in results
        ],
    )
    for r in results:
        if r["pii_flagged"]:
            print(f"\n{r['file']}: flagged as personal data")
            for kind, text in r["pii_flagged"]:
                print(f"  {kind:7} {text}")
    for r in results:
        if r["refused_by"]:
            top = ", ".join(f"{k} {v}" for k, v in list(r["refused_by"].items())[:8])
            print(f"\n{r['file']}: refused by {top}")
        for term, text in r["skeleton_only"]:
            print(f"  only through the skeleton: {term!r} in {text!r}")

    hit = safety.check("what is paula deen's brother")
    start = time.perf_counter_ns()
    for _ in range(10_000):
        safety.check("what is paula deen's brother")
    cached_us = (time.perf_counter_ns() - start) / 10_000 / 1000
    print(f"\ncheck with a cached verdict: {cached_us:.2f} µs ({'allowed' if hit.allowed else ''})")

    document = {
        "environment": environment("in-process"),
        "repeats": REPEATS,
        "policy": EXAMPLE_POLICY.model_dump(),
        "files": results,
        "cached_check_us": cached_us,
    }
    path = write_json_file(document, RESULTS_DIR / "suggest_text.json")
    print(f"wrote {path}")
    marco = [r for r in results if "msmarco" in r["file"]]
    json_line(
        "suggest_text",
        {
            "normalize_p99_us_max": max(r["us"]["normalize"]["p99"] for r in results),
            "check_p99_us_max": max(r["us"]["check"]["p99"] for r in results),
            "msmarco_pii_share": sum(sum(r["pii"].values()) for r in marco)
            / max(1, sum(r["queries"] for r in marco)),
        },
    )


if __name__ == "__main__":
    main()
