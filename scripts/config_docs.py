"""Write docs/configuration.md: every config key, its default and its YAML comment.

python scripts/config_docs.py           # after changing seq2seq/config/schema.py or configs/
python scripts/config_docs.py --check   # exit 1 if the committed page is stale
"""

from __future__ import annotations

import argparse
import sys

from seq2seq.config.docs import DOCS_PAGE, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the page is current")
    args = parser.parse_args(argv)
    page = render()
    current = DOCS_PAGE.read_text(encoding="utf-8") if DOCS_PAGE.is_file() else ""
    if args.check:
        if current != page:
            print(f"{DOCS_PAGE} is stale: run python scripts/config_docs.py", file=sys.stderr)
            return 1
        return 0
    DOCS_PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {DOCS_PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
