"""AxFormer plans on a tiny real BERT classifier: the knob-driven sites, the paper's greedy pass, and
the saved model directory that loads with from_pretrained (with and without trust_remote_code)."""

import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from autotradeoff.cost import count_flops, model_size
from autotradeoff.front.apply import save_model_dir
from autotradeoff.models.bert import AxBertForSequenceClassification
from autotradeoff.techniques.axformer import (
    AxFormer,
    _greedy_units,
    approximate,
    block_order,
    block_times,
    greedy_plan,
    plan_from_sites,
    plan_knobs,
    taylor_importance,
)

AXFORMER = AxFormer()
DEFAULTS = AXFORMER.off()


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
    assert AXFORMER.is_off(DEFAULTS)
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


def test_more_layers_than_the_model_has_mean_every_layer(classifier):
    assert plan_from_sites(classifier.bert, {**DEFAULTS, "drop_ffn_layers": 48}) == \
        plan_from_sites(classifier.bert, {**DEFAULTS, "drop_ffn_layers": 4})
    assert all(site["ffn"] == "drop" for site in plan_from_sites(classifier.bert, {**DEFAULTS, "drop_ffn_layers": 5}))


def batch_losses(inputs):
    def losses(model):
        with torch.no_grad():
            out = model(input_ids=inputs["input_ids"]).logits
        return torch.nn.functional.cross_entropy(out, inputs["labels"], reduction="none")
    return losses


def gradients_on(inputs):
    def gradients(model, after):
        model.eval()
        for half in (slice(0, 4), slice(4, 8)):  # two batches
            model.zero_grad(set_to_none=True)
            model(input_ids=inputs["input_ids"][half], labels=inputs["labels"][half]).loss.backward()
            after()
        model.zero_grad(set_to_none=True)
        return 0.0
    return gradients


def test_taylor_importance_ranks_heads_by_their_real_effect_on_the_loss(classifier, inputs):
    heads, neurons, _ = taylor_importance(classifier, gradients_on(inputs))
    assert [len(h) for h in heads] == [4] * 4 and [len(n) for n in neurons] == [64] * 4
    losses = batch_losses(inputs)
    base = float(losses(classifier).mean())
    real, estimated = [], []
    for layer in range(4):
        for head in range(4):
            plan = plan_from_sites(classifier.bert, DEFAULTS)
            plan[layer]["heads"] = [h for h in range(4) if h != head]
            real.append(abs(float(losses(approximate(classifier, plan)).mean()) - base))
            estimated.append(float(heads[layer][head]))
    rank = lambda xs: [sorted(xs).index(x) for x in xs]  # noqa: E731
    agree = sum((a - b) ** 2 for a, b in zip(rank(real), rank(estimated)))
    assert 1 - 6 * agree / (16 * (16 ** 2 - 1)) > 0.5  # Spearman correlation of estimate and real change
    assert all(p.grad is None for p in classifier.parameters())  # no gradients left behind


def test_greedy_pass_keeps_the_validation_loss_within_its_tolerance(classifier, inputs):
    losses = batch_losses(inputs)
    scores = taylor_importance(classifier, gradients_on(inputs))[:2]
    base = float(losses(classifier).mean())
    full = plan_from_sites(classifier.bert, DEFAULTS)
    for tol in (0.05, 0.3):
        config = {**DEFAULTS, "ax_mode": "greedy", "ffn_group_size": 16, "loss_tol": tol}
        plan, passes = greedy_plan(classifier, losses, scores, config)
        assert passes >= 1 + 2 * 4  # the fine-tuned model, then every whole sublayer alone
        assert float(losses(approximate(classifier, plan)).mean()) <= (1 + tol) * base + 1e-6
        assert all(site["heads"] is None or len(site["heads"]) >= 1 for site in plan)
    assert plan != full  # 30% more loss buys some removal
    strict, _ = greedy_plan(classifier, losses, scores, {**config, "loss_tol": 0.0, "accept_frac": 1.0})
    assert bool((losses(approximate(classifier, strict)) <= losses(classifier) + 1e-6).all())  # no sample worse


