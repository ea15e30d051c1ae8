"""Datasets: the JSONL manifest (one format for world clips, your videos and your images)."""

from kinetoscope.data.manifest import ManifestEntry, read_manifest, write_manifest

__all__ = ["ManifestEntry", "read_manifest", "write_manifest"]
