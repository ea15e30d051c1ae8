"""The service signs the videos it writes with C2PA when a certificate and key are configured."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("c2pa")
openai = pytest.importorskip("openai")
from c2pa_support import make_certificates
from serve_support import LiveServer

from kinetoscope.safety import SigningKey, detect
from kinetoscope.serve import Settings, create_app

# The SDK marks the Sora endpoints deprecated; they are exactly what this service offers.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"))


def test_a_served_video_carries_a_signed_manifest_and_the_watermark(
    tiny_model_dir, certificates, tmp_path, monkeypatch
):
    from kinetoscope.pipeline import Pipeline

    monkeypatch.setenv("KINETOSCOPE_C2PA_CERT", str(certificates["chain"]))
    monkeypatch.setenv("KINETOSCOPE_C2PA_KEY", str(certificates["key"]))
    pipeline = Pipeline.from_pretrained(tiny_model_dir)
    settings = Settings(data_dir=tmp_path / "data", poll_after_ms=50, c2pa=SigningKey.from_env())
    side = 4 * pipeline.limits.size_multiple  # 64: frames that hold the whole 64-pixel watermark tile
    with LiveServer(create_app(pipeline, settings)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
        video = client.videos.create_and_poll(
            prompt="a red ball rolls to the right", size=f"{side}x{side}", seconds="1", extra_body={"steps": 2}
        )
        assert video.status == "completed", video.error
        downloaded = tmp_path / "downloaded.mp4"
        downloaded.write_bytes(client.videos.download_content(video.id).content)

    found = detect(downloaded, trust_anchors=certificates["ca"])
    assert found.c2pa is not None, "the served video has no C2PA manifest"
    assert found.c2pa["state"] == "Trusted" and found.c2pa["failures"] == []
    assert found.c2pa["model_id"] == pipeline.model_id
    assert found.c2pa["signer"]["common_name"] == "kinetoscope signer"
    assert found.c2pa["digital_source_type"].endswith("trainedAlgorithmicMedia")
    # Signing adds a box beside the frames: the watermark still names the model.
    assert found.watermarked and found.model_id == pipeline.model_id


def test_serve_refuses_to_start_with_half_a_signing_configuration(cli, certificates, tmp_path, monkeypatch):
    monkeypatch.setenv("KINETOSCOPE_C2PA_CERT", str(certificates["chain"]))
    monkeypatch.delenv("KINETOSCOPE_C2PA_KEY", raising=False)
    code, _, err = cli("serve", "--model", tmp_path / "no-model", "--data", tmp_path / "data")
    assert code == 2 and "Set both KINETOSCOPE_C2PA_CERT and KINETOSCOPE_C2PA_KEY" in err
    monkeypatch.setenv("KINETOSCOPE_C2PA_KEY", str(certificates["ca"]))  # a certificate, not a key
    code, _, err = cli("serve", "--model", tmp_path / "no-model", "--data", tmp_path / "data")
    assert code == 2 and "private key" in err
