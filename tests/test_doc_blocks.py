"""Docs that paste (issue 15): every shell block in README.md and docs/ runs, or is marked as an
example and is still valid shell naming real commands (tests/docblocks.py says how; pages whose
blocks start the proxy run in tests/e2e/test_doc_pages.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docblocks import PAGES, Block, blocks, check_example, run_page

ALL = [block for page in PAGES for block in blocks(page)]
# Pages other engineers are editing, with blocks that do not run yet: the lead fixes them after
# the merge. Strict: a listed page must still fail (drop it from here when it runs).
ELSEWHERE: dict[str, str] = {}


def page_ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


def needs_proxy(page: Path) -> bool:
    return any(b.starts_proxy and not b.example for b in blocks(page))


def assert_page_runs(page: Path, root: Path) -> None:
    failures = run_page(page, root)
    name = str(page.relative_to(ROOT))
    if name in ELSEWHERE:
        if not failures:
            pytest.fail(f"{name} runs now: drop it from ELSEWHERE")
        pytest.xfail(f"{name}: {ELSEWHERE[name]}")
    assert not failures, "\n\n".join(f"{w}: {f}" for w, f in failures.items())


@pytest.mark.parametrize("block", [b for b in ALL if b.example], ids=lambda b: b.where)
def test_a_block_marked_as_an_example_is_valid_shell_naming_commands_that_exist(block: Block) -> None:
    assert check_example(block) is None


@pytest.mark.parametrize("page", [p for p in PAGES if not needs_proxy(p)], ids=page_ids([p for p in PAGES
                                                                                      if not needs_proxy(p)]))
def test_every_unmarked_block_of_the_page_runs_as_pasted(page: Path, tmp_path: Path) -> None:
    assert_page_runs(page, tmp_path)


def test_the_example_marker_is_recognised_only_right_above_a_fence(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- example: reader's values -->\n\n```sh\ncp a b\n```\n\n"
                    "<!-- example: reader's values -->\ntext\n```sh\ntrue\n```\n")
    assert [b.example for b in blocks(page)] == [True, False]
