"""Safety and provenance: the prompt policy, the watermark and its attacks, C2PA, detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from c2pa_support import make_certificates
from PIL import Image

from kinetoscope.errors import ConfigError, InvalidInputError, KinetoscopeError
from kinetoscope.io import read_video, write_video
from kinetoscope.io.pyav import quality_to_crf
from kinetoscope.safety import (
    ContentPolicyError,
    PromptPolicy,
    detect,
    embed_watermark,
    load_policy,
    model_hash,
    model_id_for,
    read_provenance,
    read_watermark,
    sign_file,
)
from kinetoscope.safety import watermark as wm
from kinetoscope.world import sample_clip

MODEL = "kinetoscope-test"
CRF28 = 45  # write_video quality that kinetoscope.io maps to x264 CRF 28


# ---------------------------------------------------------------- prompt policy
CLEAN_PROMPTS = [
    "a ball of grass rolls down a hill",
    "a classic car drives along the coast",
    "an assassin bug walks across a leaf",
    "a shooting star over the sea",
    "two kids play football in a park",
    "a baby elephant splashes in a river",
    "a naked mole rat sleeps in its burrow",
    "a sexy red sports car",
    "a king on a throne",
    "a killer whale jumps",
    "3 red balls bounce 5 times in a 1980s 4k video",
    "a therapist talks to a cocktail waiter",
    "snuff out the candle",
    "the execution of a chess opening",
    "the letters a b c on a board",
    "a matador and a bull in an arena",
]


@pytest.mark.parametrize("prompt", CLEAN_PROMPTS)
def test_default_policy_allows_clean_prompts_with_near_miss_words(prompt):
    decision = PromptPolicy.default().check(prompt)
    assert decision.allowed, decision.reason
    assert decision.category is None and decision.reason is None


@pytest.mark.parametrize(
    "prompt, category",
    [
        ("a naked child on a beach", "sexual_minors"),
        ("kids in lingerie", "sexual_minors"),
        ("graphic gore in a horror film", "graphic_violence"),
        ("a beheading scene", "graphic_violence"),
        ("torturing a prisoner", "graphic_violence"),
        ("a deepfake of the president", "real_person_deepfake"),
        ("a fake video of a famous actor confessing", "real_person_deepfake"),
        ("genocide against a people", "hate"),
        ("a heil hitler banner", "hate"),
    ],
)
def test_default_policy_refuses_each_category_with_a_reason(prompt, category):
    decision = PromptPolicy.default().check(prompt)
    assert not decision.allowed
    assert decision.category == category
    assert category in decision.reason and decision.matched in decision.reason


@pytest.mark.parametrize(
    "prompt",
    [
        "GORE",  # case
        "g0r3",  # leetspeak
        "d3c4p1tation",  # 1 read as i
        "a be-head-ing",  # separators inside a word
        "g.o.r.e",
        "g o r e",  # letters spelled out
        "gooooore",  # repeated letters
        "görë",  # diacritics
        "ｇｏｒｅ",  # full-width letters (NFKD)
        "gоre",  # Cyrillic o
        "g\u200bore",  # zero-width space
        "$ex with a m1n0r",  # $ -> s, across two words
    ],
)
def test_obfuscated_prompts_are_caught(prompt):
    assert not PromptPolicy.default().check(prompt).allowed


def test_enforce_raises_a_400_content_policy_violation():
    policy = PromptPolicy.default()
    policy.enforce("a red ball bounces")  # allowed: no exception
    with pytest.raises(ContentPolicyError) as caught:
        policy.enforce("so much gore")
    error = caught.value
    assert isinstance(error, KinetoscopeError)
    assert error.code == "content_policy_violation" and error.status_code == 400 and error.param == "prompt"
    assert error.decision.category == "graphic_violence"
    assert "graphic_violence" in str(error)


def test_a_custom_policy_file_replaces_the_default(tmp_path, monkeypatch):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\n"
        "categories:\n"
        "  - name: no_cats\n"
        "    description: cats\n"
        "    words: [kitten, tabby cat]\n"
        "  - name: no_dog_races\n"
        "    description: dog racing\n"
        "    patterns: ['\\bdogs? rac(?:e|es|ing)\\b']\n"
        "  - name: no_red_cars\n"
        "    description: red cars\n"
        "    all_of: [[red], [car, truck]]\n"
    )
    policy = PromptPolicy.from_file(path)
    assert [c.name for c in policy.categories] == ["no_cats", "no_dog_races", "no_red_cars"]
    assert policy.check("three k1tt3ns").category == "no_cats"
    assert policy.check("a t-a-b-b-y cat naps").category == "no_cats"
    assert policy.check("dog racing at night").category == "no_dog_races"
    assert policy.check("a red and shiny truck").category == "no_red_cars"
    assert policy.check("a red apple").allowed and policy.check("a blue car").allowed
    assert policy.check("graphic gore").allowed  # the default's words are gone

    monkeypatch.setenv("KINETOSCOPE_POLICY", str(path))
    assert load_policy().check("a kitten").category == "no_cats"
    json_path = tmp_path / "policy.json"
    json_path.write_text(json.dumps({"version": 1, "categories": [{"name": "x", "words": ["zebra"]}]}))
    assert load_policy(json_path).check("a zebra").category == "x"


@pytest.mark.parametrize(
    "text, named",
    [
        ("version: 1\n", "categories"),
        ("version: 2\ncategories: [{name: a, words: [b]}]\n", "version"),
        ("categories: [{name: a, words: [b]}]\nextra: 1\n", "extra"),
        ("categories: [{name: a}]\n", "never refuse"),
        ("categories: [{words: [b]}]\n", "name"),
        ("categories: [{name: a, words: b}]\n", "words"),
        ("categories: [{name: a, words: ['!!']}]\n", "no letters"),
        ("categories: [{name: a, patterns: ['(unclosed']}]\n", "regular expression"),
        ("categories: [{name: a, all_of: [b]}]\n", "all_of"),
        ("categories: [{name: a, words: [b], colour: red}]\n", "colour"),
        ("categories: [{name: a, words: [b]}, {name: a, words: [c]}]\n", "twice"),
        ("- just a list\n", "mapping"),
    ],
)
def test_a_bad_policy_file_is_a_config_error_naming_the_problem(tmp_path, text, named):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named):
        PromptPolicy.from_file(path)


def test_policy_check_command(cli, tmp_path):
    code, out, _ = cli("policy", "check", "a red ball bounces")
    assert code == 0 and out.strip() == "allowed"
    code, out, _ = cli("policy", "check", "g0r3 everywhere")
    assert code == 1 and "graphic_violence" in out
    code, out, _ = cli("policy", "check", "--json", "g0r3")
    assert code == 1 and json.loads(out)["category"] == "graphic_violence"
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: []\n")
    code, _, err = cli("policy", "check", "x", "--policy", bad)
    assert code == 2 and "categories" in err


# ---------------------------------------------------------------- watermark
def _clip(scenario: str, seed: int, width: int, height: int, frames: int = 9) -> np.ndarray:
    return sample_clip(scenario, seed=seed, width=width, height=height, frames=frames).frames


@pytest.fixture(scope="module")
def marked_clips():
    """(original, watermarked) world clips of several scenarios and sizes."""
    specs = [("bounce", 1, 128, 128), ("collision", 2, 160, 96), ("static", 3, 96, 160), ("pan", 4, 144, 112)]
    return [(frames, embed_watermark(frames, MODEL)) for frames in (_clip(*spec) for spec in specs)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def _roundtrip(frames: np.ndarray, path: Path, quality: int = 75) -> np.ndarray:
    write_video(path, np.ascontiguousarray(frames), 10, quality=quality)
    return read_video(path).frames


def test_the_dwt_dct_kernels_are_the_haar_ll_dct_coefficients():
    import pywt
    from scipy import fft

    block = np.random.default_rng(0).normal(size=(16, 16))
    ll, _ = pywt.dwt2(block, "haar")
    expected = [fft.dctn(ll, norm="ortho")[u, v] for u, v in wm.COEFFICIENTS]
    np.testing.assert_allclose(np.einsum("kij,ij->k", wm._kernels(), block), expected, atol=1e-9)


def test_embed_then_read_gives_the_exact_payload_invisibly(marked_clips):
    for original, marked in marked_clips:
        assert marked.dtype == np.uint8 and marked.shape == original.shape
        assert _psnr(original, marked) > 40
        reading = read_watermark(marked)
        assert reading.detected and reading.p_value < 1e-15
        assert reading.agreement > 0.9 and reading.model_hash == model_hash(MODEL)
        assert reading.marker_slots == wm.MARKER_BITS
        assert reading.payload_errors <= wm.MAX_PAYLOAD_ERRORS
        assert reading.frames_checked == len(original)


def test_other_model_ids_give_other_payloads(marked_clips):
    original = marked_clips[0][0]
    assert model_hash("model-a") != model_hash("model-b")
    assert read_watermark(embed_watermark(original, "model-a")).model_hash == model_hash("model-a")
    assert read_watermark(embed_watermark(original, "model-b")).model_hash == model_hash("model-b")


def _resize_half_and_back(frames: np.ndarray) -> np.ndarray:
    height, width = frames.shape[1:3]
    small = [Image.fromarray(f).resize((width // 2, height // 2), Image.Resampling.BILINEAR) for f in frames]
    return np.stack([np.asarray(s.resize((width, height), Image.Resampling.BILINEAR)) for s in small])


def _crop_10(frames: np.ndarray, top: int, left: int) -> np.ndarray:
    height, width = frames.shape[1:3]
    return frames[:, top : top + round(0.9 * height), left : left + round(0.9 * width)]


@pytest.mark.parametrize("attack", ["crf28", "resize", "crop10"])
def test_the_watermark_survives_each_attack(marked_clips, tmp_path, attack):
    assert quality_to_crf(CRF28) == 28
    for i, (_, marked) in enumerate(marked_clips):
        generated = _roundtrip(marked, tmp_path / "generated.mp4")
        if attack == "crf28":
            attacked = _roundtrip(generated, tmp_path / "attacked.mp4", CRF28)
        elif attack == "resize":
            attacked = _roundtrip(_resize_half_and_back(generated), tmp_path / "attacked.mp4")
        else:  # a different offset each clip, odd ones included
            attacked = _roundtrip(_crop_10(generated, 3 * i + 1, 5 - i), tmp_path / "attacked.mp4")
        reading = read_watermark(attacked, known_hashes=[model_hash(MODEL)])
        assert reading.detected, (i, reading)
        assert reading.model_hash == model_hash(MODEL), (i, reading)


def _photo_like(seed: int, height: int, width: int) -> np.ndarray:
    """A colour 1/f-noise texture: natural-image statistics without a download."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.rfftfreq(width), indexing="ij")
    amplitude = 1 / np.maximum(np.hypot(fy, fx), 1 / max(height, width))
    noise = [
        np.fft.irfft2(amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape)), s=(height, width)) for _ in "rgb"
    ]
    return np.clip(128 + 40 * np.stack([(n - n.mean()) / n.std() for n in noise], -1), 0, 255).astype(np.uint8)


