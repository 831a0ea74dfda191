"""Reference numbers for Voxbridge's text-quality metrics (run through scripts/eval-reference).

For every case directory under tests/fixtures/eval/ (hyp.txt, ref.txt and optionally ref2.txt,
ref3.txt, ... as further references, line-aligned), computes with the reference implementations

  * sacreBLEU's corpus BLEU with its defaults (13a tokenizer, exp smoothing, 4-grams),
  * sacreBLEU's chrF (word_order 0), chrF++ (word_order 2) and chrF++ with eps_smoothing=True,
  * jiwer's corpus WER of ref.txt against hyp.txt, both first normalised with Whisper's
    BasicTextNormalizer (copied below; jiwer has no transform that matches it),

and writes tests/fixtures/eval/reference.json, with the package versions used. Files are read
the way the sacrebleu command line reads them: UTF-8, lines split at "\\n" only, trailing
whitespace stripped.

  reference.py [--generate]   --generate: first rewrite the generated `large` case
"""

import argparse
import importlib.metadata
import json
import platform
import random
import re
import sys
import unicodedata
from pathlib import Path

import jiwer
from sacrebleu.metrics import BLEU, CHRF

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "eval"
# Cases up to this many lines also record the 13a tokenisation and the Whisper-normalised text
# of every line, so a mismatch can be found line by line.
DETAIL_MAX_LINES = 50

# --- Whisper's BasicTextNormalizer -----------------------------------------------------------
# Copied from openai-whisper 20250625, whisper/normalizers/basic.py (MIT licence), the default
# path only (remove_diacritics=False, split_letters=False).
WHISPER_NORMALIZER = "openai-whisper 20250625 whisper/normalizers/basic.py BasicTextNormalizer()"


def remove_symbols(s: str):
    """
    Replace any other markers, symbols, punctuations with a space, keeping diacritics
    """
    return "".join(
        " " if unicodedata.category(c)[0] in "MSP" else c
        for c in unicodedata.normalize("NFKC", s)
    )


def whisper_basic_normalize(s: str) -> str:
    s = s.lower()
    s = re.sub(r"[<\[][^>\]]*[>\]]", "", s)  # remove words between brackets
    s = re.sub(r"\(([^)]+?)\)", "", s)  # remove words between parenthesis
    s = remove_symbols(s).lower()
    s = re.sub(r"\s+", " ", s)  # replace any successive whitespace characters with a space
    return s


# --- fixtures ----------------------------------------------------------------------------------


def read_lines(path: Path) -> list[str]:
    """Like sacrebleu's command line: open(..., newline="\\n"), then line.rstrip()."""
    with open(path, encoding="utf-8", newline="\n") as f:
        return [line.rstrip() for line in f]


def reference_files(case: Path) -> list[Path]:
    extra = sorted(
        (p for p in case.glob("ref*.txt") if re.fullmatch(r"ref[0-9]+\.txt", p.name)),
        key=lambda p: int(p.name[3:-4]),
    )
    return [case / "ref.txt"] + extra


def bleu_numbers(hyps, refs):
    bleu = BLEU()
    s = bleu.corpus_score(hyps, refs)
    return {
        "score": s.score,
        "counts": list(s.counts),
        "totals": list(s.totals),
        "precisions": list(s.precisions),
        "bp": s.bp,
        "sys_len": s.sys_len,
        "ref_len": s.ref_len,
        "signature": bleu.get_signature().format(),
        "line": s.format(),
    }


def chrf_numbers(hyps, refs, **kwargs):
    chrf = CHRF(**kwargs)
    s = chrf.corpus_score(hyps, refs)
    return {"score": s.score, "name": s.name, "signature": chrf.get_signature().format()}


def wer_numbers(hyps, ref):
    h = [whisper_basic_normalize(x) for x in hyps]
    r = [whisper_basic_normalize(x) for x in ref]
    out = jiwer.process_words(reference=r, hypothesis=h)
    line_errors = []
    for rl, hl in zip(r, h):
        o = jiwer.process_words(reference=rl, hypothesis=hl)
        line_errors.append(o.substitutions + o.deletions + o.insertions)
    return {
        "wer": float(out.wer),
        "errors": out.substitutions + out.deletions + out.insertions,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
        "ref_words": sum(len(x) for x in out.references),
        "hyp_words": sum(len(x) for x in out.hypotheses),
        "line_errors": line_errors,
    }


def case_numbers(case: Path) -> dict:
    hyps = read_lines(case / "hyp.txt")
    ref_paths = reference_files(case)
    refs = [read_lines(p) for p in ref_paths]
    for p, r in zip(ref_paths, refs):
        if len(r) != len(hyps):
            sys.exit(f"{p}: {len(r)} lines, hyp.txt has {len(hyps)}")
    numbers = {
        "lines": len(hyps),
        "references": [p.name for p in ref_paths],
        "bleu": bleu_numbers(hyps, refs),
        "chrf": chrf_numbers(hyps, refs),
        "chrf++": chrf_numbers(hyps, refs, word_order=2),
        "chrf++_eps": chrf_numbers(hyps, refs, word_order=2, eps_smoothing=True),
        "wer": wer_numbers(hyps, refs[0]),
    }
    if len(hyps) <= DETAIL_MAX_LINES:
        tok = BLEU().tokenizer
        numbers["tok_13a"] = {
            "hyp": [tok(x.rstrip()) for x in hyps],
            "ref": [tok(x.rstrip()) for x in refs[0]],
        }
        numbers["whisper_normalised"] = {
            "hyp": [whisper_basic_normalize(x) for x in hyps],
            "ref": [whisper_basic_normalize(x) for x in refs[0]],
        }
    return numbers


