#!/usr/bin/env python3
"""How much a vocabulary map saves, by its size (issue 3, docs/BENCHMARKS.md).

The 600M-shaped fixture's tokenizer is a 1000-piece stand-in, so the map scripts/make-vmap builds
for it (about a thousand tokens) is far smaller than a map built with the real NLLB tokenizer
would be (every frequent word of the language is a piece of its own there). This measures the
cost of one translation with maps of several sizes — K tokens drawn at random from the
vocabulary, seeded — against no map, in one run, alternating, so the gain of a real map can be
read off its size (`wc -w MODEL/vmap.txt` on the first line).

    .tools/bench-venv/bin/python scripts/bench/vmap_size.py --model .tools/nllb-600m-int8 \
        --sizes 1000,8000,16000,32000,64000 --runs 3

Python CTranslate2 (the wheel) on the same model, beam 4, output forced to --length tokens.
"""
import argparse
import json
import os
import random
import statistics
import tempfile
import time

import ctranslate2
import sentencepiece as spm

SENTENCE = ("The quick brown fox jumps over the lazy dog while the children watch "
            "from the window of the old school house.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--sizes", default="1000,8000,16000,32000,64000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--length", type=int, default=48)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    model = os.path.abspath(args.model)
    with open(os.path.join(model, "shared_vocabulary.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model, "sentencepiece.bpe.model"))
    source = ["eng_Latn"] + sp.encode(SENTENCE, out_type=str) + ["</s>"]
    specials = ["<s>", "</s>", "<unk>", "<pad>", "vie_Latn"]
    pool = [t for t in vocab if t and " " not in t and t not in specials]
    rng = random.Random(1234)

    sizes = [0] + [int(s) for s in args.sizes.split(",") if s.strip()]
    translators = {}
    dirs = []
    for k in sizes:
        if k == 0:
            path = model
        else:
            d = tempfile.TemporaryDirectory(prefix=f"vmap-{k}-")
            dirs.append(d)
            path = d.name
            for name in os.listdir(model):
                if name not in ("vmap.txt", "vmap.json"):
                    os.symlink(os.path.join(model, name), os.path.join(path, name))
            tokens = specials + rng.sample(pool, k - len(specials))
            with open(os.path.join(path, "vmap.txt"), "w", encoding="utf-8") as f:
                f.write("\t" + " ".join(tokens) + "\n")
        translators[k] = ctranslate2.Translator(path, device="cpu", compute_type="int8",
                                                intra_threads=args.threads)

    def once(k):
        start = time.perf_counter()
        translators[k].translate_batch(
            [source], target_prefix=[["vie_Latn"]], beam_size=args.beam,
            max_decoding_length=args.length, min_decoding_length=args.length,
            use_vmap=k > 0)
        return time.perf_counter() - start

    for k in sizes:  # warm-up
        once(k)
    times = {k: [] for k in sizes}
    for _ in range(args.runs):
        for k in sizes:
            times[k].append(once(k))
    base = statistics.median(times[0])
    print(f"{'map size':>10} {'median s':>9} {'ratio':>6}   (ctranslate2 {ctranslate2.__version__}, "
          f"beam {args.beam}, {args.length} tokens, {args.threads} threads, {args.runs} runs)")
    for k in sizes:
        m = statistics.median(times[k])
        print(f"{('none' if k == 0 else k):>10} {m:9.3f} {m / base:6.2f}")


if __name__ == "__main__":
    main()
