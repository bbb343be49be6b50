"""``seq2seq-explore CHECKPOINT [CHECKPOINT ...]``: serve the explorer on 127.0.0.1 (``--host``).

Each checkpoint is loaded once, before the server starts. Everything the app writes (Gradio's
uploads cache, the matrices offered for download) goes into one temporary directory, removed
on exit; Ctrl-C stops the server and exits with status 130 (``kill``: 143).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

import torch

from seq2seq.checkpoint import CheckpointError
from seq2seq.cli import fail, utf8_stdout
from seq2seq.explorer.predict import LoadedModel
from seq2seq.inference import InferenceError, load_translator

HOST = "127.0.0.1"  # loopback by default: the page runs models on this machine for its user
DEFAULT_PORT = 7860


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A local web page that translates a typed sentence with every checkpoint "
        "side by side and shows where each output word looked: alignment heatmaps, encoder "
        "self-attention, and a step-by-step view of the decoding (Ctrl-C stops it)."
    )
    parser.add_argument(
        "checkpoints", type=Path, nargs="+", help="checkpoints (best.pt) to compare"
    )
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}"
    )
    parser.add_argument(
        "--device", choices=("cpu", "auto", "cuda"), default="cpu", help="default: cpu"
    )
    parser.add_argument(
        "--host",
        default=HOST,
        help=f"address to serve on (default: {HOST}, this machine only; 0.0.0.0: every "
        "network this machine is on)",
    )
    args = parser.parse_args(argv)
    utf8_stdout()
    if not loopback(args.host):
        print(
            f"seq2seq-explore: serving on {args.host}, not only this machine: whoever reaches "
            f"it on port {args.port} can run the models here",
            file=sys.stderr,
        )
    missing = [name for name in ("gradio", "plotly") if importlib.util.find_spec(name) is None]
    if missing:
        return fail(
            parser.prog,
            OSError(f"the explorer needs {' and '.join(missing)}: pip install -e '.[explore]'"),
        )
    # One sentence at a time is a row of small matrix products: more threads only contend (on a
    # busy 2-core machine one thread answered a sentence in 35 ms, two in 120-400 ms).
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, terminate)
    try:
        serve(args.checkpoints, args.device, args.port, args.host)
    except (CheckpointError, InferenceError, OSError) as error:
        return fail(parser.prog, error)
    except KeyboardInterrupt:  # Ctrl-C, while loading or while serving
        print("seq2seq-explore: stopped", file=sys.stderr)
        return 130
    except Terminated:
        print("seq2seq-explore: stopped (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM


class Terminated(Exception):
    """``kill``: unwinds like Ctrl-C, so the temporary directory is removed on the way out."""


def terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated


def serve(checkpoints: Sequence[Path], device: str, port: int, host: str = HOST) -> NoReturn:
    """Load the checkpoints, then serve the page until Ctrl-C (KeyboardInterrupt)."""
    models = load_models(checkpoints, device)
    with explorer_environment() as temp_dir:
        from seq2seq.explorer.app import build, font_paths, page_css, theme

        page = build(models, temp_dir)
        try:
            page.launch(
                server_name=host,
                server_port=port,
                prevent_thread_lock=True,
                quiet=True,
                share=False,
                ssr_mode=False,
                allowed_paths=font_paths(),
                css=page_css(),
                theme=theme(),
            )
        except OSError as error:
            raise OSError(
                f"{host}:{port} is taken (or not ours to use): try another --port"
            ) from error
        print(f"seq2seq-explore: open http://{host}:{port} (Ctrl-C stops)", flush=True)
        try:
            # Not Gradio's block_thread, which swallows Ctrl-C: the exit status is to say 130.
            while True:
                time.sleep(1.0)
        finally:
            page.close()


def load_models(paths: Sequence[Path], device: str) -> list[LoadedModel]:
    """Each checkpoint once, named by its file name (or its path, where file names repeat)."""
    names = [path.name for path in paths]
    if len(set(names)) < len(names):
        names = [str(path) for path in paths]
    # fp32: the page shows probabilities and weights to read, and one sentence is quick anyway.
    return [
        LoadedModel(name, load_translator(path, device, "fp32"))
        for name, path in zip(names, paths, strict=True)
    ]


@contextmanager
def explorer_environment() -> Iterator[Path]:
    """A temporary directory for everything Gradio writes, and Gradio kept offline.

    Gradio reads ``GRADIO_TEMP_DIR`` when imported and would otherwise ask its servers for
    the newest version and send usage analytics; nothing here needs the internet.
    """
    with tempfile.TemporaryDirectory(prefix="seq2seq-explore-") as name:
        temp_dir = Path(name)
        environment = {**OFFLINE_ENVIRONMENT, "GRADIO_TEMP_DIR": str(temp_dir / "gradio")}
        saved = {key: os.environ.get(key) for key in environment}
        os.environ.update(environment)
        try:
            yield temp_dir
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


OFFLINE_ENVIRONMENT = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}


def loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine's loopback only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def port_number(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value}")
    return value
