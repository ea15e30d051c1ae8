"""Wan2.1 checkpoints: tiny random models built by diffusers, saved in its layout, are the reference.

Everything is offline: the text encoder is a tiny random UMT5 with a word-level tokenizer (no
sentencepiece), and every model is made here from a seed.
"""

import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from kinetoscope.dit import DiT, DiTConfig, pack  # noqa: E402
from kinetoscope.vae import CausalVAE, VAEConfig  # noqa: E402
from kinetoscope.errors import InvalidInputError  # noqa: E402
from kinetoscope.wan import export_wan, import_wan, load_dit, save_transformer  # noqa: E402

WORDS = "a red ball rolls across the floor blue star moves up blurry still".split()
SHIFT = 3.0
#: Latent mean and std of the tiny VAE (Wan's are 16 measured values; 4 made-up ones stand in).
LATENT_MEAN, LATENT_STD = [0.1, -0.2, 0.3, 0.0], [1.5, 0.7, 2.0, 1.1]


def _randomize(model: torch.nn.Module) -> None:
    """diffusers starts norms at one and some biases at zero; a reference should exercise every tensor."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 or "scale_shift_table" in name:
                centre = 1.0 if ("norm" in name or "gamma" in name) else 0.0
                p.copy_(centre + 0.2 * torch.randn_like(p))


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["<pad>", "</s>", "<unk>", *WORDS]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    """A tiny random Wan2.1 text-to-video pipeline and the folder it is saved in (diffusers' layout)."""
    torch.manual_seed(0)
    encoder_config = transformers.UMT5Config(
        vocab_size=len(WORDS) + 3, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=48, num_layers=2, rope_max_seq_len=64,
    )  # fmt: skip
    vae = diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=LATENT_MEAN, latents_std=LATENT_STD,
    )  # fmt: skip
    _randomize(transformer)
    _randomize(vae)
    pipe = diffusers.WanPipeline(
        tokenizer=_tokenizer(),
        text_encoder=transformers.UMT5EncoderModel(encoder_config).eval(),
        vae=vae.eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=SHIFT),
        transformer=transformer.eval(),
    )
    path = tmp_path_factory.mktemp("wan") / "Wan2.1-T2V-tiny-Diffusers"
    pipe.save_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe, path


@pytest.fixture(scope="module")
def imported(wan, tmp_path_factory):
    return import_wan(wan[1], tmp_path_factory.mktemp("kinetoscope") / "wan-tiny")


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@torch.no_grad()
def test_transformer_velocity_equals_diffusers_for_a_video_and_an_image(wan, imported):
    pipe, _ = wan
    dit = DiT.from_pretrained(imported / "dit")
    assert dit.config.text_len == 512 and dit.config.width == 24 and dit.config.depth == 2
    gen = torch.Generator().manual_seed(1)
    video, image = torch.randn(4, 3, 8, 6, generator=gen), torch.randn(4, 1, 10, 8, generator=gen)
    text = torch.randn(2, 7, 16, generator=gen)
    mask = torch.arange(7) < torch.tensor([[7], [4]])  # the image's prompt is shorter
    # One packed batch of both samples, each at its own time, against diffusers one at a time.
    batch = pack([video, image], dit.config.patch_size)
    times = batch.per_sample(torch.tensor([0.7, 0.25]))
    ours = batch.unpack(dit(batch, times, text, mask))
    for i, (latent, t) in enumerate([(video, 0.7), (image, 0.25)]):
        padded = torch.zeros(1, 512, 16)  # WanPipeline pads each prompt with zeros to 512 tokens
        padded[0, : mask[i].sum()] = text[i, mask[i]]
        reference = pipe.transformer(latent[None], torch.tensor([1000.0 * t]), padded, return_dict=False)[0][0]
        diff = _max_diff(ours[i], reference)
        print(f"{'video' if i == 0 else 'image'} velocity max |diff| {diff:.2e} (scale {reference.abs().max():.2f})")
        assert diff <= 1e-4 and reference.abs().max() > 1.0

    # Without Wan's padded prompts (the switch off) the same weights compute something else.
    unpadded = DiT(dit.config.replace(text_len=0)).eval()
    unpadded.load_state_dict(dit.state_dict())
    assert _max_diff(batch.unpack(unpadded(batch, times, text, mask))[0], ours[0]) > 1e-2


