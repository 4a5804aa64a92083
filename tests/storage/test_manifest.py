"""Manifest versions: atomic commit, listing, loading, bad files."""
from __future__ import annotations

import pytest

import vecdb
from vecdb.storage import manifest as mf
from vecdb.storage.manifest import Manifest, SegmentEntry


def _m(version=1, **kw):
    return Manifest(version=version, name="c", dim=3, metric="l2", id_type="int64",
                    schema={"a": "int64"}, index={"type": "flat"}, **kw)


def test_round_trip_and_versions(tmp_path):
    m1 = _m(segments=(SegmentEntry(1, "seg-00000001.arrow", 10, "seg-00000001.del-00000001", 2),),
            checkpoint=7, next_segment=2)
    mf.commit(tmp_path, m1)
    m2 = m1.next(checkpoint=9)
    mf.commit(tmp_path, m2)
    assert mf.list_versions(tmp_path) == [1, 2]
    assert mf.load(tmp_path) == m2
    assert mf.load(tmp_path, 1) == m1
    assert m1.files() == {"seg-00000001.arrow", "seg-00000001.del-00000001"}
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(vecdb.VersionNotFound):
        mf.load(tmp_path, 5)
    with pytest.raises(vecdb.Corruption):
        mf.commit(tmp_path, m2)     # a version is written once


@pytest.mark.parametrize("text", ["", "{", '{"format": "other"}', '{"format": "vecdb-manifest", "format_version": 99}',
                                  '{"format": "vecdb-manifest", "format_version": 1, "version": 1}'])
def test_unreadable_manifest_is_corruption(tmp_path, text):
    (tmp_path / "v00000001.json").write_text(text)
    with pytest.raises(vecdb.Corruption):
        mf.load(tmp_path)


def test_empty_directory_is_corruption(tmp_path):
    with pytest.raises(vecdb.Corruption):
        mf.load(tmp_path)
