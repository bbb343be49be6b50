"""docs/configuration.md from the schema and the YAML files: every key, its default, its comment.

The dataclasses in :mod:`seq2seq.config` give each setting's type and default; the YAML files
under ``configs/`` give the comment that says what it does (the comment after the key, its
continuation lines, or the comment block just above it). ``scripts/config_docs.py`` writes the
page and ``tests/test_docs.py`` fails when the committed page is not what this module renders,
so a config changed without regenerating is caught.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from seq2seq.config.schema import PROJECT_ROOT, Config

CONFIGS = PROJECT_ROOT / "configs"
DOCS_PAGE = PROJECT_ROOT / "docs" / "configuration.md"

# The YAML file whose comments describe each schema group: the group's default option.
GROUP_DEFAULTS = {
    "data": "data/synthetic.yaml",
    "model": "model/rnn_attention.yaml",
    "model.attention": "model/attention/bahdanau.yaml",
    "model.encoder": "model/encoder/rnn.yaml",
    "model.decoder": "model/decoder/rnn.yaml",
    "trainer": "trainer/default.yaml",
    "search": "search/default.yaml",
    "viz": "viz/default.yaml",
}

# "key: value" or "- key: value" (a defaults entry); the key ends at the first ": ".
_KEY = re.compile(
    r"^(?P<indent>\s*)(?P<dash>-\s+)?(?P<key>[^\s:#'\"-][^:#]*?)\s*:(?=\s|$)(?P<value>.*)$"
)
_ITEM = re.compile(r"^(?P<indent>\s*)-\s+(?P<value>.+)$")


@dataclass
class YamlEntry:
    """One key (or list item) of a YAML file, with its dotted path, raw value and comment."""

    path: str
    value: str
    comment: str
    line: int


def split_comment(line: str) -> tuple[str, str | None, int]:
    """``line`` → (code, comment or None, column of ``#``); a ``#`` inside quotes is code."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip(), i
    return line.rstrip(), None, -1


def parse_yaml_comments(path: Path) -> tuple[str, list[YamlEntry]]:
    """The file's leading comment block (one line per comment line) and its entries in order.

    A comment-only line continues the previous entry's comment when its ``#`` is in the same
    column as that entry's inline comment; otherwise it belongs to the next entry.
    """
    header: list[str] = []
    pending: list[str] = []
    entries: list[YamlEntry] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    last_column = -1
    seen_code = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        code, comment, column = split_comment(raw)
        if not code.strip():
            if comment is None:
                last_column = -1
                continue
            if entries and column == last_column:
                entries[-1].comment = f"{entries[-1].comment} {comment}".strip()
            elif not seen_code and comment.startswith("@package"):
                continue  # Hydra's directive, not prose
            else:
                pending.append(comment)
            continue
        if not seen_code:  # the comment block that opens the file describes the file
            seen_code = True
            header, pending = header + pending, []
        match = _KEY.match(code)
        item = _ITEM.match(code) if match is None else None
        if match is None and item is None:
            pending, last_column = [], -1
            continue
        indent = len((match or item).group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = ".".join(key for _, key in stack)
        if match:
            key, value = match.group("key"), match.group("value").strip()
            full = f"{parent}.{key}" if parent else key
            if not value:
                stack.append((indent, key))
        else:
            full, value = f"{parent}[]" if parent else "[]", item.group("value").strip()
        text = " ".join([*pending, comment or ""]).strip()
        entries.append(YamlEntry(full, value, text, number))
        pending = []
        last_column = column if comment is not None else -1
    if not seen_code:
        header += pending
    return "\n".join(header).strip(), entries


def schema_rows(cls: type, prefix: str) -> list[tuple[str, str, str]]:
    """(dotted key, type, default) of every field of a dataclass, nested ones flattened."""
    hints = typing.get_type_hints(cls)
    rows: list[tuple[str, str, str]] = []
    for item in dataclasses.fields(cls):
        key = f"{prefix}.{item.name}" if prefix else item.name
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            rows += schema_rows(kind, key)
            continue
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = MISSING
        shown = "(set by the option)" if default == MISSING else _format(default)
        rows.append((key, _type_name(kind), shown))
    return rows


def _type_name(kind: object) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _format(value: object) -> str:
    if isinstance(value, str) and str(PROJECT_ROOT) in value:
        value = value.replace(str(PROJECT_ROOT), "<checkout>")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) and value == "" else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def render() -> str:
    """The whole docs/configuration.md."""
    lines = [
        "# Configuration",
        "",
        "Generated by `python scripts/config_docs.py` from `seq2seq/config/schema.py` and",
        "`configs/**/*.yaml`; do not edit by hand (`tests/test_docs.py` fails when this page is",
        "not what the script writes). Override any key on the command line,",
        "e.g. `python train.py trainer.lr=0.002 model/attention=dot`.",
        "",
        "## Every setting, its default and what it does",
        "",
        "Defaults are the schema's (`seq2seq/config/schema.py`); the comment is the one in the",
        "group's default file, named in each section, or in another option of the group where the",
        "default file does not set the key. Options and experiments below may set other values.",
    ]
    comments_by_group: dict[str, dict[str, str]] = {}
    for group, relative in GROUP_DEFAULTS.items():
        default = CONFIGS / relative
        comments: dict[str, str] = {}
        for path in [default, *sorted(default.parent.glob("*.yaml"))]:
            for entry in parse_yaml_comments(path)[1]:
                if entry.comment and entry.path not in comments:
                    comments[entry.path] = entry.comment
        comments_by_group[group] = comments
    sections: dict[str, list[tuple[str, str, str]]] = {}
    for key, kind, default in schema_rows(Config, ""):
        group = max((g for g in GROUP_DEFAULTS if key.startswith(g + ".")), key=len)
        sections.setdefault(group, []).append((key, kind, default))
    for group in GROUP_DEFAULTS:
        lines += [
            "",
            f"### `{group}` (comments from `configs/{GROUP_DEFAULTS[group]}`, else its neighbours)",
            "",
            "| key | type | default | what it does |",
            "|---|---|---|---|",
        ]
        for key, kind, default in sections.get(group, []):
            local = key[len(group) + 1 :]
            comment = comments_by_group[group].get(local, "")
            cells = [f"`{key}`", _cell(kind), _cell(_code(default)), _cell(comment)]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Every YAML file",
        "",
        "Each file under `configs/` with its keys as written there (paths inside the file).",
    ]
    for path in sorted(CONFIGS.rglob("*.yaml")):
        header, entries = parse_yaml_comments(path)
        lines += ["", f"### `configs/{path.relative_to(CONFIGS).as_posix()}`", ""]
        if header:
            lines += ["```text", header, "```", ""]
        lines += ["| key | value | comment |", "|---|---|---|"]
        for entry in entries:
            lines.append(
                f"| `{entry.path}` | {_cell(_code(entry.value))} | {_cell(entry.comment)} |"
            )
    return "\n".join(lines) + "\n"
