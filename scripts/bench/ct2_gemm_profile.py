#!/usr/bin/env python3
"""Where one translation's time goes, GEMM by GEMM (docs/BENCHMARKS.md, "Where the time goes").

Runs one `translate_batch` with Python CTranslate2 under oneDNN's verbose mode (the wheel's
oneDNN is built with it; the one Voxbridge links is not) and sums oneDNN's own timings per data
type and problem shape. CTranslate2 uses oneDNN for int8 GEMMs on AMD CPUs (MKL on Intel: there
this prints nothing but the wall time).

    .tools/bench-venv/bin/python scripts/bench/ct2_gemm_profile.py --model .tools/nllb-600m-int8
"""
import argparse
import os
import subprocess
import sys
from collections import defaultdict

SENTENCE = "The quick brown fox jumps over the lazy dog while the city sleeps under a quiet sky tonight."


def translate(args):
    import time

    import ctranslate2
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "sentencepiece.bpe.model"))
    translator = ctranslate2.Translator(
        args.model, device="cpu", compute_type="int8", intra_threads=args.threads
    )
    source = [args.source] + sp.encode(args.text, out_type=str) + ["</s>"]
    started = time.perf_counter()
    translator.translate_batch(
        [source],
        target_prefix=[[args.target]],
        beam_size=args.beam_size,
        min_decoding_length=args.length,
        max_decoding_length=args.length,
    )
    print(f"wall\t{time.perf_counter() - started:.3f}\tsource_tokens\t{len(source)}", file=sys.stderr)


def profile(args):
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    child = subprocess.run(
        [sys.executable, __file__, "--child", *sys.argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    by_shape = defaultdict(lambda: [0, 0.0])
    info = []
    for line in child.stdout.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[1] == "info" and ("isa" in line or "oneDNN v" in line):
            info.append(line)
        if len(fields) < 10 or fields[1] != "exec":
            continue
        dtype = fields[6].split("::")[0]
        key = (dtype, fields[-2])
        by_shape[key][0] += 1
        by_shape[key][1] += float(fields[-1])
    total = sum(ms for _, ms in by_shape.values())
    print("\n".join(info))
    print(child.stderr.strip().splitlines()[-1])
    print(f"{'ms':>9} {'share':>6} {'calls':>7}  type   problem (MxK:KxN)")
    for (dtype, shape), (calls, ms) in sorted(by_shape.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"{ms:9.1f} {100 * ms / total:5.1f}% {calls:7d}  {dtype:6} {shape}")
    print(f"{total:9.1f} 100.0% {sum(c for c, _ in by_shape.values()):7d}  all GEMMs")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--length", type=int, default=24, help="output tokens (min = max)")
    parser.add_argument("--source", default="eng_Latn")
    parser.add_argument("--target", default="vie_Latn")
    parser.add_argument("--text", default=SENTENCE)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        translate(args)
    else:
        profile(args)


if __name__ == "__main__":
    main()
