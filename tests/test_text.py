"""Caption tokenizer, built-in text encoder, and the local Hugging Face encoder path."""

import pytest
import torch

from kinetoscope.errors import CheckpointError, InvalidInputError
from kinetoscope.text import CaptionTokenizer, HFTextEncoder, TextEncoder, TextEncoderConfig

CAPTIONS = [
    "a red ball rolls to the left and hits a blue cube",
    "two balls collide on a white floor",
    "a small green ball falls and bounces twice",
    "the blue cube slides to the right",
] * 5


@pytest.fixture(scope="module")
def tokenizer():
    return CaptionTokenizer.train(CAPTIONS, vocab_size=300, min_frequency=1)


def test_tokenizer_trains_saves_loads_and_round_trips(tokenizer, tmp_path):
    assert 256 < tokenizer.vocab_size <= 300
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = CaptionTokenizer.load(tmp_path / "tokenizer.json")
    prompts = ["a red ball rolls", "Ünïcode & émoji 🎈 never seen in training", ""]
    ids, mask = loaded.encode(prompts, max_length=64)
    assert torch.equal(ids, tokenizer.encode(prompts, max_length=64)[0])
    assert ids.shape[0] == 3 and mask.dtype == torch.bool
    for row, prompt in enumerate(prompts):
        assert loaded.decode(ids[row][mask[row]]) == prompt
    # Every encoding ends with </s>: the empty prompt is one token; padding fills the rest.
    assert mask[2].sum() == 1 and ids[2, 0] == loaded.eos_id
    assert (ids[~mask] == loaded.pad_id).all()
    # Trained merges make common caption words shorter than their bytes.
    assert mask[0].sum() < len("a red ball rolls")


def test_tokenizer_truncates_keeping_the_end_token(tokenizer):
    ids, mask = tokenizer.encode([" ".join(CAPTIONS)], max_length=8)
    assert ids.shape == (1, 8) and mask.all()
    assert ids[0, -1] == tokenizer.eos_id
    with pytest.raises(InvalidInputError, match="list of prompts"):
        tokenizer.encode("a single string", 8)


def test_tokenizer_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        CaptionTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="could not be read"):
        CaptionTokenizer.load(tmp_path / "bad.json")


def test_builtin_encoder_shapes_mask_and_save_load(tokenizer, tmp_path):
    config = TextEncoderConfig.from_preset("tiny", vocab_size=300)
    encoder = TextEncoder(config, tokenizer)
    prompts = ["a red ball rolls to the left", "", "two balls"]
    embeddings, mask = encoder.encode(prompts)
    assert embeddings.shape == (3, mask.shape[1], config.width)
    assert mask.sum(1).tolist() == [tokenizer.encode([p], 64)[1].sum().item() for p in prompts]
    assert embeddings.requires_grad  # trained together with the DiT
    # Padding does not leak into real tokens: a prompt alone encodes the same as in a batch.
    alone, _ = encoder.encode(prompts[2:])
    n = int(mask[2].sum())
    assert torch.allclose(alone[0, :n], embeddings[2, :n], atol=1e-5)
    encoder.save_pretrained(tmp_path / "text")
    assert (tmp_path / "text" / "tokenizer.json").is_file()
    loaded = TextEncoder.from_pretrained(tmp_path / "text")
    assert torch.equal(loaded.encode(prompts)[0], encoder.eval().encode(prompts)[0])


def test_builtin_encoder_needs_a_tokenizer():
    with pytest.raises(InvalidInputError, match="no tokenizer"):
        TextEncoder(TextEncoderConfig.from_preset("tiny")).encode(["a ball"])


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    """A tiny random T5 encoder and a word-level tokenizer, saved as Hugging Face writes them."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["<pad>", "</s>", "<unk>"] + sorted(set(" ".join(CAPTIONS).split()))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    path = tmp_path_factory.mktemp("t5")
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(path)
    config = transformers.T5Config(
        vocab_size=len(words),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    transformers.T5EncoderModel(config).save_pretrained(path)
    return path


def test_hf_encoder_loads_locally_frozen_and_caches(tiny_t5):
    encoder = HFTextEncoder(tiny_t5, max_length=16)
    assert encoder.dim == 16
    assert not any(p.requires_grad for p in encoder.model.parameters())
    calls = []
    encoder.model.register_forward_hook(lambda module, args, output: calls.append(1))

    prompts = ["a red ball rolls", "", "two balls collide on a white floor"]
    embeddings, mask = encoder.encode(prompts)
    assert len(calls) == 1
    assert embeddings.shape == (3, 8, 16)  # longest: 7 words + </s>
    assert mask.sum(1).tolist() == [5, 1, 8]
    assert not embeddings.requires_grad
    assert (embeddings[~mask] == 0).all()

    again, mask_again = encoder.encode(list(reversed(prompts)))
    assert len(calls) == 1  # every prompt was cached: the model did not run
    assert torch.equal(again.flip(0), embeddings) and torch.equal(mask_again.flip(0), mask)

    # Cached values are what the model gives for the prompt on its own.
    fresh = HFTextEncoder(tiny_t5, max_length=16).encode(prompts[:1])[0]
    assert torch.allclose(fresh[0], embeddings[0, :5], atol=1e-5)


def test_hf_encoder_errors(tmp_path, tiny_t5):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        HFTextEncoder(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="list of prompts"):
        HFTextEncoder(tiny_t5).encode("one string")


def test_a_model_directory_with_a_hf_encoder_carries_it_and_moves_as_one(tiny_t5, tmp_path):
    import json
    import shutil

    from kinetoscope.dit import DiT, DiTConfig
    from kinetoscope.model_dir import save_model_dir
    from kinetoscope.pipeline import Pipeline
    from kinetoscope.vae import CausalVAE, VAEConfig

    torch.manual_seed(0)
    vae = CausalVAE(VAEConfig.from_preset("tiny"))
    dit = DiT(DiTConfig.from_preset("tiny", text_dim=16))
    save_model_dir(tmp_path / "made", vae=vae, dit=dit, flow={}, name="hf-model", hf_text_encoder=tiny_t5)
    index = json.loads((tmp_path / "made" / "model_index.json").read_text())
    assert index["text_encoder_path"] == "text_encoder" and index["model_id"].startswith("hf-model-")
    assert str(tmp_path) not in (tmp_path / "made" / "model_index.json").read_text()  # no path outside it

    shutil.move(tmp_path / "made", tmp_path / "moved")
    pipe = Pipeline.from_pretrained(tmp_path / "moved")
    assert pipe.text_encoder.path == tmp_path / "moved" / "text_encoder" and pipe.model_id == index["model_id"]
    shutil.copytree(tmp_path / "moved", tmp_path / "copy")
    shutil.rmtree(tmp_path / "moved")
    # ... and what it saves loads again, with the same weights and the encoder inside.
    Pipeline.from_pretrained(tmp_path / "copy").save_pretrained(tmp_path / "saved")
    again = Pipeline.from_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "text_encoder" / "config.json").is_file()
    assert all(torch.equal(a, b) for a, b in zip(again.dit.state_dict().values(), dit.state_dict().values()))
    prompts = ["a red ball rolls"]
    assert torch.equal(again.text_encoder.encode(prompts)[0], HFTextEncoder(tiny_t5).encode(prompts)[0])
