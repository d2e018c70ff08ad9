"""General ability (lm-evaluation-harness in-process) at several harness batch sizes, on the same model and items.

    python benchmarks/bench_general.py [--batch-sizes 64,16,8] [--method none|self_debias|cafie] [--threads 2]
                                       [--max-items N] [--model-dir DIR]

The harness pads every batch to its longest request and returns logits for every position, (B, T, V) in fp32, then
takes their log-softmax: on a CPU the first batches (the longest MMLU prompts, sorted first) hold the largest
tensors. Prints one table: batch size, seconds, peak resident memory of the process while that batch size ran (GiB,
sampled every 0.1 s), and the largest differences from the first batch size's results: accuracy (points, any task,
acc or acc_norm) and perplexity (relative, word or byte): padding is on the right and attention causal, so only
floating-point rounding may differ. Offline items (conf/data/offline.yaml's general node: wiki, PIQA, MMLU,
OpenBookQA, 300 each unless --max-items); the offline model in fp32.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import torch
from bench_model import bench_model  # benchmarks/bench_model.py (the script's folder is on sys.path)
from omegaconf import OmegaConf

from bias_unlearn.data.sources import load_general_data
from bias_unlearn.decoding.cafie import CAFIE
from bias_unlearn.decoding.self_debias import SelfDebias
from bias_unlearn.eval.general import evaluate_general
from bias_unlearn.eval.scorer import SentenceScorer

CONF = Path(__file__).resolve().parent.parent / "conf"
ACCURACIES, PERPLEXITIES = ("acc", "acc_norm"), ("perplexity", "byte_perplexity")
PAGE = os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """The process's peak resident set size while the block runs, sampled from /proc every 0.1 s."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            self.peak = max(self.peak, pages * PAGE)
            time.sleep(0.1)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="64,16,8")
    parser.add_argument("--method", default="none", choices=("none", "self_debias", "cafie"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-items", type=int, default=None, help="items a task (default: the config's)")
    parser.add_argument("--model-dir", default=None, help="a local model directory (default: the offline model)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = bench_model(args.model_dir)
    types = ("gender", "profession", "race", "religion")
    methods = {"self_debias": SelfDebias, "cafie": CAFIE}
    scored = model if args.method == "none" else methods[args.method](model, tokenizer, types)
    general = OmegaConf.load(CONF / "data" / "offline.yaml").general
    general.max_items = args.max_items or general.max_items
    data = load_general_data(general)
    print(f"model: {type(model).__name__}, fp32, method {args.method}; threads {torch.get_num_threads()}")
    header = "| harness batch | items a task | seconds | peak RSS GiB | max acc diff (points) | max perplexity diff |"
    print(header + "\n|---|---|---|---|---|---|", flush=True)
    first = None
    for size in [int(b) for b in args.batch_sizes.split(",")]:
        with PeakMemory() as memory:
            start = time.perf_counter()
            result = evaluate_general(SentenceScorer(scored, tokenizer), data, batch_size=size)
            seconds = time.perf_counter() - start
        values = {(t, m): r[m] for t, r in result.items() for m in ACCURACIES + PERPLEXITIES if r.get(m) is not None}
        first = first or values
        acc = max((abs(values[k] - first[k]) for k in first if k[1] in ACCURACIES), default=0.0)
        ppl = max((abs(values[k] / first[k] - 1) for k in first if k[1] in PERPLEXITIES), default=0.0)
        print(
            f"| {size} | {data.limit} | {seconds:.0f} | {memory.peak / 2**30:.1f} | {acc:.2f} | {ppl:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