@torch.no_grad()
def test_vae_encode_and_decode_equal_diffusers_chunked_over_17_frames(wan, imported):
    pipe, _ = wan
    vae = CausalVAE.from_pretrained(imported / "vae")
    assert vae.config.latent_mean == tuple(LATENT_MEAN) and vae.config.resample == "wan"
    video = torch.rand(1, 3, 17, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    posterior = pipe.vae.encode(video).latent_dist
    mean, std = torch.tensor(LATENT_MEAN).view(1, 4, 1, 1, 1), torch.tensor(LATENT_STD).view(1, 4, 1, 1, 1)
    latent = (posterior.mean - mean) / std
    decoded = pipe.vae.decode(posterior.mean).sample
    for chunk in (4, 8):  # time chunks of 4 frames (Wan's own) and of 8: causal, so the same result
        ours = vae.encode_posterior(video, chunk_frames=chunk)
        diffs = {
            "mean": _max_diff(ours.mean, posterior.mean),
            "logvar": _max_diff(ours.logvar, posterior.logvar),
            "normalised": _max_diff(vae.encode(video, chunk_frames=chunk), latent),
            "decode": _max_diff(vae.decode(latent, chunk_frames=chunk), decoded),
        }
        print(f"VAE, chunks of {chunk} frames: max |diff| " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        assert max(diffs.values()) <= 1e-4
    assert latent.shape == (1, 4, 5, 4, 4) and decoded.shape == video.shape and decoded.std() > 0.1

    # Each Wan switch is wired: kinetoscope's own resampling, or its norm epsilon, give other results.
    for change, least in (({"resample": "causal"}, 1e-2), ({"norm_eps": 1e-6}, 1e-6)):
        other = CausalVAE(vae.config.replace(**change)).eval()
        other.load_state_dict(vae.state_dict())
        changed = max(_max_diff(other.encode(video), latent), _max_diff(other.decode(latent), decoded))
        print(f"VAE with {change}: max |diff| {changed:.2e}")
        assert changed > least


class _KinetoscopeSchedule(diffusers.FlowMatchEulerDiscreteScheduler):
    """diffusers' flow-matching Euler steps through kinetoscope's times: ``shift(linspace(1, 0, steps + 1))``.
    Its own default spaces them from 1 to ``shift(1/1000)`` instead; the sampler is the same."""

    def set_timesteps(self, num_inference_steps=None, device=None, **kwargs):
        super().set_timesteps(sigmas=np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1], device=device)


@torch.no_grad()
def test_pipeline_text_to_video_equals_wan_pipeline(wan, imported):
    from kinetoscope.pipeline import Pipeline

    pipe, _ = wan
    ours = Pipeline.from_pretrained(imported)
    assert json.loads((imported / "model_index.json").read_text())["flow"]["shift_at_max"] == SHIFT
    decoded = {}
    decode = ours._decode

    def keep_decoded(latents):  # the frames before the watermark, which diffusers does not add
        decoded["frames"] = decode(latents)
        return decoded["frames"]

    ours._decode = keep_decoded
    args = {"prompt": "a red ball rolls across the floor", "negative_prompt": "blurry still"}
    result = ours(**args, width=48, height=32, num_frames=9, steps=4, guidance=5.0, seed=7)
    assert result.prompt == args["prompt"]  # not rewritten by the world's expander: Wan never read its captions

    reference = diffusers.WanPipeline(
        **{**pipe.components, "scheduler": _KinetoscopeSchedule.from_config(pipe.scheduler.config)}
    )
    reference.set_progress_bar_config(disable=True)
    options = {"height": 32, "width": 48, "num_frames": 9, "num_inference_steps": 4, "guidance_scale": 5.0}
    latents = reference(**args, **options, generator=torch.Generator().manual_seed(7), output_type="latent").frames
    frames = reference(**args, **options, generator=torch.Generator().manual_seed(7), output_type="np").frames
    latent_diff = _max_diff(result.latents, latents[0])
    frame_diff = float(np.abs(decoded["frames"] / 255.0 - frames[0]).max())
    print(f"pipeline: latents max |diff| {latent_diff:.2e}, frames (0..1) max |diff| {frame_diff:.2e}")
    assert latent_diff <= 1e-3 and frame_diff <= 1e-3
    assert result.frames.shape == (9, 32, 48, 3) and frames[0].std() > 0.01

    # Guidance is part of what matched: without it the sample is another one.
    options["guidance_scale"] = 1.0
    unguided = reference(**args, **options, generator=torch.Generator().manual_seed(7), output_type="latent").frames
    assert _max_diff(unguided, latents) > 1e-2


def test_round_trip_kinetoscope_diffusers_kinetoscope_is_exact(wan, imported, tmp_path):
    pipe, _ = wan
    export_wan(imported, tmp_path / "diffusers")
    back = load_dit(tmp_path / "diffusers" / "transformer")
    dit = DiT.from_pretrained(imported / "dit")
    assert back.config == dit.config
    assert back.state_dict().keys() == dit.state_dict().keys()
    assert all(torch.equal(a, back.state_dict()[k]) for k, a in dit.state_dict().items())
    # ... and the export is diffusers' model as it was, tensor for tensor.
    exported = diffusers.WanTransformer3DModel.from_pretrained(tmp_path / "diffusers" / "transformer")
    assert all(torch.equal(a, exported.state_dict()[k]) for k, a in pipe.transformer.state_dict().items())


@torch.no_grad()
def test_lora_adapters_export_as_diffusers_loads_them(wan, imported, tmp_path):
    from safetensors.torch import save_file

    from kinetoscope.files import atomic_write_json
    from kinetoscope.model_dir import read_index, save_model_dir
    from kinetoscope.pipeline import Pipeline
    from kinetoscope.train.lora import LoRAConfig, apply_lora, lora_state_dict, merge_lora

    pytest.importorskip("peft")
    pipe, _ = wan
    # A LoRA fine-tune's output as the trainer exports it: adapters in lora/, merged weights in dit/.
    base = Pipeline.from_pretrained(imported)
    dit = base.dit
    lora = LoRAConfig(rank=4, alpha=8.0)
    apply_lora(dit, lora)
    for name, p in dit.named_parameters():
        if name.endswith("lora_B"):
            p.copy_(0.1 * torch.randn_like(p))
    tuned = tmp_path / "tuned"
    (tuned / "lora").mkdir(parents=True)
    save_file(lora_state_dict(dit), str(tuned / "lora" / "adapter.safetensors"))
    atomic_write_json(tuned / "lora" / "adapter_config.json", lora.to_dict())
    merge_lora(dit)
    save_model_dir(
        tuned, vae=base.vae, dit=dit, flow=base.flow.to_dict(), name="tuned",
        hf_text_encoder=base.text_encoder.path, extra={"lora": "lora"},
    )  # fmt: skip
    assert read_index(tuned)["lora"] == "lora"

    written = export_wan(tuned, tmp_path / "diffusers")
    assert [p.name for p in written] == ["transformer", "pytorch_lora_weights.safetensors"]
    latent, text = torch.randn(1, 4, 2, 6, 6), torch.randn(1, 512, 16)
    t = torch.tensor([600.0])
    merged = diffusers.WanTransformer3DModel.from_pretrained(tmp_path / "diffusers" / "transformer")
    expected = merged(latent, t, text, return_dict=False)[0]
    original = pipe.transformer(latent, t, text, return_dict=False)[0]
    reference = diffusers.WanPipeline(**pipe.components)
    reference.load_lora_weights(tmp_path / "diffusers")  # onto the original weights
    adapted = reference.transformer(latent, t, text, return_dict=False)[0]
    reference.unload_lora_weights()
    print(f"LoRA in diffusers vs merged: max |diff| {_max_diff(adapted, expected):.2e}")
    assert _max_diff(adapted, expected) <= 1e-4 and _max_diff(original, expected) > 1e-2


def test_cli_imports_and_exports_and_refuses_image_to_video(wan, cli, tmp_path):
    _, source = wan
    code, out, err = cli("wan", "import", source, "--out", tmp_path / "model", "--dtype", "bfloat16")
    assert code == 0, err
    assert f"wrote {tmp_path / 'model'}" in out
    dit = DiT.from_pretrained(tmp_path / "model" / "dit", dtype=torch.bfloat16)
    assert dit.patch_embed.weight.dtype == torch.bfloat16
    assert (tmp_path / "model" / "text_encoder" / "tokenizer.json").is_file()  # the tokenizer came along

    code, out, err = cli("wan", "export", tmp_path / "model", "--out", tmp_path / "back")
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'back' / 'transformer'}"
    assert json.loads((tmp_path / "back" / "transformer" / "config.json").read_text())["text_dim"] == 16

    # An image-to-video model is refused in one sentence, before anything is written.
    i2v = tmp_path / "i2v"
    (i2v / "image_encoder").mkdir(parents=True)
    (i2v / "model_index.json").write_text(json.dumps({"_class_name": "WanImageToVideoPipeline"}))
    code, out, err = cli("wan", "import", i2v, "--out", tmp_path / "never")
    assert code == 2 and "image-to-video" in err and err.count(". ") == 0
    assert not (tmp_path / "never").exists()
    code, _, err = cli("wan", "import", tmp_path / "nowhere", "--out", tmp_path / "never")
    assert code == 2 and "is not a folder" in err
    # A kinetoscope-native transformer reads unpadded prompts; diffusers' would not compute the same.
    with pytest.raises(InvalidInputError, match="text_len is 0"):
        save_transformer(DiT(DiTConfig.from_preset("tiny")), tmp_path / "native")


