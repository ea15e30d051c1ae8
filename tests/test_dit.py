"""Spacetime patches, packing, RoPE, packed attention, the fused ops and the DiT."""

import math

import pytest
import torch
import torch.nn.functional as F

from kinetoscope.dit import DiT, DiTConfig, ops, pack, packed_attention, patchify, unpatchify
from kinetoscope.dit.rope import apply_rope, rope_frequencies
from kinetoscope.errors import ConfigError, InvalidInputError

C = 4  # latent channels of the tiny preset


def assert_close(actual, expected, atol=1e-5, rtol=1e-5, msg=""):
    # torch.testing.assert_close imports torch.distributed (seconds); allclose says the same here.
    assert actual.shape == expected.shape, f"{msg} shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    error = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"{msg} max abs error {error}"


def mixed_latents(generator=None):
    """An image, a 17-frame video (5 latent frames after the VAE's 4x time compression) and an odd aspect."""
    g = generator or torch.Generator().manual_seed(0)
    return [
        torch.randn(C, 1, 6, 8, generator=g),
        torch.randn(C, 5, 4, 4, generator=g),
        torch.randn(C, 2, 2, 10, generator=g),
    ]


def randomized(model: DiT, seed: int = 0) -> DiT:
    """Give the zero-initialised (adaLN-Zero) weights random values, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def text_inputs(lengths, dim, max_len=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(len(lengths), max_len, dim, generator=g)
    mask = torch.arange(max_len)[None] < torch.tensor(lengths)[:, None]
    return text, mask


# --- patches and packing --------------------------------------------------------------


@pytest.mark.parametrize("patch", [(1, 2, 2), (1, 1, 1), (2, 2, 1)])
def test_patchify_unpatchify_are_exact_inverses(patch):
    latent = torch.randn(C, 4, 6, 8)
    tokens, grid = patchify(latent, patch)
    assert grid == (4 // patch[0], 6 // patch[1], 8 // patch[2])
    assert tokens.shape == (math.prod(grid), C * math.prod(patch))
    assert torch.equal(unpatchify(tokens, grid, C, patch), latent)


def test_patch_features_are_channel_then_time_height_width():
    latent = torch.arange(C * 1 * 2 * 2, dtype=torch.float32).reshape(C, 1, 2, 2)
    tokens, _ = patchify(latent, (1, 2, 2))
    assert torch.equal(tokens[0], latent.reshape(-1))  # one token = the whole (C, 1, 2, 2) patch, flattened


def test_pack_unpack_mixed_sizes_is_exact():
    latents = mixed_latents()
    batch = pack(latents, (1, 2, 2))
    assert batch.grids == ((1, 3, 4), (5, 2, 2), (2, 1, 5))
    assert batch.seq_lens == (12, 20, 10)
    assert batch.tokens.shape == (42, C * 4)
    assert batch.cu_seqlens.tolist() == [0, 12, 32, 42]
    assert batch.sample_index.tolist() == [0] * 12 + [1] * 20 + [2] * 10
    # Integer (t, h, w) positions restart at 0 for each sample and cover its grid.
    video = batch.positions[12:32]
    assert batch.positions.dtype == torch.int64
    assert video[:, 0].tolist() == [t for t in range(5) for _ in range(4)]
    assert video.max(0).values.tolist() == [4, 1, 1]
    assert batch.positions[:12, 0].eq(0).all()
    for original, restored in zip(latents, batch.unpack()):
        assert torch.equal(original, restored)
    doubled = batch.unpack(batch.tokens * 2)
    assert torch.equal(doubled[1], latents[1] * 2)


def test_pack_takes_a_batched_tensor():
    latents = torch.randn(3, C, 2, 4, 4)
    batch = pack(latents, (1, 2, 2))
    assert batch.seq_lens == (8, 8, 8)
    assert torch.equal(torch.stack(batch.unpack()), latents)


def test_frames_to_tokens_marks_whole_temporal_patches():
    batch = pack([torch.randn(C, 4, 2, 2), torch.randn(C, 2, 2, 4)], (2, 2, 2))
    masks = [torch.tensor([True, True, True, False]), torch.tensor([True, True])]
    tokens = batch.frames_to_tokens(masks)
    # sample 0: temporal patches {0,1} (known) and {2,3} (half known -> not known), 1 token each
    assert tokens.tolist() == [True, False, True, True]
    per_sample = batch.per_sample(torch.tensor([0.5, 0.25]))
    assert per_sample.tolist() == [0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize(
    "latents, message",
    [
        ([torch.randn(C, 1, 5, 4)], "divisible"),
        ([torch.randn(C, 4, 4)], "4 dimensions"),
        ([torch.randn(C, 1, 4, 4), torch.randn(C + 1, 1, 4, 4)], "channels"),
        ([], "empty"),
    ],
)
def test_pack_rejects_bad_latents(latents, message):
    with pytest.raises(InvalidInputError, match=message):
        pack(latents, (1, 2, 2))


# --- RoPE and attention ---------------------------------------------------------------


def test_rope_scores_depend_only_on_position_difference():
    g = torch.Generator().manual_seed(0)
    head_dim = 24
    q = torch.randn(1, 1, head_dim, generator=g)
    k = torch.randn(1, 1, head_dim, generator=g)

    def score(pq, pk):
        fq = rope_frequencies(torch.tensor([pq]), head_dim)
        fk = rope_frequencies(torch.tensor([pk]), head_dim)
        return (apply_rope(q, fq) * apply_rope(k, fk)).sum().item()

    base = score((1, 2, 3), (4, 0, 7))
    for shift in [(5, 0, 0), (0, 9, 0), (0, 0, 11), (30, 17, 250)]:
        moved = score(tuple(a + s for a, s in zip((1, 2, 3), shift)), tuple(a + s for a, s in zip((4, 0, 7), shift)))
        assert moved == pytest.approx(base, abs=1e-4)
    # ...and does depend on the difference along every axis.
    for other in [(5, 0, 7), (4, 1, 7), (4, 0, 8)]:
        assert abs(score((1, 2, 3), other) - base) > 1e-3
    # Rotations keep norms.
    f = rope_frequencies(torch.tensor([[7, 8, 9]]), head_dim)
    assert apply_rope(q, f).norm().item() == pytest.approx(q.norm().item(), rel=1e-6)


def dense_reference(q, k, v, q_lens, kv_lens):
    """Full attention with an explicit block-diagonal mask; rows with no keys give zeros."""
    q_ids = torch.repeat_interleave(torch.arange(len(q_lens)), torch.tensor(q_lens))
    k_ids = torch.repeat_interleave(torch.arange(len(kv_lens)), torch.tensor(kv_lens))
    allowed = q_ids[:, None] == k_ids[None]
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)
    return torch.einsum("hqk,khd->qhd", weights, v)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")  # the CPU runs it unfused
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_packed_attention_keeps_samples_apart(backend):
    g = torch.Generator().manual_seed(0)
    q_lens, kv_lens = [5, 9, 3], [4, 0, 6]  # the middle sample has no keys (no text tokens)
    q = torch.randn(sum(q_lens), 2, 16, generator=g)
    k = torch.randn(sum(kv_lens), 2, 16, generator=g)
    v = torch.randn(sum(kv_lens), 2, 16, generator=g)
    expected = dense_reference(q, k, v, q_lens, kv_lens)
    assert_close(packed_attention(q, k, v, q_lens, kv_lens, backend=backend), expected, atol=1e-5, rtol=1e-5)
    selfish = packed_attention(q, q, q, q_lens, backend=backend)
    assert_close(selfish, dense_reference(q, q, q, q_lens, q_lens), atol=1e-5, rtol=1e-5)


def test_equal_segments_batched_into_one_call_match_the_reference_with_gradients():
    g = torch.Generator().manual_seed(1)
    q_lens, kv_lens = [6, 6, 3, 6, 3, 2], [4, 4, 5, 4, 0, 0]  # groups (6, 4) x3, (3, 5), (3, 0), (2, 0)
    q = torch.randn(sum(q_lens), 2, 8, generator=g, requires_grad=True)
    k = torch.randn(sum(kv_lens), 2, 8, generator=g, requires_grad=True)
    v = torch.randn(sum(kv_lens), 2, 8, generator=g, requires_grad=True)
    out = packed_attention(q, k, v, q_lens, kv_lens, backend="sdpa")
    expected = dense_reference(q, k, v, q_lens, kv_lens)
    assert_close(out, expected, atol=1e-5, rtol=1e-5)
    w = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * w).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * w).sum(), (q, k, v))
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_packed_attention_rejects_mismatched_segments():
    q = torch.randn(5, 2, 8)
    with pytest.raises(InvalidInputError, match="Segments"):
        packed_attention(q, q, q, [2, 2])
    with pytest.raises(InvalidInputError, match="backend"):
        packed_attention(q, q, q, [5], backend="magic")


# --- fused ops against plain autograd -------------------------------------------------


def _compare(fused, reference, inputs, atol=1e-4):
    """Outputs and gradients of every floating input must match."""
    a = [t.clone().requires_grad_() for t in inputs]
    b = [t.clone().requires_grad_() for t in inputs]
    out_a, out_b = fused(*a), reference(*b)
    out_a = out_a if isinstance(out_a, tuple) else (out_a,)
    out_b = out_b if isinstance(out_b, tuple) else (out_b,)
    weights = [torch.randn_like(o) for o in out_a]
    sum((o * w).sum() for o, w in zip(out_a, weights)).backward()
    sum((o * w).sum() for o, w in zip(out_b, weights)).backward()
    for x, y in zip(out_a, out_b):
        assert_close(x, y, atol=atol, rtol=1e-4)
    for x, y in zip(a, b):
        assert_close(x.grad, y.grad, atol=atol, rtol=1e-4)


N, D, EPS = 40, 24, 1e-6


def _modulated(x, mult, add, index):
    normed = F.layer_norm(x, (D,), eps=EPS)
    return normed * ops.rows(mult, index) + ops.rows(add, index)


@pytest.mark.parametrize("index", [None, torch.arange(N) % 3], ids=["shared-row", "per-token-rows"])
def test_fused_norm_ops_match_autograd(index):
    torch.manual_seed(0)
    rows = 1 if index is None else 3
    x, mult, add = torch.randn(N, D), torch.randn(rows, D), torch.randn(rows, D)
    w1, b1, w2, b2 = torch.randn(36, D), torch.randn(36), torch.randn(D, 36), torch.randn(D)
    _compare(
        lambda x, m, a, w, b: ops.norm_linear(x, m, a, index, w, b, EPS),
        lambda x, m, a, w, b: F.linear(_modulated(x, m, a, index), w, b),
        [x, mult, add, w1, b1],
    )
    _compare(
        lambda x, m, a, w1, b1, w2, b2: ops.norm_mlp(x, m, a, index, w1, b1, w2, b2, EPS),
        lambda x, m, a, w1, b1, w2, b2: F.linear(
            F.gelu(F.linear(_modulated(x, m, a, index), w1, b1), approximate="tanh"), w2, b2
        ),
        [x, mult, add, w1, b1, w2, b2],
    )
    y, gate = torch.randn(N, D), torch.randn(rows, D)
    _compare(
        lambda x, y, g: ops.gated_residual(x, y, g, index),
        lambda x, y, g: x + y * ops.rows(g, index),
        [x, y, gate],
    )


@pytest.mark.parametrize("with_rope", [True, False])
def test_normalize_heads_matches_rms_norm_and_rope(with_rope):
    torch.manual_seed(0)
    heads, head_dim = 3, 8
    qkv, weight = torch.randn(N, 3, heads, head_dim), torch.randn(2, heads * head_dim)
    freqs = rope_frequencies(torch.randint(0, 20, (N, 3)), head_dim) if with_rope else None

    def reference(qkv, weight):
        out = []
        for j in range(3):
            part = qkv[:, j]
            if j < 2:
                part = F.rms_norm(part.flatten(1), (heads * head_dim,), weight[j], EPS).view(N, heads, head_dim)
                part = apply_rope(part, freqs) if with_rope else part
            out.append(part)
        return tuple(out)

    _compare(lambda qkv, w: ops.normalize_heads(qkv, w, freqs, EPS), reference, [qkv, weight])


def test_linear_matches_torch():
    torch.manual_seed(0)
    layer = ops.Linear(D, 36)
    x = torch.randn(N, D)
    _compare(
        lambda x, w, b: ops._Linear.apply(x, w, b),
        lambda x, w, b: F.linear(x, w, b),
        [x, layer.weight.detach(), layer.bias.detach()],
    )


# --- the model ------------------------------------------------------------------------


@pytest.mark.parametrize("text_attention", ["cross", "joint"])
def test_packed_forward_equals_each_sample_alone(text_attention):
    config = DiTConfig.from_preset("tiny", text_attention=text_attention)
    torch.manual_seed(0)
    model = randomized(DiT(config))
    latents = mixed_latents()  # an image, a 17-frame video and an odd aspect ratio
    batch = pack(latents, config.patch_size)
    lengths = [3, 6, 1]
    text, mask = text_inputs(lengths, config.text_dim)
    t = batch.per_sample(torch.tensor([0.2, 0.7, 0.9]))
    t[12:16] = 0.0  # the video's first latent frame is given: its own time is 0
    packed = model(batch, t, text, mask)
    assert packed.shape == batch.tokens.shape

    start = 0
    for i, latent in enumerate(latents):
        alone = pack([latent], config.patch_size)
        n = alone.seq_lens[0]
        out = model(alone, t[start : start + n], text[i : i + 1, : lengths[i]], mask[i : i + 1, : lengths[i]])
        assert_close(packed[start : start + n], out, atol=1e-5, rtol=1e-5)
        start += n


def test_packed_gradients_equal_sum_of_per_sample_gradients():
    config = DiTConfig.from_preset("tiny")
    model = randomized(DiT(config))
    latents = mixed_latents()[:2]
    text, mask = text_inputs([2, 4], config.text_dim)
    batch = pack(latents, config.patch_size)
    model(batch, batch.per_sample(torch.tensor([0.3, 0.6])), text, mask).square().sum().backward()
    packed = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for i, (latent, t) in enumerate(zip(latents, [0.3, 0.6])):
        alone = pack([latent], config.patch_size)
        model(alone, torch.full((alone.seq_lens[0],), t), text[i : i + 1], mask[i : i + 1]).square().sum().backward()
    for name, p in model.named_parameters():
        assert_close(packed[name], p.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_output_is_zero_at_init_and_learns():
    config = DiTConfig.from_preset("tiny")
    model = DiT(config)
    batch = pack(mixed_latents(), config.patch_size)
    text, mask = text_inputs([2, 3, 4], config.text_dim)
    out = model(batch, torch.rand(batch.tokens.shape[0]), text, mask)
    assert torch.equal(out, torch.zeros_like(out))
    out.sub(batch.tokens).square().mean().backward()
    assert model.head.proj.weight.grad.abs().sum() > 0


def test_time_enters_only_through_modulation():
    config = DiTConfig.from_preset("tiny")
    model = randomized(DiT(config))
    batch = pack([torch.randn(C, 3, 4, 4)], config.patch_size)
    text, mask = text_inputs([4], config.text_dim)
    n = batch.tokens.shape[0]
    given_first = torch.ones(n)
    given_first[:4] = 0.0  # frame 0 given (t = 0), frames 1-2 noisy (t = 1)
    outputs = {name: model(batch, t, text, mask) for name, t in [("mixed", given_first), ("ones", torch.ones(n))]}
    # Per-token time matters: changing frame 0's time changes the output (frame 0 most of all).
    change = (outputs["mixed"] - outputs["ones"]).abs().mean(-1)
    assert change.min() > 0
    # With the time embedding made constant, time has no other way in: outputs coincide.
    with torch.no_grad():
        model.time_embed.mlp[0].weight.zero_()
    assert_close(model(batch, given_first, text, mask), model(batch, torch.ones(n), text, mask))


def test_save_and_load_give_the_same_model(tmp_path):
    config = DiTConfig.from_preset("tiny", text_attention="joint")
    model = randomized(DiT(config))
    model.save_pretrained(tmp_path / "dit")
    loaded = DiT.from_pretrained(tmp_path / "dit")
    assert loaded.config == config
    batch = pack(mixed_latents()[:1], config.patch_size)
    text, mask = text_inputs([3], config.text_dim)
    t = torch.full((batch.tokens.shape[0],), 0.5)
    assert torch.equal(model(batch, t, text, mask), loaded(batch, t, text, mask))


def test_forward_rejects_mismatched_inputs():
    config = DiTConfig.from_preset("tiny")
    model = DiT(config)
    batch = pack([torch.randn(C, 1, 4, 4)], config.patch_size)
    text, mask = text_inputs([2], config.text_dim)
    t = torch.zeros(batch.tokens.shape[0])
    with pytest.raises(InvalidInputError, match="features"):
        model(pack([torch.randn(C + 1, 1, 4, 4)], config.patch_size), t, text, mask)
    with pytest.raises(InvalidInputError, match="one value per token"):
        model(batch, t[:-1], text, mask)
    with pytest.raises(InvalidInputError, match="Text embeddings"):
        model(batch, t, torch.randn(1, 6, config.text_dim + 1), mask)
    with pytest.raises(InvalidInputError, match="text mask"):
        model(batch, t, text, mask[:, :2])


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="text_attention"):
        DiTConfig(text_attention="sideways")
    with pytest.raises(ConfigError, match="multiple of heads"):
        DiTConfig(width=100, heads=3)
    with pytest.raises(ConfigError, match="no preset"):
        DiTConfig.from_preset("huge")


def test_preset_parameter_counts():
    with torch.device("meta"):  # count without allocating
        counts = {name: DiT(DiTConfig.from_preset(name)).num_parameters for name in ("tiny", "s", "b", "1.3b")}
    print("DiT parameters:", {k: f"{v / 1e6:.2f}M" for k, v in counts.items()})
    assert counts["tiny"] < 1_000_000
    assert abs(counts["s"] / 22e6 - 1) <= 0.15
    assert abs(counts["b"] / 90e6 - 1) <= 0.15
    assert abs(counts["1.3b"] / 1.3e9 - 1) <= 0.10
