"""Download the Tatoeba cmn-eng pairs once; split them so no dev/test sentence is in train."""

from __future__ import annotations

import io
import logging
import random
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from seq2seq.files import atomic_write_bytes

log = logging.getLogger(__name__)

SPLIT_SIZES = {"dev": 1000, "test": 1500}
SPLIT_SEED = 20150901


def ensure_tatoeba(directory: Path, url: str) -> None:
    """Make sure ``directory`` holds train/dev/test.tsv, downloading and splitting if needed."""
    if all((directory / f"{split}.tsv").is_file() for split in ("train", "dev", "test")):
        return
    log.info("%s has no train/dev/test.tsv: downloading %s", directory, url)
    try:
        archive = download(url)
    except (urllib.error.URLError, OSError) as error:
        raise RuntimeError(
            f"Could not download the Tatoeba corpus from {url} ({error}).\n"
            f"Offline? Download the archive by hand (it holds cmn.txt: English<TAB>Chinese<TAB>"
            f"attribution), then either set data.url=file:///path/to/cmn-eng.zip, or put "
            f"train.tsv, dev.tsv and test.tsv (Chinese<TAB>English) in {directory} "
            f"(or point data.dir at a directory that has them)."
        ) from error
    pairs = read_archive(archive)
    for split, split_pairs in split_pairs_by_group(pairs, SPLIT_SIZES, SPLIT_SEED).items():
        text = "".join(f"{zh}\t{en}\n" for zh, en in split_pairs)
        atomic_write_bytes(directory / f"{split}.tsv", text.encode("utf-8"))
        log.info("wrote %d pairs to %s", len(split_pairs), directory / f"{split}.tsv")


def download(url: str) -> bytes:
    """Fetch ``url`` with a progress bar (manythings.org refuses clients without a user agent)."""
    request = urllib.request.Request(url, headers={"User-Agent": "seq2seq-trainer/0.1"})
    with urllib.request.urlopen(request, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        buffer = io.BytesIO()
        with tqdm(total=total, unit="B", unit_scale=True, desc="download") as bar:
            while chunk := response.read(1 << 16):
                buffer.write(chunk)
                bar.update(len(chunk))
    return buffer.getvalue()


def read_archive(archive: bytes) -> list[tuple[str, str]]:
    """(Chinese, English) pairs from the cmn-eng zip (its ``cmn.txt``: en, zh, attribution)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        name = next((n for n in zipped.namelist() if n.endswith("cmn.txt")), None)
        if name is None:
            raise RuntimeError(f"the archive holds no cmn.txt (found {zipped.namelist()})")
        lines = zipped.read(name).decode("utf-8").splitlines()
    pairs = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].strip() and fields[1].strip():
            pairs.append((fields[1].strip(), fields[0].strip()))
    return pairs


def split_pairs_by_group(
    pairs: list[tuple[str, str]], sizes: dict[str, int], seed: int
) -> dict[str, list[tuple[str, str]]]:
    """Assign whole groups of pairs to splits; two pairs sharing a sentence share a group.

    Groups are the connected components of the graph whose edges are pairs, so neither the
    Chinese nor the English side of a dev/test pair occurs in train. The split is a function of
    the pairs and the seed only.
    """
    parent = list(range(len(pairs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[tuple[int, str], int] = {}
    for index, (zh, en) in enumerate(pairs):
        for key in ((0, zh), (1, en)):
            other = first_seen.setdefault(key, index)
            parent[find(index)] = find(other)
    groups: dict[int, list[int]] = {}
    for index in range(len(pairs)):
        groups.setdefault(find(index), []).append(index)
    ordered = sorted(groups.values())
    random.Random(seed).shuffle(ordered)
    splits: dict[str, list[tuple[str, str]]] = {name: [] for name in (*sizes, "train")}
    for group in ordered:
        target = next((n for n, size in sizes.items() if len(splits[n]) < size), "train")
        splits[target].extend(pairs[i] for i in group)
    return splits