def test_the_cost_aware_order_takes_free_savings_biggest_first_then_the_least_loss_rise_per_ms():
    effect = {"a": 1.0, "b": 0.9, "c": 1.2, "d": 1.1, "e": 0.95, "f": 0.8}  # mean loss without each block; 1.0 with all
    saved = {"a": 1.0, "b": 0.5, "c": 3.0, "d": 0.4, "e": 2.0, "f": 1.0}
    # free: e (2 ms), then f before a (the same 1 ms, f the lower loss), b; then c: 0.2 / 3 ms, d: 0.1 / 0.4 ms
    assert block_order(effect, 1.0, saved) == ["e", "f", "a", "b", "c", "d"]
    assert sorted(effect, key=effect.get) == ["f", "b", "e", "a", "d", "c"]  # the paper's order, for contrast


def test_block_times_time_every_sublayer_and_identical_layers_share_their_time(classifier, inputs):
    call = lambda model: lambda: model(input_ids=inputs["input_ids"][:1])  # noqa: E731
    times = block_times(classifier, call(classifier), threads=1)
    assert set(times) == {(i, kind) for i in range(4) for kind in ("attention", "ffn")}
    assert all(ms > 0 for ms in times.values())
    assert len({times[i, "attention"] for i in range(4)}) == 1 and len({times[i, "ffn"] for i in range(4)}) == 1
    plan = plan_from_sites(classifier.bert, DEFAULTS)
    plan[0]["heads"] = [0]
    smaller = approximate(classifier, plan)
    times = block_times(smaller, call(smaller), threads=1)
    assert times[0, "attention"] != times[1, "attention"] == times[3, "attention"]  # layer 0 has other shapes now


def test_the_cost_aware_greedy_pass_keeps_the_loss_within_its_tolerance_and_needs_the_times(classifier, inputs):
    losses = batch_losses(inputs)
    scores = taylor_importance(classifier, gradients_on(inputs))[:2]
    base = float(losses(classifier).mean())
    config = {**DEFAULTS, "ax_mode": "greedy", "ffn_group_size": 16, "loss_tol": 0.3, "block_order": "loss_per_ms"}
    with pytest.raises(ValueError, match="block_ms"):
        greedy_plan(classifier, losses, scores, config)
    slow_attention = {(i, kind): 5.0 if kind == "attention" else 0.1 for i in range(4) for kind in ("attention", "ffn")}
    plan, _ = greedy_plan(classifier, losses, scores, config, slow_attention)
    assert float(losses(approximate(classifier, plan)).mean()) <= 1.3 * base + 1e-6

    def priced(model):  # a selection loss that each whole block's removal raises by a known amount
        plan = getattr(model.config, "axformer_plan", None) or []  # the fine-tuned model has none
        rise = sum(0.04 * (s["attention"] == "drop") + 0.03 * (s["ffn"] == "drop") for s in plan)
        return torch.full((8,), 1.0 + rise)

    dropped = lambda plan, kind: sum(site[kind] == "drop" for site in plan)  # noqa: E731
    config = {**config, "loss_tol": 0.1}
    paper, _ = greedy_plan(classifier, priced, scores, {**config, "block_order": "loss"}, slow_attention)
    assert (dropped(paper, "ffn"), dropped(paper, "attention")) == (3, 0)  # least harmful first: 0.09 spent on FFN
    costly, _ = greedy_plan(classifier, priced, scores, config, slow_attention)
    assert (dropped(costly, "ffn"), dropped(costly, "attention")) == (0, 2)  # 0.04 per 5 ms beats 0.03 per 0.1 ms


