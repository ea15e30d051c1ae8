"""The JSONL manifest: round trips byte for byte, resolves paths, keeps extra fields, names bad lines."""

import json

import pytest

from kinetoscope.data import ManifestEntry, read_manifest, write_manifest
from kinetoscope.errors import ConfigError


def entries(root):
    return [
        ManifestEntry(
            path=root / "clips" / "a.mp4",
            caption="A large red ball moves right at a fast speed.",
            short_caption="a red ball moves right",
            fps=10,
            width=128,
            height=128,
            frames=32,
            state_path=root / "clips" / "a.json",
            extra={"scenario": "uniform", "seed": 3, "tags": ["physics", "ünïcode"]},
        ),
        ManifestEntry(path="photo.png", caption="a cat on a sofa", frames=1, width=640, height=480),
        ManifestEntry(path="/elsewhere/video.mp4", caption="", state={"state_version": 1, "objects": []}),
    ]


def test_round_trip_is_byte_identical_and_resolves_paths(tmp_path):
    first = write_manifest(tmp_path / "manifest.jsonl", entries(tmp_path))
    text = first.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["path"] == "clips/a.mp4" and lines[0]["state_path"] == "clips/a.json"
    assert lines[1]["path"] == "photo.png" and lines[2]["path"] == "/elsewhere/video.mp4"
    assert list(lines[0]) == sorted(lines[0]) and "extra" not in lines[0]
    assert lines[0]["tags"] == ["physics", "ünïcode"] and lines[0]["fps"] == 10.0

    back = read_manifest(first)
    assert back[0].path == tmp_path / "clips" / "a.mp4"
    assert back[0].state_path == tmp_path / "clips" / "a.json"
    assert back[1].path == tmp_path / "photo.png" and back[1].is_image
    assert back[2].state == {"state_version": 1, "objects": []} and back[2].caption == ""
    assert back[0].extra == {"scenario": "uniform", "seed": 3, "tags": ["physics", "ünïcode"]}
    assert (back[0].fps, back[0].width, back[0].height, back[0].frames) == (10.0, 128, 128, 32)

    again = write_manifest(tmp_path / "again.jsonl", back)
    assert again.read_bytes() == first.read_bytes()
    assert read_manifest(again) == back


def test_a_moved_dataset_folder_still_reads(tmp_path):
    write_manifest(tmp_path / "set" / "manifest.jsonl", entries(tmp_path / "set"))
    (tmp_path / "set").rename(tmp_path / "moved")
    back = read_manifest(tmp_path / "moved" / "manifest.jsonl")
    assert back[0].path == tmp_path / "moved" / "clips" / "a.mp4"


def test_state_loads_inline_or_from_its_file(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.json").write_text(json.dumps({"state_version": 1, "frames": 32}))
    write_manifest(tmp_path / "m.jsonl", entries(tmp_path))
    first, second, third = read_manifest(tmp_path / "m.jsonl")
    assert first.load_state() == {"state_version": 1, "frames": 32}
    assert second.load_state() is None
    assert third.load_state() == {"state_version": 1, "objects": []}
    (tmp_path / "clips" / "a.json").unlink()
    with pytest.raises(ConfigError, match="a.json named by the manifest does not exist"):
        first.load_state()


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{not json", "line 2 is not valid JSON"),
        ('["a list"]', "line 2 is not a valid entry: a line must be a JSON object"),
        ('{"caption": "x"}', "required field 'path' is missing"),
        ('{"path": "a.mp4"}', "required field 'caption' is missing"),
        ('{"path": "", "caption": "x"}', "'path' must be a non-empty string"),
        ('{"path": "a.mp4", "caption": 3}', "'caption' must be a string"),
        ('{"path": "a.mp4", "caption": "x", "fps": -1}', "'fps' must be a positive number"),
        ('{"path": "a.mp4", "caption": "x", "frames": 2.5}', "'frames' must be a whole number"),
        ('{"path": "a.mp4", "caption": "x", "width": true}', "'width' must be a whole number"),
        ('{"path": "a.mp4", "caption": "x", "state": [1]}', "'state' must be a JSON object"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"path": "ok.mp4", "caption": "fine"}\n' + line + "\n")
    with pytest.raises(ConfigError) as info:
        read_manifest(path)
    message = str(info.value)
    assert str(path) in message and "line 2" in message and reason in message
    assert message.count("\n") == 0


def test_missing_manifest_and_blank_lines(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_manifest(tmp_path / "nope.jsonl")
    path = tmp_path / "m.jsonl"
    path.write_text('\n{"path": "a.mp4", "caption": "x"}\n\n')
    assert [e.path.name for e in read_manifest(path)] == ["a.mp4"]


def test_extra_fields_may_not_shadow_the_entry_fields():
    with pytest.raises(ConfigError, match="clash"):
        ManifestEntry(path="a.mp4", caption="x", extra={"fps": 3})
