#!/usr/bin/env python3
"""How much real target-language text a vocabulary map can still produce (issue 3).

A map built by scripts/make-vmap allows the pieces of wordfreq's N most frequent words of the
target language, every piece without letters, and whatever pieces the source sentence has. With
random-weight models the map's effect on translations cannot be measured, and the real NLLB
tokenizer is not available here either; this measures what does not depend on them: the share of
the words of real translated text (English → target, written by people) that are among those N
words or appear in the English source. A word that passes is always producible with the map
(its pieces are in it, whatever the tokenizer); a word that fails may still be (its pieces may
belong to other words), so the numbers are lower bounds on what the map lets through.

Text: Debian's package-description translations (DDTP, `Translation-<lang>` with the English
originals of `Translation-en`, fetched from deb.debian.org) and the gettext catalogues installed
under /usr/share/locale (msgid English, msgstr translated).

    scripts/vmap/coverage.py --to vi,fr [--words 50000] [--cache .tools/vmap-text]
"""
import argparse
import bz2
import gettext
import glob
import json
import lzma
import os
import re
import sys
import unicodedata
import urllib.request

import wordfreq

MIRROR = "http://deb.debian.org/debian/dists/bookworm/main/i18n"


def fetch(cache, name):
    path = os.path.join(cache, name)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        with urllib.request.urlopen(f"{MIRROR}/{name}", timeout=120) as r, open(path + ".part", "wb") as f:
            f.write(r.read())
        os.replace(path + ".part", path)
    return path


def ddtp(path, opener, lang):
    """{md5: description} of one Translation file."""
    out = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for record in f.read().split("\n\n"):
            md5 = re.search(r"^Description-md5: (\w+)", record, re.M)
            body = re.search(rf"^Description-{lang}: (.*(?:\n .*)*)", record, re.M)
            if md5 and body:
                text = re.sub(r"\n \.?", " ", body.group(1))
                out[md5.group(1)] = text
    return out


def pairs_debian(cache, lang):
    english = ddtp(fetch(cache, "Translation-en.xz"), lzma.open, "en")
    try:
        translated = ddtp(fetch(cache, f"Translation-{lang}.bz2"), bz2.open, lang)
    except Exception as e:  # noqa: BLE001 - a language without DDTP translations
        print(f"[coverage] no Debian translations for {lang}: {e}", file=sys.stderr)
        return []
    return [(english[m], t) for m, t in translated.items() if m in english]


def pairs_gettext(lang):
    out = []
    for mo in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo")):
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except Exception:  # noqa: BLE001 - a broken catalogue is skipped
            continue
        for msgid, msgstr in catalog.items():
            if isinstance(msgid, tuple):
                msgid = msgid[0]
            if msgid and msgstr and len(msgstr.split()) >= 3:
                out.append((msgid, msgstr))
    return out


def letters(tokens):
    return [t for t in tokens if any(unicodedata.category(c).startswith("L") for c in t)]


def measure(pairs, known, lang):
    words = covered = sentences = whole = 0
    missing = {}
    for source, target in pairs:
        # wordfreq's own tokenizer (case-folded, elisions and hyphens split as in its lists).
        from_source = set(letters(wordfreq.tokenize(source, "en")))
        sentences += 1
        ok = True
        for lw in letters(wordfreq.tokenize(target, lang)):
            words += 1
            if lw in known or lw in from_source:
                covered += 1
            else:
                ok = False
                missing[lw] = missing.get(lw, 0) + 1
        whole += ok
    top = sorted(missing.items(), key=lambda kv: -kv[1])[:15]
    return {
        "texts": sentences,
        "words": words,
        "word_coverage": round(100 * covered / max(words, 1), 2),
        "texts_fully_covered": round(100 * whole / max(sentences, 1), 2),
        "most_frequent_missing": top,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--to", required=True, help="target languages (wordfreq codes: vi,fr,de)")
    ap.add_argument("--words", default="50000", help="word-list sizes to compare, comma-separated")
    ap.add_argument("--cache", default=".tools/vmap-text")
    args = ap.parse_args()
    report = {}
    for lang in args.to.split(","):
        sources = {"debian": pairs_debian(args.cache, lang), "gettext": pairs_gettext(lang)}
        for n in [int(x) for x in args.words.split(",")]:
            # make_vmap.py adds lower-case, Capitalised and (short words) upper-case forms.
            known = set(wordfreq.top_n_list(lang, n))
            for name, pairs in sources.items():
                if pairs:
                    report[f"{lang} {name} top {n}"] = measure(pairs, known, lang)
    json.dump(report, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