def test_greedy_pass_trying_every_unit_goes_on_past_a_rejected_one(classifier, inputs):
    scores = taylor_importance(classifier, gradients_on(inputs))[:2]
    full = plan_from_sites(classifier.bert, DEFAULTS)
    keeps_head = lambda plan: plan[1]["heads"] is None or 0 in plan[1]["heads"]  # noqa: E731 - the one unit refused
    stop = _greedy_units(full, classifier, scores, 16, keeps_head, every=False)
    every = _greedy_units(full, classifier, scores, 16, keeps_head, every=True)
    assert every[1]["heads"] == [0]  # all the others went, each block keeping its last unit
    assert all(len(site["heads"]) == 1 and len(site["ffn_neurons"]) == 16 for site in every)
    for mine, other in zip(every, stop):  # the same pass up to where "stop" ends, then more
        assert set(mine["heads"]) <= set(other["heads"] or range(4))
        assert set(mine["ffn_neurons"]) <= set(other["ffn_neurons"] or range(64))
    assert keeps_head(stop)  # it ended at the refused unit, with units left that "every" removed
    assert any(len(site["heads"] or range(4)) > 1 or len(site["ffn_neurons"] or range(64)) > 16 for site in stop)


def test_the_plan_cache_key_holds_what_shapes_the_plan_and_nothing_else():
    greedy = {**DEFAULTS, "ax_mode": "greedy"}
    assert plan_knobs(greedy) == plan_knobs({**greedy, "refinetune": "off", "refinetune_epochs": 3, "drop_ffn_layers": 2})
    assert "unit_pass" not in plan_knobs(greedy)  # the default keeps the keys of plans cached before the knob
    assert "block_order" not in plan_knobs(greedy)
    for knob, value in (("loss_tol", 0.2), ("accept_frac", 0.5), ("ffn_group_size", 256), ("unit_pass", "all"),
                        ("block_order", "loss_per_ms")):
        assert plan_knobs({**greedy, knob: value}) != plan_knobs(greedy), knob
    sites = {**DEFAULTS, "heads_kept": 0.5}
    assert plan_knobs(sites) != plan_knobs({**sites, "heads_kept": 0.75}) != plan_knobs(greedy)
    assert plan_knobs(sites) == plan_knobs({**sites, "refinetune": "finetuned", "loss_tol": 0.9})


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


def test_an_applied_directory_loads_with_plain_transformers_no_prompt_no_warning(classifier, inputs, tmp_path):
    """The user's side of `apply`: AutoTokenizer and AutoModelForSequenceClassification on the directory, stdin
    closed (a prompt would hang a job), nothing on stderr."""
    import subprocess
    import sys

    from transformers import BertTokenizerFast

    from conftest import REPO

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(95)]]))
    small = approximate(classifier, plan_from_sites(classifier.bert, {**DEFAULTS, "drop_ffn_layers": 1, "heads_kept": 0.5}))
    save_model_dir(small, BertTokenizerFast(str(vocab)), tmp_path / "model", {"task": "sst2"})
    run = subprocess.run([sys.executable, str(REPO / "examples" / "load_applied_model.py"), str(tmp_path / "model"),
                          "w1 w2 w3", "w4"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                              "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert [line.split("\t")[1] for line in run.stdout.splitlines()] == ["w1 w2 w3", "w4"]
    assert run.stderr.strip() == "", run.stderr  # no prompt, no warning


def test_distillation_loss_mixes_the_labels_and_the_teachers_softened_logits():
    from autotradeoff.tasks.glue_model import distill_loss

    torch.manual_seed(2)
    student, teacher, labels = torch.randn(8, 2, requires_grad=True), torch.randn(8, 2), torch.randint(0, 2, (8,))
    hard = torch.nn.functional.cross_entropy(student, labels)
    assert torch.allclose(distill_loss(student, teacher, labels, weight=0.0, temperature=2.0), hard)
    assert distill_loss(teacher, teacher, labels, weight=1.0, temperature=2.0).abs() < 1e-6  # nothing to learn
    soft = distill_loss(student, teacher, labels, weight=1.0, temperature=2.0)
    assert torch.allclose(distill_loss(student, teacher, labels, weight=0.25, temperature=2.0), 0.75 * hard + 0.25 * soft)
    soft.backward()  # a step down the soft loss moves the student's softened outputs towards the teacher's
    moved = student - 0.5 * student.grad
    gap = lambda s: (torch.softmax(s / 2, -1) - torch.softmax(teacher / 2, -1)).abs().sum()  # noqa: E731
    assert gap(moved.detach()) < gap(student.detach())