def test_an_image_to_video_transformer_is_refused(wan, tmp_path):
    import shutil

    source = tmp_path / "source"
    shutil.copytree(wan[1], source)
    config_path = source / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(image_dim=32, added_kv_proj_dim=32)  # what Wan2.1's I2V transformers add
    config_path.write_text(json.dumps(config))
    with pytest.raises(InvalidInputError, match="image-to-video") as refused:
        import_wan(source, tmp_path / "never")
    assert refused.value.param == "source" and not (tmp_path / "never").exists()


def test_the_switches_are_off_by_default_and_old_configs_load():
    """Models saved before the switches existed (no text_len, norm_eps, quant_conv, resample) load unchanged."""
    dit_old = {k: v for k, v in DiTConfig.from_preset("tiny").to_dict().items() if k != "text_len"}
    assert DiTConfig.from_dict(dit_old).text_len == 0
    vae_old = {k: v for k, v in VAEConfig().to_dict().items() if k not in ("norm_eps", "quant_conv", "resample")}
    vae = VAEConfig.from_dict(vae_old)
    assert (vae.norm_eps, vae.quant_conv, vae.resample) == (1e-6, False, "causal")
    assert not any("quant" in name for name in CausalVAE(VAEConfig.from_preset("tiny")).state_dict())


