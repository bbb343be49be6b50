"""Download the Tatoeba cmn-eng pairs once; split them so no dev/test sentence is in train."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import shutil
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

from tqdm import tqdm

from seq2seq.data.corpus import SPLITS, CorpusError
from seq2seq.files import atomic_write_bytes

log = logging.getLogger(__name__)

SPLIT_SIZES = {"dev": 1000, "test": 1500}
SPLIT_SEED = 20150901


def ensure_tatoeba(directory: Path, url: str, sha256: str = "") -> None:
    """Make sure ``directory`` holds train/dev/test.tsv, downloading and splitting if needed.

    Downloads only into a missing or empty directory, and moves the three files in at once: a
    user's own files are never written over, and an interrupted download leaves nothing half
    done. An archive whose sha256 differs from ``sha256`` (unless empty) is refused.
    """
    files = [f"{split}.tsv" for split in SPLITS]
    present = [name for name in files if (directory / name).exists()]
    if len(present) == len(files):
        return
    if directory.is_dir() and any(directory.iterdir()):
        missing = ", ".join(name for name in files if name not in present)
        raise CorpusError(
            f"data.dir={directory} lacks {missing} and is not empty, so the Tatoeba download "
            f"will not write there: add the missing file(s), or point data.dir at a missing or "
            f"empty directory to download into"
        )
    log.info("%s has no train/dev/test.tsv: downloading %s", directory, url)
    try:
        archive = download(url)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise CorpusError(
            f"could not download the Tatoeba corpus from data.url={url} ({error}); offline? "
            f"set data.url=file:///path/to/cmn-eng.zip (and data.sha256= for another archive), "
            f"or put train.tsv, dev.tsv and test.tsv (Chinese<TAB>English) in {directory}"
        ) from error
    check_sha256(archive, url, sha256)
    pairs = read_archive(archive, url)
    staging = directory.with_name(f".{directory.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        for split, split_pairs in split_pairs_by_group(pairs, SPLIT_SIZES, SPLIT_SEED).items():
            text = "".join(f"{zh}\t{en}\n" for zh, en in split_pairs)
            atomic_write_bytes(staging / f"{split}.tsv", text.encode("utf-8"))
            log.info("%s: %d pairs", directory / f"{split}.tsv", len(split_pairs))
        # Replaces only a missing or empty directory: a file that appeared meanwhile survives.
        os.rename(staging, directory)
    except OSError as error:
        raise CorpusError(f"could not write the Tatoeba splits to {directory} ({error})") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_sha256(archive: bytes, url: str, expected: str) -> None:
    """A changed or corrupt archive would silently change the splits: ``expected`` (data.sha256)
    pins it; empty, for an archive of the user's own, checks nothing."""
    actual = hashlib.sha256(archive).hexdigest()
    if expected and actual != expected.lower():
        raise CorpusError(
            f"the archive at data.url={url} has sha256 {actual}, not data.sha256={expected}: "
            f"download it again, or set data.sha256= (empty) to accept another archive"
        )


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


def read_archive(archive: bytes, url: str) -> list[tuple[str, str]]:
    """(Chinese, English) pairs from the cmn-eng zip (its ``cmn.txt``: en, zh, attribution)."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            name = next((n for n in zipped.namelist() if n.endswith("cmn.txt")), None)
            if name is None:
                raise CorpusError(f"{url}: the archive holds no cmn.txt ({zipped.namelist()})")
            lines = zipped.read(name).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise CorpusError(f"{url}: not a readable cmn-eng zip archive ({error})") from error
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
