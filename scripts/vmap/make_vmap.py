#!/usr/bin/env python3
"""Writes a CTranslate2 vocabulary map (vmap.txt) that restricts an NLLB model's output to the
tokens of the deployment's target languages (scripts/make-vmap runs this; docs/BENCHMARKS.md).

CTranslate2 reads `<source n-gram>\\t<candidate> <candidate> ...` lines; the line with an empty
source is always allowed. We write:

- the empty-source line: every sentencepiece piece of the N most frequent words of each target
  language (wordfreq's lists, with and without the word-start marker, lower and capitalised),
  every piece with no letters in it (digits, punctuation, symbols), every language code and the
  special tokens;
- every single-letter piece (with and without the word-start marker) of the target language's
  script, so any word of the language stays spellable: a word the lists miss (a rare word, a
  name not in the source) costs more pieces instead of becoming impossible;
- one `piece\\tpiece` line per vocabulary piece, so whatever appears in a source sentence (a
  name, a number, a URL) may be copied into the translation.

Decoding then scores a few tens of thousands of tokens per step instead of NLLB's 256,206.

Next to it, vmap.json lists the target languages as FLORES-200 codes: the MT worker applies the
map only to translations into those languages (a Vietnamese map would ruin French output), and
with its default `--use-vmap auto` ignores a vmap.txt that has no such list.
"""
import argparse
import json
import os
import re
import sys
import unicodedata

import sentencepiece as spm
import wordfreq


def language_table():
    """(flores, short code) pairs of the languages NLLB-200 translates, from the table the edge
    and workers use (shared/src/languages.rs), so both sides agree on every code."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/src/languages.rs")
    with open(path, encoding="utf-8") as f:
        return re.findall(r'lang\("([a-z]{3}_[A-Z][a-z]{3})", "([A-Za-z-]+)"', f.read())


def resolve(code, table):
    """FLORES code and wordfreq code of a --to entry ("vi", "zh-Hant" or "vie_Latn")."""
    for flores, short in table:
        if code in (flores, short) or code.lower() in (flores.lower(), short.lower()):
            return flores, short.split("-")[0]
    sys.exit(f"unknown language {code!r}: use a code of GET /v1/languages (vi, fr, zh-Hant, vie_Latn)")


# Unicode character-name prefixes of the scripts in FLORES-200 codes (the part after "_"); a
# script not listed here gets no letter fallback beyond the word lists.
SCRIPT_NAMES = {
    "Latn": ("LATIN",), "Cyrl": ("CYRILLIC",), "Grek": ("GREEK",), "Arab": ("ARABIC",),
    "Hebr": ("HEBREW",), "Deva": ("DEVANAGARI",), "Beng": ("BENGALI",), "Taml": ("TAMIL",),
    "Telu": ("TELUGU",), "Knda": ("KANNADA",), "Mlym": ("MALAYALAM",), "Gujr": ("GUJARATI",),
    "Guru": ("GURMUKHI",), "Orya": ("ORIYA",), "Sinh": ("SINHALA",), "Thai": ("THAI",),
    "Laoo": ("LAO",), "Khmr": ("KHMER",), "Mymr": ("MYANMAR",), "Geor": ("GEORGIAN",),
    "Armn": ("ARMENIAN",), "Ethi": ("ETHIOPIC",), "Hang": ("HANGUL",),
    "Hans": ("CJK",), "Hant": ("CJK",), "Jpan": ("CJK", "HIRAGANA", "KATAKANA"),
}


def script_letters(vocab, flores):
    """Single-letter pieces (bare or after the word-start marker) of the language's script."""
    prefixes = SCRIPT_NAMES.get(flores.split("_")[1], ())
    out = set()
    for t in vocab:
        letter = t[1:] if t.startswith("\u2581") else t
        if len(letter) == 1 and unicodedata.category(letter).startswith("L"):
            name = unicodedata.name(letter, "")
            if any(name.startswith(p) for p in prefixes):
                out.add(t)
    return out


def forms(word, base):
    """The spellings of a word-list entry to tokenise. wordfreq case-folds its lists, which
    turns German ß into ss: add the ß spelling back (an extra piece costs a little time, a
    missing one makes the letter impossible to produce)."""
    out = {word, word.capitalize()}
    if len(word) <= 4:
        out.add(word.upper())
    if base == "de" and "ss" in word:
        out |= {f.replace("ss", "ß") for f in list(out)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="CTranslate2 NLLB model directory")
    ap.add_argument("--to", required=True, help="target languages, ISO 639-1, comma-separated (vi,fr)")
    ap.add_argument("--words", type=int, default=50000, help="most frequent words per language")
    ap.add_argument("--output", help="default: MODEL/vmap.txt")
    args = ap.parse_args()

    with open(os.path.join(args.model, "shared_vocabulary.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    in_vocab = set(vocab)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "sentencepiece.bpe.model"))

    always = {t for t in ("<s>", "</s>", "<unk>", "<pad>") if t in in_vocab}
    # Language codes (xxx_Xxxx) and pieces without letters.
    for t in vocab:
        if len(t) == 8 and t[3] == "_" and t[:3].isalpha() and t[4:].isalpha():
            always.add(t)
        elif not any(unicodedata.category(c).startswith("L") for c in t):
            always.add(t)
    available = wordfreq.available_languages()
    table = language_table()
    per_language = {}
    targets = []
    for lang in [l.strip() for l in args.to.split(",") if l.strip()]:
        flores, base = resolve(lang, table)
        if flores not in in_vocab:
            sys.exit(f"the model's vocabulary has no {flores}")
        if base not in available:
            sys.exit(f"wordfreq has no word list for {lang!r}; available: {', '.join(sorted(available))}")
        targets.append(flores)
        pieces = set()
        for word in wordfreq.top_n_list(base, args.words):
            for form in forms(word, base):
                for text in (form, " " + form):
                    pieces.update(p for p in sp.encode(text, out_type=str) if p in in_vocab)
        letters = script_letters(vocab, flores)
        per_language[flores] = {"word_pieces": len(pieces), "script_letters": len(letters)}
        always |= pieces | letters

    out = args.output or os.path.join(args.model, "vmap.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\t" + " ".join(sorted(always)) + "\n")
        for t in vocab:
            if t and " " not in t and "\t" not in t and t not in always:
                f.write(f"{t}\t{t}\n")
    manifest = {
        "languages": targets,
        "words_per_language": args.words,
        "always_allowed": len(always),
        "source": "scripts/make-vmap (wordfreq word lists)",
    }
    with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(json.dumps({
        "vmap": out,
        "languages": targets,
        "always_allowed": len(always),
        "vocabulary": len(vocab),
        "pieces_per_language": per_language,
        "words_per_language": args.words,
        "wordfreq": wordfreq.__version__ if hasattr(wordfreq, "__version__") else "?",
    }))


if __name__ == "__main__":
    main()
