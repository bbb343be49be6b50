"""Start-up of training on a large corpus: each stage's time and the peak memory.

    python scripts/benchmark_corpus.py --pairs 1000000 --out /tmp/corpus-1m [overrides ...]

Writes a corpus of ``--pairs`` pairs into ``--out`` (once; kept for the next run), each pair
two to four random Tatoeba training pairs joined (so the sentences are real and nearly all
distinct), as two gzipped line-aligned files, with Tatoeba's dev and test. Then it runs what
``train.py`` runs before its first update (on first use: read the corpus, sentencepiece,
tokenize, write the token store; later: open the store; then the sampler and the first batch,
its pieces drawn where ``data.subword_sampling_alpha`` is set) and prints one JSON line: the
seconds of each stage, the pairs, and the peak RSS. Run it twice to see the second start (the
store in ``--out/cache/tokens``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import resource
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from seq2seq.config.schema import PROJECT_ROOT, register_configs
from seq2seq.data.dataset import load_training_data
from seq2seq.provenance import provenance
from seq2seq.training.trainer import subword_sampler, training_sampler

TATOEBA = PROJECT_ROOT.parent / "shared" / "data" / "tatoeba-cmn-eng"


def write_corpus(out: Path, pairs: int, seed: int = 0) -> list[Path]:
    """``out/train.zh.gz`` and ``out/train.en.gz`` of joined Tatoeba pairs (once)."""
    paths = [out / "train.zh.gz", out / "train.en.gz"]
    if all(path.is_file() for path in paths):
        return paths
    out.mkdir(parents=True, exist_ok=True)
    lines = (TATOEBA / "train.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines]
    rng = random.Random(seed)
    partial = [path.with_suffix(".part") for path in paths]
    with (
        gzip.open(partial[0], "wt", encoding="utf-8") as zh,
        gzip.open(partial[1], "wt", encoding="utf-8") as en,
    ):
        for _ in range(pairs):
            chosen = [rows[rng.randrange(len(rows))] for _ in range(rng.randint(2, 4))]
            zh.write("".join(row[0] for row in chosen) + "\n")
            en.write(" ".join(row[1] for row in chosen) + "\n")
    for part, path in zip(partial, paths, strict=True):
        part.rename(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="training pairs")
    parser.add_argument("--out", type=Path, required=True, help="where the corpus is written")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after the defaults)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    start = time.perf_counter()
    train = write_corpus(args.out, args.pairs)
    written = time.perf_counter() - start
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=tsv",
                f"data.train=[{train[0]},{train[1]}]",
                f"data.dev={TATOEBA / 'dev.tsv'}",
                f"data.test={TATOEBA / 'test.tsv'}",
                f"data.cache_dir={args.out / 'cache'}",
                "data.max_length=200",
                *args.overrides,
            ],
        )
    stores = args.out / "cache" / "tokens"
    existing = set(stores.glob("*"))
    start = time.perf_counter()
    data = load_training_data(cfg.data)
    prepared = time.perf_counter() - start
    split = data.splits["train"]
    store = split.examples.store
    built = store.manifest["seconds"] if set(stores.glob("*")) - existing else {}
    clock = time.perf_counter()
    sampler = training_sampler(cfg.trainer, split)
    indices = next(iter(sampler))
    sampling = subword_sampler(cfg, data)
    batch = sampling.batch(indices, 0) if sampling else split.batch(indices)
    first_batch = time.perf_counter() - clock
    report = {
        "pairs": len(split),
        "spm_sample": cfg.data.spm_sample,
        "subword_sampling_alpha": cfg.data.subword_sampling_alpha,
        "corpus_written_s": round(written, 1),
        "store": "built" if built else "opened",
        **{f"{name}_s": round(seconds, 1) for name, seconds in built.items()},
        "prepare_s": round(prepared, 1),
        "first_batch_s": round(first_batch, 2),
        "first_batch_pairs": len(batch.indices),
        "startup_s": round(prepared + first_batch, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        **provenance(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
