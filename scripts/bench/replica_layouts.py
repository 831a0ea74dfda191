#!/usr/bin/env python3
"""Throughput of CTranslate2 thread layouts on the same cores (docs/BENCHMARKS.md "Replicas that
share the weights"): N replicas x M intra-op threads, each replica kept busy with batches of B
copies of one sentence (beam 4, fixed output length), in a fresh process per layout, layouts
alternated over --rounds. Python CTranslate2's `inter_threads` replicas share one copy of the
weights (ModelLoader's num_replicas_per_device); the MT worker's `--replicas` cannot (ct2rs
lists one device index per replica, and CTranslate2 copies the model for each index).

    .tools/bench-venv/bin/python scripts/bench/replica_layouts.py --model .tools/nllb-600m-int8 \
        --layouts 1x2x6,2x1x3,2x1x6,1x2x12 --duration-s 40 --rounds 2
"""
import argparse
import json
import subprocess
import sys
import threading
import time

SENTENCE = (
    "The committee will carefully review the new proposal next week and will announce its "
    "final decision before the end of May"
)


def vm_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def one(args):
    import ctranslate2
    import sentencepiece as spm

    inter, intra, batch = (int(x) for x in args.one.split("x"))
    sp = spm.SentencePieceProcessor(model_file=f"{args.model}/sentencepiece.bpe.model")
    source = ["eng_Latn"] + sp.encode(SENTENCE, out_type=str) + ["</s>"]
    translator = ctranslate2.Translator(
        args.model, device="cpu", compute_type="int8", inter_threads=inter, intra_threads=intra
    )
    loaded_kb = vm_kb("VmHWM")
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + args.duration_s

    def client():
        while time.monotonic() < stop:
            translator.translate_batch(
                [source] * batch,
                target_prefix=[["vie_Latn"]] * batch,
                beam_size=4,
                max_decoding_length=args.length,
                min_decoding_length=args.length,
            )
            with lock:
                done[0] += batch

    start = time.monotonic()
    clients = [threading.Thread(target=client) for _ in range(inter)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    elapsed = time.monotonic() - start
    print(json.dumps({
        "layout": args.one,
        "sentences_per_s": done[0] / elapsed,
        "sentences": done[0],
        "loaded_gb": loaded_kb / 1e6,
        "peak_gb": vm_kb("VmHWM") / 1e6,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--layouts", default="1x2x6,2x1x3,2x1x6,1x2x12",
                    help="REPLICASxTHREADSxBATCH, comma-separated")
    ap.add_argument("--duration-s", type=float, default=40)
    ap.add_argument("--length", type=int, default=48, help="fixed output length (min = max)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    rows = []
    for _ in range(args.rounds):
        for layout in args.layouts.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--model", args.model, "--one", layout,
                 "--duration-s", str(args.duration_s), "--length", str(args.length)],
                check=True, capture_output=True, text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['layout']:>8}: {row['sentences_per_s']:.3f} sentences/s "
                  f"({row['sentences']}), loaded {row['loaded_gb']:.2f} GB, "
                  f"peak {row['peak_gb']:.2f} GB", flush=True)


if __name__ == "__main__":
    main()
