"""Growing a trained transformer deeper: it starts as exactly the trained model and trains on."""

import pytest
import torch

from kinetoscope.dit import DiT, DiTConfig, pack
from kinetoscope.dit.growth import block_sources, deepen, grown_config
from kinetoscope.errors import ConfigError
from test_dit import assert_close, mixed_latents, randomized, text_inputs


def _inputs(config):
    batch = pack(mixed_latents(), config.patch_size)
    text, mask = text_inputs([3, 6, 1], config.text_dim)
    t = batch.per_sample(torch.tensor([0.2, 0.7, 0.9]))
    t[12:16] = 0.0  # a given frame: tokens of two times in one sample
    return batch, t, text, mask


def test_copies_are_spread_evenly_each_after_the_block_it_copies():
    assert block_sources(2, 4) == [(0, False), (0, True), (1, False), (1, True)]
    assert block_sources(6, 8) == [(0, False), (1, False), (2, False), (2, True), (3, False), (4, False),
                                   (5, False), (5, True)]
    assert block_sources(3, 3) == [(0, False), (1, False), (2, False)]
    assert [s for s, _ in block_sources(2, 7)] == [0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("text_attention", ["cross", "joint"])
@pytest.mark.parametrize("depth", [3, 4])
def test_the_deeper_model_computes_exactly_what_the_trained_one_did(text_attention, depth):
    config = DiTConfig.from_preset("tiny", text_attention=text_attention)
    torch.manual_seed(0)
    model = randomized(DiT(config), seed=3)  # trained-looking: non-zero gates in every block
    grown = deepen(model, depth)
    assert grown.config.depth == depth and len(grown.blocks) == depth
    inputs = _inputs(config)
    with torch.no_grad():
        assert torch.equal(grown(*inputs), model(*inputs))
    # Every block is a trained one, in order; a copy keeps its source's inputs and starts with zero outputs.
    for block, (source, is_copy) in zip(grown.blocks, block_sources(2, depth)):
        assert torch.equal(block.video.qkv.weight, model.blocks[source].video.qkv.weight)
        assert torch.equal(block.video.modulation, model.blocks[source].video.modulation)
        assert (block.video.out.weight.abs().sum() == 0) == is_copy


def test_a_fresh_block_would_not_be_the_identity_but_a_copy_learns():
    """The reason for copies with zero outputs: the shared time projection gives every block gates."""
    config = DiTConfig.from_preset("tiny")
    model = randomized(DiT(config), seed=3)
    inputs = _inputs(config)
    fresh = DiT(config.replace(depth=3))
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("blocks.1")},
                          strict=False)
    fresh.blocks[2].load_state_dict(model.blocks[1].state_dict())
    with torch.no_grad():
        assert not torch.allclose(fresh(*inputs), model(*inputs), atol=1e-3)

    grown = deepen(model, 3)
    batch, t, text, mask = inputs
    grown(batch, t, text, mask).sub(batch.tokens).square().mean().backward()
    copy = grown.blocks[1]
    for layer in (copy.video.out, copy.video.ffn[2], copy.cross.out):
        assert layer.weight.grad.abs().sum() > 0  # the zero outputs are where learning starts


def test_growing_keeps_dtype_and_refuses_to_shrink():
    model = randomized(DiT(DiTConfig.from_preset("tiny"))).to(torch.bfloat16)
    grown = deepen(model, 4)
    assert next(grown.parameters()).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="cannot shrink"):
        deepen(model, 1)


def test_a_fine_tune_keeps_the_sources_shape_except_a_greater_depth():
    source = DiTConfig.from_preset("tiny")
    assert grown_config(source, {}) == source
    assert grown_config(source, {"depth": 5, "width": 64, "patch_size": [1, 2, 2]}).depth == 5
    with pytest.raises(ConfigError, match=r"task.model.width is 96 but task.init_from's transformer has 64"):
        grown_config(source, {"width": 96})
    with pytest.raises(ConfigError, match="may grow, not shrink"):
        grown_config(source, {"depth": 1})
    with pytest.raises(ConfigError, match="has no field 'dept'"):
        grown_config(source, {"dept": 4})
