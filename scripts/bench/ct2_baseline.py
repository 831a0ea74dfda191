#!/usr/bin/env python3
"""Baseline for `scripts/bench-mt`: Python CTranslate2 `translate_batch` on the same model,
inputs and decoding options as the Voxbridge MT worker, one request at a time.

Prints JSON with the same fields as `voxctl bench translate`: per-sentence latency percentiles,
a batch of 4 against one text, sequential throughput over a fixed time, and peak RSS.
"""
import argparse
import json
import math
import resource
import sys
import time

import ctranslate2
import sentencepiece as spm

SENTENCES = [
    "Hello world",
    "Where is the nearest train station?",
    "I would like to book a table for two people at seven o'clock tonight.",
    "The committee will carefully review the new proposal next week and will announce its final decision before the end of May",
    "Because the storm had knocked out power across the region, the hospital switched to its backup generators and postponed every operation that was not urgent.",
    "After several years of negotiations, the two countries finally signed an agreement that will allow their citizens to travel, study and work across the border without a visa, starting from the first day of next year.",
]


def summary(samples):
    s = sorted(samples)
    n = len(s)

    def rank(p):
        return s[min(max(math.ceil(p / 100 * n), 1), n) - 1]

    return {"n": n, "mean": sum(s) / n, "p50": rank(50), "p95": rank(95), "p99": rank(99)}


def vm_hwm_bytes():
    """Peak resident memory since the last reset (/proc/self/status VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--source", default="eng_Latn")
    ap.add_argument("--target", default="vie_Latn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam-size", type=int, default=4)
    ap.add_argument("--length", type=int, default=48, help="fixed output length (min = max)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--duration-s", type=float, default=60)
    ap.add_argument("--use-vmap", action="store_true", help="restrict outputs with MODEL/vmap.txt")
    args = ap.parse_args()

    sp = spm.SentencePieceProcessor(model_file=f"{args.model}/sentencepiece.bpe.model")
    translator = ctranslate2.Translator(
        args.model, device="cpu", compute_type="int8", intra_threads=args.threads, inter_threads=1
    )
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # From here on the peak is the peak while translating (Linux: "5" resets VmHWM).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

    def translate(texts):
        source = [[args.source] + sp.encode(t, out_type=str) + ["</s>"] for t in texts]
        started = time.perf_counter()
        translator.translate_batch(
            source,
            target_prefix=[[args.target]] * len(texts),
            beam_size=args.beam_size,
            min_decoding_length=args.length,
            max_decoding_length=args.length,
            use_vmap=args.use_vmap,
        )
        return time.perf_counter() - started

    translate([SENTENCES[0]])  # warm-up
    out = {"sentences": []}
    for s in SENTENCES:
        r = summary([translate([s]) for _ in range(args.runs)])
        print(f"{len(s):>3} chars: p50 {r['p50']:.3f} s  p95 {r['p95']:.3f} s", file=sys.stderr)
        out["sentences"].append([len(s), r])
    one, four = [], []
    for _ in range(args.runs):
        one.append(translate([SENTENCES[3]]))
        four.append(translate(SENTENCES[1:5]))
    out["one_text"], out["batch_of_4"] = summary(one), summary(four)
    out["batch4_over_one"] = out["batch_of_4"]["p50"] / out["one_text"]["p50"]
    done, started, i = 0, time.perf_counter(), 0
    while time.perf_counter() - started < args.duration_s:
        translate([SENTENCES[i % len(SENTENCES)]])
        done += 1
        i += 1
    elapsed = time.perf_counter() - started
    out.update(
        throughput_clients=1,
        throughput_seconds=elapsed,
        throughput_requests=done,
        throughput_per_s=done / elapsed,
        peak_rss_bytes=vm_hwm_bytes(),
        load_peak_rss_bytes=load_peak,
        ctranslate2_version=ctranslate2.__version__,
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
