"""bench/time_to_first_page.py: the browser suite's figures become the docs' section."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "time_to_first_page", Path(__file__).resolve().parents[1] / "bench" / "time_to_first_page.py")
assert _SPEC and _SPEC.loader
ttfp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ttfp)

DATA = {"profiles": {"hp": {"seconds": 2.5, "landing": "/hp/"},
                     "konica": {"seconds": 1.25, "landing": "/wcd/index.html"},
                     "ricoh": {"seconds": 4.0, "landing": "/web/"}}}


def test_render_sorts_by_time_and_states_the_median() -> None:
    section = ttfp.render(DATA)
    assert section.startswith("## Time to first page (browser)")
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["konica", "hp", "ricoh"]
    assert "| 1.25 |" in rows[0]
    assert "Median 2.50 s, slowest 4.00 s, fastest 1.25 s over 3 profiles" in section


def test_render_without_figures_says_what_to_run() -> None:
    with pytest.raises(ValueError, match="run the browser suite"):
        ttfp.render({"profiles": {}})


def test_upsert_replaces_only_its_section() -> None:
    doc = "# Performance\n\n## Relay\n\ntable\n"
    once = ttfp.upsert_section(doc, "## Time to first page (browser)\n\nold\n")
    assert once.startswith(doc.rstrip("\n"))
    twice = ttfp.upsert_section(once + "\n## Later\n\nkept\n",
                                "## Time to first page (browser)\n\nnew\n")
    assert "old" not in twice and "new" in twice
    assert twice.count(ttfp.START) == 1 and "## Relay\n\ntable" in twice
    assert "## Later\n\nkept" in twice
