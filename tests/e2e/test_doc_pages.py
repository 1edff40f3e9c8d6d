"""Docs that paste, for pages whose blocks start the proxy (`autodiscover-guard run`, mitmdump):
each such block runs in the background on a free port in place of 8080 and the blocks after it
(curl through the guard, `ca --path`, `report`) run against it (tests/docblocks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docblocks import PAGES
from tests.test_doc_blocks import assert_page_runs, needs_proxy, page_ids

pytestmark = pytest.mark.e2e
WITH_PROXY = [p for p in PAGES if needs_proxy(p)]


@pytest.mark.parametrize("page", WITH_PROXY, ids=page_ids(WITH_PROXY))
def test_every_unmarked_block_of_the_page_runs_as_pasted_with_its_proxy(page: Path, tmp_path: Path) -> None:
    assert_page_runs(page, tmp_path)
