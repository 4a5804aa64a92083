"""The segment store: WAL, memtable, sealed Arrow segments, manifests, compaction, snapshots."""