def test_a_lora_fine_tune_keeps_wans_sampler_and_prompts_and_exports(imported, tmp_path):
    from kinetoscope.model_dir import read_index
    from kinetoscope.train import TrainConfig, train

    world = {"scenarios": ["uniform"], "sizes": [[32, 32]], "frames": [1, 5], "fps": 10.0}
    final = train(TrainConfig.from_dict({
        "run_dir": str(tmp_path / "run"), "steps": 2, "log_every": 1000, "checkpoint_every": 1000,
        "ema": {"decay": 0.0}, "schedule": {"warmup_steps": 0}, "optim": {"lr": 1e-3, "weight_decay": 0.0},
        "data": {"source": "world", "world": world, "batch_size": 2},
        "task": {"kind": "dit", "init_from": str(imported), "lora": {"rank": 2, "alpha": 2.0}},
    }))  # fmt: skip
    index = read_index(final)
    # The fine-tune samples as Wan does and reads prompts as written, like the model it started from.
    assert index["flow"] == read_index(imported)["flow"] and index["flow"]["shift_at_max"] == SHIFT
    assert index["expand_prompts"] is False and index["lora"] == "lora"
    written = export_wan(final, tmp_path / "diffusers")
    assert written[1].name == "pytorch_lora_weights.safetensors"
    state = diffusers.WanPipeline.lora_state_dict(written[1].parent)
    assert any(k.endswith("attn1.to_q.lora_B.weight") for k in state)


@pytest.mark.parametrize(
    "shape",
    [
        {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},  # Wan2.1-T2V-1.3B
        {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},  # Wan2.1-T2V-14B
    ],
    ids=["1.3B", "14B"],
)
def test_wan_sizes_map_tensor_for_tensor(shape):
    """Every tensor of the real shapes has its place, both ways (built on the meta device: no memory)."""
    from kinetoscope.wan.transformer import dit_config, dit_state_dict, wan_state_dict

    with torch.device("meta"):
        wan = diffusers.WanTransformer3DModel(attention_head_dim=128, text_dim=4096, **shape)
        config = dit_config(wan.config)
        dit = DiT(config)
    wan_state = wan.state_dict()
    dit.load_state_dict(dit_state_dict(dict(wan_state), config), assign=True)  # strict: every key, every shape
    assert sum(p.numel() for p in dit.parameters()) == sum(p.numel() for p in wan.parameters())
    back = wan_state_dict(dit.state_dict(), config)
    assert back.keys() == wan_state.keys() and all(back[k].shape == wan_state[k].shape for k in back)
    if shape["num_layers"] == 30:
        assert config == DiTConfig.from_preset("1.3b", text_len=512)


def test_wan_vae_maps_tensor_for_tensor():
    """Wan2.1's own VAE config (diffusers' defaults: 96 channels, two residual blocks a level) on the meta device."""
    from kinetoscope.wan.vae import vae_config, vae_state_dict

    with torch.device("meta"):
        wan = diffusers.AutoencoderKLWan()
        vae = CausalVAE(vae_config(wan.config))
    vae.load_state_dict(vae_state_dict(wan, dict(wan.state_dict()), vae), assign=True)
    assert vae.num_parameters == sum(p.numel() for p in wan.parameters())
    assert vae.config.replace(norm_eps=1e-6, quant_conv=False, resample="causal", latent_mean=(), latent_std=()) == (
        VAEConfig.from_preset("wan")
    )  # the wan preset is Wan's shape; the switches and statistics are what the import adds
