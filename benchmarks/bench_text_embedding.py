"""Throughput of the item-text step (items embedded per second) on this machine.

    python benchmarks/bench_text_embedding.py                    # lastfm-2k and ml-100k, 256 items each
    python benchmarks/bench_text_embedding.py --datasets ml-100k --items 0 --batch-sizes 32 64 128

Times only the encoder (model load and text building are reported apart), with the step's own
deterministic batching (longest texts first), after one warm-up batch. Prints one line per
(dataset, batch size): items/s, batch size, torch threads, model, device, mean text length.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import recbole_recgoat  # noqa: E402,F401  (first: its thread policy applies before torch loads)
import torch  # noqa: E402

from recbole_recgoat.features.encoder import Encoder  # noqa: E402
from recbole_recgoat.features.pipeline import item_texts  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["lastfm-2k", "ml-100k"])
    parser.add_argument("--items", type=int, default=256, help="items per dataset (0 = all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-path", default=None, help="default: the packaged all-MiniLM-L6-v2")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    enc = Encoder(args.model_path, args.device, batch_size=args.batch_sizes[0])
    load_s = time.perf_counter() - start
    print(f"model {enc.description}, device {enc.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, max_seq_length {enc.max_seq_length}, load {load_s:.2f}s")
    for dataset in args.datasets:
        start = time.perf_counter()
        _, _, ids, texts = item_texts(dataset, limit=args.items or None)
        build_s = time.perf_counter() - start
        mean_chars = sum(len(t) for t in texts) / len(texts)
        tokens = enc.model.tokenizer(texts, truncation=True, max_length=enc.max_seq_length)["input_ids"]
        mean_tokens = sum(len(t) for t in tokens) / len(tokens)
        for bs in args.batch_sizes:
            enc.batch_size = bs
            enc.encode(texts[:bs])  # warm-up
            start = time.perf_counter()
            enc.encode(texts)
            secs = time.perf_counter() - start
            print(f"{dataset:<10} items {len(texts):>5}  batch {bs:>4}  threads {torch.get_num_threads()}  "
                  f"{len(texts) / secs:8.1f} items/s  ({secs:.2f}s; mean {mean_chars:.0f} chars / {mean_tokens:.0f} tokens; "
                  f"texts built in {build_s:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
