"""The bundled model (models/world) out of the box: found from the package, it makes a video from a prompt."""

from __future__ import annotations

from kinetoscope.bundled import WORLD, bundled_model


def test_generate_without_a_model_works_from_any_folder(cli, tmp_path, monkeypatch):
    from kinetoscope.eval.detect import detect_video
    from kinetoscope.io import read_video

    monkeypatch.chdir(tmp_path)
    code, out, err = cli("generate", "a red ball moves right", "--steps", "20", "--seed", "0", "--out", "ball.mp4")
    assert code == 0, err
    video = read_video(tmp_path / "ball.mp4")
    assert video.frames.shape == (21, 128, 128, 3) and video.fps == 10.0  # 2 s at the model's default size, 1 + 4k frames
    # The model draws the object it was asked for: a red one, in most frames.
    frames_with_red = sum(any(d.color == "red" for d in found) for found in detect_video(video.frames))
    assert frames_with_red >= 10, frames_with_red


def test_bundled_model_is_found_from_the_package_and_loads_in_fp32():
    import torch

    from kinetoscope.pipeline import Pipeline

    path = bundled_model(WORLD)
    assert (path / "model_index.json").is_file() and (path / "MODEL.md").is_file()
    pipe = Pipeline.from_pretrained(path)
    assert {p.dtype for p in pipe.dit.parameters()} == {torch.float32}
    assert pipe.vae.config.patch_size == 4 and pipe.vae.config.shortcut
