"""The README and docs/ stay short, linked and current."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seq2seq.config.docs import CONFIGS, DOCS_PAGE, parse_yaml_comments, render
from seq2seq.config.schema import PROJECT_ROOT, register_configs

README = PROJECT_ROOT / "README.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the target up to a space, a closing bracket or a #fragment.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]*)(?:#[^)\s]*)?\)")


def test_readme_is_at_most_300_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move detail into docs/ (at most 300)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_relative_links_point_to_files_that_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(text) if t and not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(PROJECT_ROOT)} links to missing files: {missing}"


def test_the_readme_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    unlinked = [
        p.name for p in PAGES[1:] if f"docs/{p.name}" not in text and p.name != "speed-history.md"
    ]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_configuration_page_is_current() -> None:
    assert DOCS_PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run python scripts/config_docs.py and commit it"
    )


def test_configuration_page_lists_every_setting_with_a_comment() -> None:
    page = render()
    for key in ["data.src_vocab_size", "model.attention.name", "trainer.ema_decay", "viz.font"]:
        assert f"| `{key}` |" in page
    settings = page.split("## Every YAML file")[0]
    rows = [line for line in settings.splitlines() if line.startswith("| `")]
    uncommented = [row.split("|")[1].strip() for row in rows if row.rstrip().endswith("|  |")]
    assert not uncommented, f"settings without a comment in any YAML file: {uncommented}"


@pytest.mark.parametrize(
    "path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.relative_to(CONFIGS).as_posix()
)
def test_every_yaml_setting_has_a_comment(path: Path) -> None:
    _, entries = parse_yaml_comments(path)
    bare = [e.path for e in entries if e.value and not e.comment and not e.path.startswith("hydra")]
    assert not bare, f"configs/{path.relative_to(CONFIGS)}: keys without a comment: {bare}"


def test_comments_are_read_inline_continued_and_from_above(tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(
        "# @package _global_\n"
        "# What this file is.\n"
        "defaults:\n"
        "  - override /data: tatoeba  # the corpus\n"
        "trainer:\n"
        "  lr: 0.002    # the peak rate,\n"
        "               # annealed\n"
        "  # chosen on dev\n"
        '  name: "a # b"\n'
        "  items:\n"
        "    - one      # first\n",
        encoding="utf-8",
    )
    header, entries = parse_yaml_comments(path)
    assert header == "What this file is."
    found = {e.path: (e.value, e.comment) for e in entries}
    assert found["defaults.override /data"] == ("tatoeba", "the corpus")
    assert found["trainer.lr"] == ("0.002", "the peak rate, annealed")
    assert found["trainer.name"] == ('"a # b"', "chosen on dev")
    assert found["trainer.items[]"] == ("one", "first")


def test_the_readme_names_only_scripts_targets_and_configs_that_exist() -> None:
    prose = re.sub(r"<!--.*?-->", "", README.read_text(encoding="utf-8"), flags=re.S)
    # The commands: fenced blocks and inline code, not the prose around them.
    text = "\n".join(re.findall(r"```.*?```|`[^`\n]+`", prose, flags=re.S))
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z]+):", makefile, flags=re.M))
    missing = [f"make {t}" for t in re.findall(r"\bmake ([a-z]+)\b", text) if t not in targets]
    missing += [
        f"scripts/{s}.py"
        for s in re.findall(r"scripts/(\w+)\.py", text)
        if not (PROJECT_ROOT / "scripts" / f"{s}.py").is_file()
    ]
    for group, names in re.findall(
        r"(?<![\w.])\+?((?:experiment|model|data)(?:/\w+)?)=([\w,]+)", text
    ):
        for name in filter(None, names.split(",")):
            if not (CONFIGS / group / f"{name}.yaml").is_file():
                missing.append(f"{group}={name}")
    assert not missing, f"README.md names what does not exist: {missing}"


# Pages that record what was run then (old settings included), not commands to run now.
HISTORY = {"speed-history.md"}


def train_commands(page: Path) -> list[list[str]]:
    """The overrides of every ``python train.py`` line in ``page``'s code blocks, comments,
    shell syntax and placeholders (``...``, ``<dir>``, ``$s``) dropped; a sweep (``-m``,
    ``key=a,b``) as one command per swept value."""
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():
        if not line.strip().startswith("python train.py"):
            continue
        words = shlex.split(line.split(" #")[0].replace("&", " ").replace(";", " "))
        overrides = [
            word
            for word in words[2:]
            if word != "-m"
            and "=" in word
            and not any(mark in word for mark in ("...", "<", "$"))
            and not word.startswith(("hydra.run", "hydra.sweep"))
        ]
        swept = [k for k, word in enumerate(overrides) if "-m" in words and "," in word]
        fixed = [word.split(",")[0] if k in swept else word for k, word in enumerate(overrides)]
        commands.append(fixed)
        for k in swept:
            key, values = overrides[k].split("=", 1)
            commands += [
                [*fixed[:k], f"{key}={value}", *fixed[k + 1 :]] for value in values.split(",")[1:]
            ]
    return commands


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in HISTORY], ids=lambda p: p.name)
def test_every_train_command_in_the_docs_composes(page: Path) -> None:
    """``python train.py ...`` as the page writes it: every override names a setting and an
    option that exist now (the run itself is not started)."""
    register_configs()
    failed = []
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        for overrides in train_commands(page):
            try:
                compose("config", overrides=overrides)
            except Exception as error:  # noqa: BLE001 - every failure is reported below
                failed.append(f"{' '.join(overrides)}: {str(error).splitlines()[0]}")
    assert not failed, f"{page.name}: " + "\n".join(failed)


def test_train_commands_are_read_as_typed_with_a_sweep_one_command_per_value(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\npython train.py -m model/attention=dot,general data.dir=... \\\n"
        "  trainer.lr=0.1   # two runs\necho done\n```\n`python train.py model.rnn=lstm` inline\n",
        encoding="utf-8",
    )
    assert train_commands(page) == [
        ["model/attention=dot", "trainer.lr=0.1"],
        ["model/attention=general", "trainer.lr=0.1"],
    ]
