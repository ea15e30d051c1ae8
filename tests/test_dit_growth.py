"""Growing a trained transformer deeper: it starts as exactly the trained model and trains on."""

import pytest
import torch

from kinetoscope.dit import DiT, DiTConfig, pack
from kinetoscope.dit.growth import add_frame_position, block_sources, deepen, grown_config, refine_patch
from kinetoscope.dit.model import FramePosition
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


def test_frame_positions_added_to_a_trained_model_start_at_zero_learn_and_save(tmp_path):
    config = DiTConfig.from_preset("tiny")
    model = randomized(DiT(config), seed=3)
    placed = add_frame_position(model)
    assert placed.config.frame_position and not model.config.frame_position
    inputs = _inputs(config)
    with torch.no_grad():
        assert torch.equal(placed(*inputs), model(*inputs))
    batch, t, text, mask = inputs
    placed(batch, t, text, mask).sub(batch.tokens).square().mean().backward()
    assert placed.frame_embed.proj.weight.grad.abs().sum() > 0
    placed.save_pretrained(tmp_path)
    loaded = DiT.from_pretrained(tmp_path)
    assert loaded.config.frame_position and torch.equal(loaded.frame_embed.proj.weight, placed.frame_embed.proj.weight)
    assert grown_config(config, {"frame_position": True}).frame_position
    with pytest.raises(ConfigError, match="cannot remove"):
        grown_config(placed.config, {"frame_position": False})


def test_a_frame_position_is_a_fraction_of_its_own_frame():
    torch.manual_seed(0)
    embed = FramePosition(8)
    torch.nn.init.normal_(embed.proj.weight)
    batch = pack([torch.zeros(4, 1, 2, 2), torch.zeros(4, 1, 6, 6)], (1, 1, 1))
    out = embed(batch)
    small, large = out[:4], out[4:].unflatten(0, (6, 6))
    assert torch.allclose(small[0], large[1, 1], atol=1e-5)  # the top-left quarter's centre in both frames
    assert torch.allclose(small[3], large[4, 4], atol=1e-5)
    assert not torch.allclose(small[0], small[3], atol=1e-2)


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


def test_a_refined_patch_computes_what_the_coarse_model_did_on_a_latent_smooth_across_its_patches():
    """Each 1x2x2 token becomes four 1x1x1 tokens: on a latent constant over every coarse patch, the
    fine model's output averaged over each patch is the coarse model's mean output there."""
    config = DiTConfig.from_preset("tiny")
    model = randomized(DiT(config), seed=3)
    fine = refine_patch(model, (1, 1, 1))
    assert fine.config.patch_size == (1, 1, 1) and fine.config.position_scale == (1.0, 0.5, 0.5)
    assert fine.config.replace(patch_size=(1, 2, 2), position_scale=(1.0, 1.0, 1.0)) == config
    g = torch.Generator().manual_seed(0)
    coarse_latent = torch.randn(config.in_channels, 3, 4, 4, generator=g)
    latent = coarse_latent.repeat_interleave(2, 2).repeat_interleave(2, 3)
    text, mask = text_inputs([4], config.text_dim)
    outputs = []
    for net in (model, fine):
        batch = pack([latent], net.config.patch_size)
        with torch.no_grad():
            velocity = batch.unpack(net(batch, batch.per_sample(torch.tensor([0.6])), text, mask))[0]
        outputs.append(torch.nn.functional.avg_pool2d(velocity.flatten(0, 1), 2))
    coarse, refined = outputs
    assert coarse.abs().mean() > 0.1  # a trained-looking model says something
    assert (refined - coarse).norm() < 0.02 * coarse.norm()
    # The weights behind it: a fine token's embedding sums the coarse patch's, its output is their mean.
    assert torch.allclose(fine.patch_embed.weight, model.patch_embed.weight.unflatten(1, (4, 2, 2)).sum((2, 3)))
    assert torch.allclose(fine.head.proj.bias, model.head.proj.bias.unflatten(0, (4, 2, 2)).mean((1, 2)))
    assert torch.equal(fine.blocks[1].video.qkv.weight, model.blocks[1].video.qkv.weight)


def test_a_patch_may_only_get_finer_by_a_divisor():
    source = DiTConfig.from_preset("tiny")
    assert grown_config(source, {"patch_size": [1, 1, 1], "depth": 3}) == source.replace(
        patch_size=(1, 1, 1), position_scale=(1.0, 0.5, 0.5), depth=3
    )
    for patch in ([1, 4, 4], [1, 3, 3], [2, 2, 2]):
        with pytest.raises(ConfigError, match="a patch may only get finer, by a divisor of each axis"):
            grown_config(source, {"patch_size": patch})
    with pytest.raises(ConfigError, match="position_scale"):
        DiTConfig.from_preset("tiny", position_scale=(1.0, 0.0, 1.0))
