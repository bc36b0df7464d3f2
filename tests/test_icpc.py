"""ICPC's plain functions on tiny real inputs: levels, positional consistency, variable-effort inference, the
threshold tuned on validation, and the model directory a deployed ladder lives in."""

import random
import subprocess
import sys

import pytest
import torch

from autotradeoff.models import vit
from autotradeoff.models.vit import ViT, positions, resize
from autotradeoff.techniques import icpc

OFF = {name: knob.default for name, knob in icpc.KNOBS.items()}


def small_vit(seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    return ViT(image_size=28, patch=4, channels=1, classes=10, dim=16, depth=1, heads=2, mlp_ratio=2).eval()


def test_ladders_run_from_the_smallest_level_to_the_full_grid():
    assert icpc.ladder(0.25, 7, 1) == [2, 3, 4, 5, 6, 7]
    assert icpc.ladder(0.25, 7, 2) == [3, 5, 7]  # anchored at the full grid
    assert icpc.ladder(1.0, 7, 1) == [7]
    config = {**OFF, "variable_effort": True, "infer_start_level": 0.25, "max_infer_levels": 3}
    assert icpc.infer_ladder(config, 7) == [2, 4, 7]  # capped: both ends kept, evenly spaced
    assert icpc.infer_ladder({**config, "max_infer_levels": 1}, 7) == [7]
    assert icpc.infer_ladder({**OFF, "infer_level": 0.5}, 7) == [4]  # one fixed level without variable effort
    assert icpc.infer_ladder({**config, "max_infer_levels": 2}, 7) == [2, 7]  # one cheap level, then full


def test_levels_never_go_below_the_native_resolution_unless_allowed():
    # a 28 px image on a 56 px canvas with 8 px patches: full grid 7, the native image needs 3.5 -> 4 patches
    floor = icpc.floor_of({**OFF, "min_level": 0.25}, {"full": 7, "native": 3.5})
    assert floor == 4 and icpc.floor_of({**OFF, "below_native": True}, {"full": 7, "native": 3.5}) == 1
    assert icpc.floor_of(OFF, {"full": 7, "native": 7.0}) == 7  # no canvas: only the full level keeps everything
    assert icpc.ladder(0.25, 7, 1, floor) == [4, 5, 6, 7] and icpc.ladder(0.25, 7, 1) == [2, 3, 4, 5, 6, 7]
    assert icpc.train_ladder({**OFF, "min_level": 0.1}, 7, floor) == [4, 5, 6, 7]
    assert icpc.infer_ladder({**OFF, "infer_level": 0.1}, 7, floor) == [4]
    assert icpc.infer_ladder({**OFF, "variable_effort": True, "max_infer_levels": 0}, 7, floor) == [4, 5, 6, 7]
    assert icpc.grid_of(0.5, 7, floor=9) == 7  # a floor above the full grid (a canvas smaller than the image)


def test_all_off_trains_and_infers_at_the_full_level_only():
    assert icpc.train_ladder(OFF, 7) == [7] and icpc.infer_ladder(OFF, 7) == [7]
    images = torch.rand(3, 1, 28, 28)
    assert resize(images, 7, 4) is images
    table = torch.randn(7, 7, 5)
    for mode in ("top-left", "interpolate"):
        assert torch.equal(positions(table, 7, mode), table.reshape(49, 5))


def test_level_sampling_schemes():
    levels, rng = [2, 3, 4, 5, 6, 7], random.Random(0)
    uniform = [icpc.sample_level(levels, "uniform", rng) for _ in range(3000)]
    high = [icpc.sample_level(levels, "high", rng) for _ in range(3000)]
    assert set(uniform) == set(levels) and abs(uniform.count(7) - uniform.count(2)) < 150
    assert high.count(7) > 4 * high.count(2)  # weights 6 : 1
    early = {icpc.sample_level(levels, "curriculum", rng, progress=0.1) for _ in range(200)}
    late = {icpc.sample_level(levels, "curriculum", rng, progress=1.0) for _ in range(500)}
    assert early == {2} and late == set(levels)


def test_positions_at_a_level_are_the_top_left_block_of_the_table():
    table = torch.randn(7, 7, 8)
    for grid in range(1, 8):
        got = positions(table, grid, "top-left").view(grid, grid, 8)
        assert torch.equal(got, table[:grid, :grid])
    # interpolation resamples instead: a patch's embedding changes with the level
    assert not torch.allclose(positions(table, 3, "interpolate"), positions(table, 3, "top-left"))


def test_the_vit_at_a_small_level_reads_only_the_top_left_block():
    model = small_vit()
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        before = {mode: model.logits_at(images, 3, mode) for mode in ("top-left", "interpolate")}
        model.pos[3:, :] += torch.randn_like(model.pos[3:, :])  # change every position outside the top-left 3 x 3 block
        model.pos[:, 3:] += torch.randn_like(model.pos[:, 3:])
        after = {mode: model.logits_at(images, 3, mode) for mode in ("top-left", "interpolate")}
    assert torch.equal(before["top-left"], after["top-left"])
    assert not torch.allclose(before["interpolate"], after["interpolate"])


def _scripted(confidences: list[list[float]], calls: list):
    """logits whose max softmax probability per (sample, level) is given; class = level index."""
    def logits_at(images: torch.Tensor, level: int) -> torch.Tensor:
        ids = images[:, 0].long()
        calls.append((level, ids.tolist()))
        out = torch.full((len(ids), 4), -1e4)
        for row, sample in enumerate(ids.tolist()):
            p = confidences[sample][level]
            out[row, level] = 0.0
            out[row, (level + 1) % 4] = torch.log(torch.tensor((1 - p) / p))  # softmax max = p over the pair
        return out
    return logits_at


def test_variable_effort_stops_at_the_first_confident_level():
    confidences = [[0.95, 0.99, 0.99], [0.6, 0.92, 0.99], [0.6, 0.7, 0.8], [0.6, 0.7, 0.95]]
    images = torch.arange(4).float().view(4, 1)
    calls = []
    result = icpc.variable_effort(_scripted(confidences, calls), images, [0, 1, 2], 0.9, fallback="largest")
    assert result.exit_index.tolist() == [0, 1, 2, 2]
    assert result.predictions.tolist() == [0, 1, 2, 2]  # the answer of the level each stopped at
    assert calls == [(0, [0, 1, 2, 3]), (1, [1, 2, 3]), (2, [2, 3])]  # only pending samples go on
    assert result.exit_shares() == [0.25, 0.25, 0.5] and result.visits() == [1.0, 0.75, 0.5]
    wrong = icpc.variable_effort(_scripted(confidences, []), images, [0, 1, 2], 0.9, fallback="wrong")
    assert wrong.predictions.tolist() == [0, 1, -1, 2]  # never confident: counted wrong (the public code)


def scores_of(model: ViT, images: torch.Tensor, labels: torch.Tensor, levels: list[int]):
    with torch.no_grad():
        probs = [model.logits_at(images, g, "top-left").softmax(-1) for g in levels]
    flops = [float(g * g) for g in levels]  # any increasing cost per pass
    return (torch.stack([p.max(-1).values for p in probs]), torch.stack([p.argmax(-1) == labels for p in probs]), flops)


@pytest.mark.parametrize("fallback", ["largest", "wrong"])
def test_the_simulated_ladder_equals_the_real_ascent_at_every_threshold(fallback):
    """``ladder_outcomes`` (what tuning reads) gives the accuracy and FLOPs the real ascent gets."""
    model, levels = small_vit(seed=5), [3, 5, 7]
    images, labels = torch.randint(0, 256, (80, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (80,))
    scores = scores_of(model, images, labels, levels)
    thresholds = scores[0][:-1].flatten().quantile(torch.tensor([0.1, 0.5, 0.9]))
    accuracy, cost = icpc.ladder_outcomes(scores, thresholds, fallback)
    for k, threshold in enumerate(thresholds.tolist()):
        with torch.no_grad():
            real = icpc.variable_effort(lambda x, g: model.logits_at(x, g, "top-left"), images, levels, threshold,
                                        fallback=fallback)
        assert accuracy[k].item() == pytest.approx((real.predictions == labels).double().mean().item())
        assert cost[k].item() == pytest.approx(sum(v * f for v, f in zip(real.visits(), scores[2])))


def test_the_tuned_threshold_is_the_cheapest_within_the_allowed_drop():
    # 4 samples, 2 levels: the small level is right and sure on samples 0-1, wrong but fairly sure on 2
    confidence = torch.tensor([[0.99, 0.95, 0.9, 0.5], [0.99, 0.99, 0.99, 0.99]])
    correct = torch.tensor([[True, True, False, False], [True, True, True, True]])
    scores = (confidence, correct, [1.0, 4.0])
    assert icpc.tune_threshold(scores, max_drop=0.0) == pytest.approx(0.95)  # 0 and 1 exit, 2 and 3 climb: cost 3
    assert icpc.tune_threshold(scores, max_drop=0.25) == pytest.approx(0.9)  # sample 2 may exit wrong: cost 2
    too_dear = (confidence, correct, [3.5, 4.0])  # the cheap level costs nearly a full pass: no threshold pays
    assert icpc.tune_threshold(too_dear, max_drop=0.0) is None
    plan = icpc.inference_plan({**OFF, "variable_effort": True}, 7, 4, lambda levels: too_dear)
    assert plan == ([7], 0.0, "largest")  # the ladder that can't pay is not used: one full-level pass
    fixed = icpc.inference_plan({**OFF, "variable_effort": True, "threshold_rule": "fixed"}, 7, 4, lambda levels: too_dear)
    assert fixed == ([4, 7], 0.9, "largest")  # fixed: the paper's threshold, whatever it costs


def test_variable_effort_matches_a_per_sample_ascent_on_a_real_vit():
    model = small_vit(seed=3)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    levels = [2, 4, 7]
    with torch.no_grad():
        probs = [model.logits_at(images, g, "top-left").softmax(-1) for g in levels]
        threshold = float(probs[0].max(-1).values.median())  # about half stop at the first level
        result = icpc.variable_effort(lambda x, g: model.logits_at(x, g, "top-left"), images, levels, threshold)
    for i in range(len(images)):
        first = next((k for k, p in enumerate(probs) if p[i].max() >= threshold), len(levels) - 1)
        assert result.exit_index[i] == first
        assert result.predictions[i] == probs[first][i].argmax()
    assert 0 < (result.exit_index == 0).sum() < len(images)  # the threshold splits the samples
    for fallback in ("largest", "wrong"):  # one image at a time (deployment at batch 1) answers the same
        batch = icpc.variable_effort(lambda x, g: model.logits_at(x, g, "top-left"), images, levels, threshold, fallback=fallback)
        for i in range(len(images)):
            with torch.no_grad():
                one = icpc.variable_effort(lambda x, g: model.logits_at(x, g, "top-left"), images[i:i + 1], levels, threshold,
                                           fallback=fallback)
            assert (one.predictions.item(), one.exit_index.item()) == (batch.predictions[i].item(), batch.exit_index[i].item())


@pytest.mark.parametrize("mode", ["top-left", "interpolate"])
def test_every_level_runs_in_both_position_modes(mode):
    model = small_vit()
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        shapes = {g: model.logits_at(images, g, mode).shape for g in range(1, 8)}
    assert set(shapes.values()) == {torch.Size([2, 10])}


def test_at_the_full_level_the_vit_sees_the_plain_normalised_image():
    model = small_vit()
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    model.set_normalisation(images)
    with torch.no_grad():
        plain = model((images.float() / 255 - model.mean) / model.std)
        for mode in ("top-left", "interpolate"):
            assert torch.equal(model.logits_at(images, 7, mode), plain)


def test_curriculum_opens_the_ladder_within_one_epoch():
    from autotradeoff.tasks.vision_train import train_vit

    images = torch.randint(0, 256, (640, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (640,))
    fidelity = {"seed": 0, "batch_size": 64, "epochs": 1, "lr": 1e-3, "weight_decay": 0.0}
    seen = {}
    levels = icpc.train_ladder({**OFF, "min_level": 0.25}, 7)
    for scheme in ("curriculum", "uniform"):
        plan = (levels, lambda rng, progress, s=scheme: icpc.sample_level(levels, s, rng, progress=progress), "top-left")
        seen[scheme] = train_vit(small_vit(), images, labels, plan, fidelity, device="cpu").samples_per_level
    # 10 steps over 6 levels: the first step can only use the smallest level, the full one opens at step 9
    assert seen["curriculum"]["2"] >= 64 and seen["curriculum"]["7"] <= 128
    assert seen["curriculum"] != seen["uniform"]


def test_the_latency_probe_follows_the_exit_histogram():
    from autotradeoff.tasks.vision import probe_indices

    exits = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    probe = probe_indices(exits, 10)
    assert len(probe) == 10 and torch.bincount(exits[probe]).tolist() == [5, 3, 2]
    assert len(probe_indices(exits, 7)) == 7 and len(probe_indices(exits, 500)) == 100


def test_the_model_upsamples_onto_its_canvas_and_a_saved_directory_reloads_alone(tmp_path):
    """A 28 px image on a 56 px canvas (8 px patches): the full level upsamples; the directory written by
    ``save_dir`` reloads in a fresh interpreter from its own file, without autotradeoff, to the same answers."""
    torch.manual_seed(1)
    model = ViT(image_size=56, patch=8, channels=1, classes=10, dim=16, depth=1, heads=2, mlp_ratio=2).eval()
    images = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)
    model.set_normalisation(images)
    with torch.no_grad():
        assert model.logits_at(images, 7, "top-left").shape == (20, 10)
        probs = model.logits_at(images, 4, "top-left").softmax(-1).max(-1).values
    model.ladder = {"levels": [4, 7], "threshold": float(probs.median()), "fallback": "largest", "pos_mode": "top-left"}
    classes, exit_px = model.classify(images)
    assert set(exit_px.tolist()) == {32, 56}
    vit.save_dir(model, tmp_path / "m")
    (tmp_path / "m" / "icpc_vit.py").write_text(open(vit.__file__).read())
    torch.save(images, tmp_path / "images.pt")
    script = f"""
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("icpc_vit", r"{tmp_path / 'm' / 'icpc_vit.py'}")
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
classes, exit_px = mod.load(r"{tmp_path / 'm'}").classify(torch.load(r"{tmp_path / 'images.pt'}"))
assert not any(name.startswith("autotradeoff") for name in sys.modules)
print(" ".join(map(str, classes.tolist())), "|", " ".join(map(str, exit_px.tolist())))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split("|")
    assert [int(c) for c in out[0].split()] == classes.tolist() and [int(p) for p in out[1].split()] == exit_px.tolist()