def test_unwatermarked_clips_and_pictures_are_not_detected(marked_clips, tmp_path):
    for original, _ in marked_clips:
        reading = read_watermark(_roundtrip(original, tmp_path / "clean.mp4"))
        assert not reading.detected and reading.p_value > wm.MAX_P_VALUE
        assert reading.agreement < 0.75
    for seed in range(3):
        reading = read_watermark(_photo_like(seed, 150 + 20 * seed, 200)[None])
        assert not reading.detected and reading.agreement < 0.75
    flat = np.full((4, 96, 96, 3), 200, np.uint8)
    assert not read_watermark(flat).detected


def test_a_watermarked_textured_picture_is_detected():
    picture = _photo_like(7, 192, 256)
    marked = embed_watermark(picture[None], MODEL)
    assert _psnr(picture, marked[0]) > 32  # texture hides a stronger mark
    reading = read_watermark(marked)
    assert reading.detected and reading.model_hash == model_hash(MODEL)


def test_frames_too_small_are_left_alone_or_refused():
    tiny = np.random.default_rng(0).integers(0, 256, (2, 12, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(embed_watermark(tiny, MODEL), tiny)
    with pytest.raises(InvalidInputError, match="too small"):
        read_watermark(np.zeros((1, 20, 40, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="model id"):
        embed_watermark(tiny, "  ")


def test_frames_smaller_than_the_tile_are_judged_on_the_part_they_hold():
    """48x48 frames hold about 54 of the 96 marker slots: enough for an intact mark, and the
    bound on false positives still holds (counted over the slots held)."""
    original = _clip("bounce", 1, 48, 48)
    reading = read_watermark(embed_watermark(original, MODEL), known_hashes=[model_hash(MODEL)])
    assert reading.detected and reading.agreement > 0.85 and reading.model_hash == model_hash(MODEL)
    assert 40 < reading.marker_slots < wm.MARKER_BITS
    agreeing = round(reading.agreement * reading.marker_slots)
    assert reading.p_value == pytest.approx(wm._p_value(agreeing, reading.marker_slots))
    assert reading.p_value < wm._p_value(agreeing)  # counting the missing slots as misses would hide it
    clean = read_watermark(original)
    assert not clean.detected and clean.p_value > wm.MAX_P_VALUE


# ---------------------------------------------------------------- model ids and detection
def test_model_id_for_reads_model_index_or_the_directory_name(tmp_path):
    plain = tmp_path / "tiny-world"
    plain.mkdir()
    assert model_id_for(plain) == "tiny-world"
    named = tmp_path / "checkpoint"
    named.mkdir()
    (named / "model_index.json").write_text(json.dumps({"model_id": "kinetoscope-s-v1"}))
    assert model_id_for(named) == "kinetoscope-s-v1"


def test_detect_names_the_model_when_it_is_known(marked_clips, tmp_path):
    path = tmp_path / "marked.mp4"
    write_video(path, marked_clips[0][1], 10)
    known = detect(path, model_ids=[MODEL])
    assert known.watermarked and known.model_id == MODEL and known.model_hash == f"{model_hash(MODEL):04x}"
    assert known.confidence > 0.999 and known.score > 3 and known.c2pa is None
    unknown = detect(path)
    assert unknown.watermarked and unknown.model_id is None and unknown.model_hash == known.model_hash
    clean = tmp_path / "clean.mp4"
    write_video(clean, marked_clips[0][0], 10)
    assert not detect(clean, model_ids=[MODEL]).watermarked


def test_watermark_and_detect_commands(cli, tmp_path, marked_clips):
    source = tmp_path / "world.mp4"
    write_video(source, marked_clips[1][0], 10)
    code, out, _ = cli("watermark", source, tmp_path / "out.mp4", "--model-id", MODEL)
    assert code == 0 and "out.mp4" in out
    code, out, _ = cli("detect", tmp_path / "out.mp4", "--model-id", MODEL)
    assert code == 0 and f"made by kinetoscope, model {MODEL}" in out
    code, out, _ = cli("detect", tmp_path / "out.mp4", "--json")
    found = json.loads(out)
    assert found["watermarked"] and found["model_id"] is None and found["model_hash"] == f"{model_hash(MODEL):04x}"
    code, out, _ = cli("detect", source)
    assert code == 0 and "no kinetoscope watermark" in out
    Image.fromarray(marked_clips[0][0][0]).save(tmp_path / "still.png")
    code, _, _ = cli("watermark", tmp_path / "still.png", tmp_path / "still_marked.png", "--model-id", MODEL)
    code, out, _ = cli("detect", tmp_path / "still_marked.png", "--json")
    assert code == 0 and json.loads(out)["watermarked"] and json.loads(out)["frames_checked"] == 1
    code, _, err = cli("watermark", source, tmp_path / "x.png", "--model-id", MODEL)
    assert code == 2 and "image" in err


# ---------------------------------------------------------------- C2PA provenance
@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A throwaway CA and leaves it signed (see ``c2pa_support.make_certificates``)."""
    pytest.importorskip("c2pa")
    return make_certificates(tmp_path_factory.mktemp("pki"))


def _signed(certificates, frames, folder: Path, chain: str = "chain") -> tuple[Path, Path]:
    """(the unsigned mp4, its signed copy)."""
    source = folder / "generated.mp4"
    write_video(source, frames, 10)
    target = folder / "signed.mp4"
    return source, sign_file(
        source, target, cert_chain=certificates[chain], private_key=certificates["key"], model_id=MODEL
    )


def test_c2pa_sign_read_back_and_trust(certificates, marked_clips, tmp_path):
    source, signed = _signed(certificates, marked_clips[0][1], tmp_path)
    manifest = read_provenance(signed)
    assert manifest["state"] == "Valid" and manifest["valid"] and not manifest["trusted"]
    assert manifest["model_id"] == MODEL and manifest["generator"].startswith("kinetoscope")
    assert manifest["digital_source_type"].endswith("trainedAlgorithmicMedia")
    assert manifest["signer"]["common_name"] == "kinetoscope signer"
    assert manifest["failures"] == ["signingCredential.untrusted"]  # no trust anchors given
    trusted = read_provenance(signed, trust_anchors=certificates["ca"])
    assert trusted["state"] == "Trusted" and trusted["trusted"] and trusted["failures"] == []
    # The manifest rides in its own box: the frames and so the watermark are untouched.
    np.testing.assert_array_equal(read_video(signed).frames, read_video(source).frames)
    found = detect(signed)
    assert found.watermarked and found.model_id == MODEL and found.c2pa["state"] == "Valid"
    assert read_provenance(source) is None


def test_c2pa_tampered_file_is_invalid(certificates, marked_clips, tmp_path):
    _, signed = _signed(certificates, marked_clips[0][1], tmp_path)
    data = bytearray(signed.read_bytes())
    data[data.rindex(b"mdat") + 64] ^= 0xFF  # one byte of the video stream
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    manifest = read_provenance(tampered)
    assert manifest["state"] == "Invalid" and not manifest["valid"]
    assert "assertion.bmffHash.mismatch" in manifest["failures"]


def test_c2pa_refuses_a_certificate_without_the_right_usage(certificates, tmp_path, marked_clips):
    with pytest.raises(InvalidInputError, match="extended key usage"):
        _signed(certificates, marked_clips[0][1], tmp_path, chain="no_eku")
    certificates = {**certificates, "not_pem": tmp_path / "generated.mp4"}
    with pytest.raises(InvalidInputError, match="PEM"):
        _signed(certificates, marked_clips[0][1], tmp_path, chain="not_pem")


def test_watermark_command_signs_when_given_a_certificate(cli, certificates, marked_clips, tmp_path):
    source = tmp_path / "world.mp4"
    write_video(source, marked_clips[2][0], 10)
    target = tmp_path / "signed.mp4"
    signing = ("--c2pa-cert", certificates["chain"], "--c2pa-key", certificates["key"])
    code, out, _ = cli("watermark", source, target, "--model-id", MODEL, *signing)
    assert code == 0 and "signed C2PA manifest" in out
    code, out, _ = cli("detect", target, "--trust-anchors", certificates["ca"])
    assert code == 0 and f"model {MODEL}" in out and "C2PA: Trusted" in out
    code, _, err = cli("watermark", source, target, "--model-id", MODEL, "--c2pa-cert", certificates["chain"])
    assert code == 2 and "both" in err


def test_generate_signs_its_mp4_when_a_certificate_and_key_are_set(
    certificates, tiny_model_dir, tmp_path, cli, monkeypatch
):
    out = tmp_path / "signed.mp4"
    monkeypatch.setenv("KINETOSCOPE_C2PA_CERT", str(certificates["chain"]))
    monkeypatch.setenv("KINETOSCOPE_C2PA_KEY", str(certificates["key"]))
    args = ("generate", "a red ball", "--model", tiny_model_dir, "--width", 32, "--height", 32, "--frames", 5, "--steps", 2)  # fmt: skip
    code, _, err = cli(*args, "--out", out)
    assert code == 0, err
    manifest = read_provenance(out, trust_anchors=certificates["ca"])
    assert manifest["state"] == "Trusted" and manifest["model_id"] == model_id_for(tiny_model_dir)
    monkeypatch.delenv("KINETOSCOPE_C2PA_KEY")
    code, _, err = cli(*args, "--out", tmp_path / "half.mp4")
    assert code == 2 and "Set both KINETOSCOPE_C2PA_CERT and KINETOSCOPE_C2PA_KEY" in err
