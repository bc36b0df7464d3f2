"""AxFormer removal on a tiny real BERT (random weights, small config): exact and really smaller."""

import copy

import pytest
import torch
from transformers import BertConfig, BertModel

from autotradeoff.cost import count_flops, model_size
from autotradeoff.models.bert import (
    drop_attention,
    drop_ffn,
    keep_ffn_neurons,
    prune_heads,
    topk_probabilities,
    use_topk_attention,
)


@pytest.fixture
def bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    return BertModel(config).eval()


@pytest.fixture
def batch():
    ids = torch.randint(0, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0  # one padded sequence, so masking is exercised
    return {"input_ids": ids, "attention_mask": mask}


def out(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state


def test_pruned_heads_equal_zeroed_heads_and_remove_parameters(bert, batch):
    zeroed = copy.deepcopy(bert)
    value = zeroed.encoder.layer[0].attention.self.value
    with torch.no_grad():  # heads 1 and 3 (8 dims each) contribute nothing when their values are zero
        for h in (1, 3):
            value.weight[h * 8:(h + 1) * 8] = 0
            value.bias[h * 8:(h + 1) * 8] = 0
    before = model_size(bert)["params"]
    prune_heads(bert.encoder.layer[0].attention, [1, 3])
    assert torch.allclose(out(bert, batch), out(zeroed, batch), atol=1e-5)
    assert before - model_size(bert)["params"] == 3 * (16 * 32 + 16) + 16 * 32
    with pytest.raises(ValueError, match="leave one"):
        prune_heads(bert.encoder.layer[1].attention, [0, 1, 2, 3])


def test_kept_ffn_neurons_equal_zeroed_neurons(bert, batch):
    zeroed = copy.deepcopy(bert)
    dense = zeroed.encoder.layer[1].intermediate.dense
    with torch.no_grad():  # GELU(0) = 0: a zeroed neuron adds nothing
        dense.weight[32:] = 0
        dense.bias[32:] = 0
    keep_ffn_neurons(bert.encoder.layer[1], range(32))
    assert torch.allclose(out(bert, batch), out(zeroed, batch), atol=1e-5)
    assert bert.encoder.layer[1].intermediate.dense.out_features == 32


def test_dropped_blocks_are_gone_and_cost_less(bert, batch):
    flops_before = count_flops(lambda: bert(**batch))
    params_before = model_size(bert)["params"]
    layer = bert.encoder.layer[1]
    attention_output = {}
    layer.attention.register_forward_hook(lambda m, i, o: attention_output.update(x=o[0]))
    reference = copy.deepcopy(layer.output.LayerNorm)
    drop_ffn(layer)
    result = out(bert, batch)
    assert torch.allclose(result, reference(attention_output["x"]), atol=1e-6)  # output = LayerNorm(residual)
    drop_attention(bert.encoder.layer[0])
    out(bert, batch)
    assert model_size(bert)["params"] == params_before - (32 * 64 + 64 + 64 * 32 + 32) - (4 * (32 * 32 + 32))
    assert count_flops(lambda: bert(**batch)) < 0.75 * flops_before


def test_topk_attention_keeps_k_largest_and_equals_softmax_when_k_covers_all(bert, batch):
    probs = topk_probabilities(torch.randn(2, 4, 5, 7), 3)
    assert ((probs > 0).sum(-1) == 3).all()
    full = out(bert, batch)
    use_topk_attention(bert.encoder.layer[0], 12)
    assert torch.allclose(out(bert, batch), full, atol=1e-5)  # k >= sequence length: plain attention
    use_topk_attention(bert.encoder.layer[1], 2)
    assert not torch.allclose(out(bert, batch), full, atol=1e-3)