# --- the generated `large` case --------------------------------------------------------------

SUBJECTS = [
    "The committee", "Our team", "The new manager", "A small group of students", "The city council",
    "My neighbour", "The research lab", "Every participant", "The board of directors", "Dr. Smith",
    "The U.N. envoy", "Mrs. O'Neill", "The start-up", "Our partners in Hà Nội",
    "The museum's curator",
]
VERBS = [
    "approved", "rejected", "discussed", "postponed", "reviewed", "announced", "presented",
    "questioned", "published", "signed", "cancelled", "praised",
]
OBJECTS = [
    "the budget for 2025", "a plan worth $1,250,000", "the report on climate change",
    "the proposal (version 2.3)", "a 15-page summary", "the results of the survey",
    "\"the final draft\"", "the R&D roadmap", "a 3.5% pay rise", "the well-known study",
    "the contract with AT&T", "the museum's new wing", "a list of 1,024 items", "the 2-year plan",
    "the café's licence", "the mayor's 10-point agenda",
]
TAILS = [
    "on Monday.", "after a long debate.", "without comment!", "at 10:30 a.m.", "in São Paulo.",
    "— again.", "; nobody objected.", "before the deadline?", "late last night.", "as expected.",
    "despite the rain...", "(finally).", "in Zürich, Switzerland.", "by a vote of 7-2.",
]
OTHER = [
    "Hôm nay trời rất đẹp, chúng tôi đi dạo trong công viên.",
    "Tôi muốn học tiếng Việt mỗi ngày.",
    "L'équipe a présenté « le rapport final » aujourd'hui.",
    "C'est très intéressant, n'est-ce pas ?",
    "我们明天早上九点在车站见面。",
    "東京は日本の首都です。",
    "Der Ausschuss hat den Plan genehmigt.",
    "¿Dónde está la estación de tren?",
]
SUBSTITUTES = {
    "approved": "accepted", "rejected": "refused", "discussed": "debated", "team": "group",
    "report": "paper", "plan": "scheme", "new": "recent", "final": "last", "small": "little",
    "results": "findings", "long": "lengthy", "late": "early", "Monday": "Tuesday",
    "trời": "thời", "rapport": "compte", "早上": "上午", "Plan": "Vorschlag",
}
FILLERS = ["uh", "the", "really", "well", "so", "um", "and"]


def generate_large(n: int = 300, seed: int = 7):
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        if rng.random() < 0.12:
            ref = rng.choice(OTHER)
        else:
            tail = rng.choice(TAILS)
            sep = "" if tail[0] in ";" else " "
            ref = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{sep}{tail}"
        refs.append(ref)
        r = rng.random()
        if r < 0.08:
            hyps.append(ref)
            continue
        if r < 0.10:
            hyps.append("")
            continue
        words = ref.split()
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            i = rng.randrange(len(words)) if words else 0
            if not words:
                words.append(rng.choice(FILLERS))
            elif op < 0.25:
                w = words[i]
                core = w.strip(".,;!?")
                if core in SUBSTITUTES:
                    words[i] = w.replace(core, SUBSTITUTES[core])
                else:
                    words[i] = rng.choice(FILLERS)
            elif op < 0.45 and len(words) > 1:
                del words[i]
            elif op < 0.60:
                words.insert(i, rng.choice(FILLERS))
            elif op < 0.72 and i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
            elif op < 0.82:
                words[i] = words[i].rstrip(".,;!?") or words[i]
            elif op < 0.90:
                words[i] = words[i].lower()
            else:
                words[i] = words[i].replace("&", "&amp;").replace(",", "").replace("\"", "&quot;")
        hyps.append(" ".join(words))
    out = FIXTURES / "large"
    out.mkdir(parents=True, exist_ok=True)
    (out / "hyp.txt").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    (out / "ref.txt").write_text("".join(r + "\n" for r in refs), encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generate", action="store_true", help="rewrite the `large` case first")
    args = parser.parse_args()
    if args.generate:
        generate_large()
    cases = sorted(p for p in FIXTURES.iterdir() if (p / "hyp.txt").is_file())
    result = {
        "generated_by": "scripts/eval-reference",
        "versions": {
            "sacrebleu": importlib.metadata.version("sacrebleu"),
            "jiwer": importlib.metadata.version("jiwer"),
            "python": platform.python_version(),
            "unicodedata": unicodedata.unidata_version,
            "whisper_normalizer": WHISPER_NORMALIZER,
        },
        "cases": {case.name: case_numbers(case) for case in cases},
    }
    target = FIXTURES / "reference.json"
    target.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for name, c in result["cases"].items():
        print(
            f"{name:20} lines {c['lines']:4}  BLEU {c['bleu']['score']:7.3f}  "
            f"chrF {c['chrf']['score']:7.3f}  chrF++ {c['chrf++']['score']:7.3f}  "
            f"WER {100 * c['wer']['wer']:7.3f} %"
        )
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
