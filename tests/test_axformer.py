"""AxFormer plans on a tiny real BERT classifier: the knob-driven sites, the paper's greedy pass, and
the saved model directory that loads with from_pretrained (with and without trust_remote_code)."""

import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from autotradeoff.apply import save_model_dir
from autotradeoff.cost import count_flops, model_size
from autotradeoff.errors import TrialFailed
from autotradeoff.tasks.glue import GlueTask
from autotradeoff.techniques.axbert import AxBertForSequenceClassification
from autotradeoff.techniques.axformer import approximate, greedy_plan, is_off, plan_from_sites

DEFAULTS = {name: knob.default for name, knob in GlueTask("sst2").knobs.items()}


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2, attn_implementation="eager")
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def inputs():
    torch.manual_seed(1)
    return {"input_ids": torch.randint(0, 100, (8, 10)), "labels": torch.randint(0, 2, (8,))}


def logits(model, inputs):
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"]).logits


def test_defaults_are_off_and_the_full_plan_changes_nothing(classifier, inputs):
    assert is_off(DEFAULTS)
    plan = plan_from_sites(classifier.bert, DEFAULTS)
    assert torch.allclose(logits(approximate(classifier, plan), inputs), logits(classifier, inputs))


def test_sites_follow_the_papers_order_and_really_shrink_the_model(classifier, inputs):
    config = {**DEFAULTS, "hard_attn_layers": 2, "hard_attn_k": 3, "drop_ffn_layers": 1, "drop_attn_layers": 1,
              "heads_kept": 0.5, "ffn_kept": 0.5, "ffn_group_size": 16}
    plan = plan_from_sites(classifier.bert, config)
    assert [s["topk"] for s in plan] == [3, 3, 0, 0]  # bottom-up
    assert [s["attention"] for s in plan] == ["keep"] * 3 + ["drop"]  # top-down
    assert [s["ffn"] for s in plan] == ["keep"] * 3 + ["drop"]
    assert all(len(s["heads"]) == 2 and len(s["ffn_neurons"]) == 32 for s in plan[:3])
    small = approximate(classifier, plan)
    assert model_size(small)["params"] < 0.8 * model_size(classifier)["params"]
    assert count_flops(lambda: logits(small, inputs)) < 0.6 * count_flops(lambda: logits(classifier, inputs))
    assert model_size(classifier)["params"] == model_size(copy.deepcopy(classifier))["params"]  # input untouched


def test_too_many_layers_fail_the_trial_with_a_reason(classifier):
    with pytest.raises(TrialFailed, match="drop_ffn_layers=5 exceeds the model's 4 layers"):
        plan_from_sites(classifier.bert, {**DEFAULTS, "drop_ffn_layers": 5})


def test_greedy_pass_accepts_only_changes_that_pass_the_test(classifier, inputs):
    def losses(model):
        with torch.no_grad():
            out = model(input_ids=inputs["input_ids"]).logits
        return torch.nn.functional.cross_entropy(out, inputs["labels"], reduction="none")

    base = losses(classifier)
    config = {**DEFAULTS, "hard_attn_k": 3, "ffn_group_size": 32, "accept_frac": 0.3, "fallback_tol": 1.3}
    plan, passes = greedy_plan(classifier, losses, config)
    assert passes > 4 * 3  # every layer tried for top-K, FFN and attention at least
    full = plan_from_sites(classifier.bert, DEFAULTS)
    chosen = losses(approximate(classifier, plan))
    assert chosen.mean() < base.mean() if plan != full else torch.equal(chosen, base)
    strict, _ = greedy_plan(classifier, losses, {**config, "accept_frac": 1.0})  # "more than 100%": never
    assert strict == full


def test_model_directory_reloads_with_the_same_outputs(classifier, inputs, tmp_path):
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(95)]]))
    plan = plan_from_sites(classifier.bert, {**DEFAULTS, "hard_attn_layers": 1, "hard_attn_k": 4,
                                             "drop_ffn_layers": 1, "heads_kept": 0.5, "ffn_group_size": 16, "ffn_kept": 0.5})
    small = approximate(classifier, plan)
    expected = logits(small, inputs)
    save_model_dir(small, BertTokenizerFast(str(vocab)), tmp_path / "model", {"task": "sst2"})
    ours = AxBertForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    remote = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", trust_remote_code=True).eval()
    for loaded in (ours, remote):
        assert torch.allclose(logits(loaded, inputs), expected, atol=1e-6)
        assert model_size(loaded)["params"] == model_size(small)["params"]
