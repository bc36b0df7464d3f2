"""``autotradeoff apply`` for the image tasks: the chosen ViT with its variable-effort ladder as a self-contained
directory, then reloaded from disk by the directory's own code and scored, so the user sees it reproduce the
exported trial.

The directory: ``model.safetensors`` (weights and input normalisation), ``config.json`` (the ViT's shape, the
ladder — levels, tuned threshold, fallback, position mode — and the dataset's facts), ``icpc_vit.py`` (a copy
of ``models/vit.py``: it imports only torch and safetensors), ``README.md`` (how to load it) and
``autotradeoff.yaml`` (the export record). The re-score imports ``icpc_vit.py`` from the directory by its
path, not the package's model code, and classifies the validation and test images with it.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml

from autotradeoff.cost import Anchor, count_flops, measure_latency
from autotradeoff.errors import UsageError
from autotradeoff.models import vit
from autotradeoff.tasks import Task, pick_device
from autotradeoff.tasks.vision import probe_indices

__all__ = ["apply_image", "load_standalone", "rescore", "MODULE"]

MODULE = "icpc_vit.py"
MARKER = "autotradeoff.yaml"  # as in front.apply: the folder was written by apply
USAGE = """# {task}: a ViT with variable-effort inference, written by `autotradeoff apply`

```python
import importlib.util
spec = importlib.util.spec_from_file_location("icpc_vit", "{folder}/icpc_vit.py")
icpc_vit = importlib.util.module_from_spec(spec); spec.loader.exec_module(icpc_vit)
model = icpc_vit.load("{folder}")              # torch + safetensors only; eval mode
classes, exit_px = model.classify(images)    # images: uint8 (N, {channels}, {side}, {side})
```

Ladder: levels {px} px (the images are resized to each; positions `{pos_mode}`), stop at max softmax
probability >= {threshold:.4g}, else the largest level answers (`fallback: {fallback}`). `model.ladder` holds it;
`model.logits_at(images, grid, "{pos_mode}")` runs one level.
"""


def load_standalone(folder: Path) -> ModuleType:
    """The directory's ``icpc_vit.py`` imported by its path under a name of its own (not ``autotradeoff``)."""
    name = f"icpc_vit_{abs(hash(str(folder.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, folder / MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _write(model: vit.ViT, output: Path, record: dict[str, Any], facts: dict[str, Any]) -> None:
    vit.save_dir(model, output, {"dataset": facts})
    shutil.copy(vit.__file__, output / MODULE)
    ladder = model.ladder
    (output / "README.md").write_text(USAGE.format(task=record["task"], folder=output.name, threshold=ladder["threshold"],
                                                   px=", ".join(str(g * model.patch) for g in ladder["levels"]),
                                                   pos_mode=ladder["pos_mode"], fallback=ladder["fallback"], **facts),
                                      encoding="utf-8")
    (output / MARKER).write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")


def _classify(model: Any, images: torch.Tensor, device: str, chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [model.classify(images[i:i + chunk].to(device)) for i in range(0, len(images), chunk)]
    return torch.cat([p[0] for p in parts]).cpu(), torch.cat([p[1] for p in parts]).cpu()


def rescore(model: Any, data: dict[str, tuple[torch.Tensor, torch.Tensor]], fidelity: dict[str, Any],
            device: str, anchor: Callable[[Any, list[torch.Tensor]], Anchor] | None = None) -> dict[str, float]:
    """Accuracy, exit shares and FLOPs per sample on validation and test (``test_*``), and batch-1 latency per
    sample on validation (timed beside ``anchor(model, samples)``, as the trial was), of a loaded model's
    ``classify`` — named as a trial's metrics."""
    ladder, one = model.ladder, data["val"][0][:1].to(device)
    pixels = [g * model.patch for g in ladder["levels"]]
    flops = [float(count_flops(lambda g=g: model.logits_at(one, g, ladder["pos_mode"]))) for g in ladder["levels"]]
    metrics: dict[str, float] = {"effort_threshold": float(ladder["threshold"]) if len(pixels) > 1 else 0.0}
    for split, prefix in (("val", ""), ("test", "test_")):
        predictions, exit_px = _classify(model, data[split][0], device)
        metrics[f"{split}_accuracy"] = float((predictions == data[split][1]).float().mean())
        shares = [float((exit_px == px).float().mean()) for px in pixels]
        metrics.update({f"{prefix}exit_share_{px}px": share for px, share in zip(pixels, shares)})
        metrics[f"{prefix}flops"] = sum(sum(shares[i:]) * flops[i] for i in range(len(flops)))
        if split == "val":
            exits = torch.tensor([pixels.index(px) for px in exit_px.tolist()])
            probe = data["val"][0][probe_indices(exits, fidelity["latency_samples"])].to(device)
            metrics.update(_latency(model, probe, fidelity, anchor))
    return metrics


def _latency(model: Any, probe: torch.Tensor, fidelity: dict[str, Any],
             anchor: Callable[[Any, list[torch.Tensor]], Anchor] | None) -> dict[str, float]:
    samples = [probe[i:i + 1] for i in range(len(probe))]
    latency = measure_latency(lambda: [model.classify(x) for x in samples], warmup=fidelity["latency_warmup"],
                              repeats=fidelity["latency_repeats"], threads=fidelity["threads"], model=model,
                              anchor=anchor(model, samples) if anchor else None)
    return {"latency_ms": latency.median_ms / len(samples), "latency_iqr_ms": latency.iqr_ms / len(samples)}


def apply_image(task: Task, record: dict[str, Any], output: Path, *, device: str | None = None) -> dict[str, float]:
    """Write the exported config's trained ViT and tuned ladder to ``output``; return the metrics of the model
    reloaded from there by its own code."""
    if output.exists() and any(output.iterdir()) and not (output / MARKER).exists():
        raise UsageError(f"output folder {str(output)!r} is not empty and was not written by apply; choose a new folder")
    config, fidelity = task.fill_config(record["config"], where="config"), task.fill_fidelity(record["fidelity"])
    task.check_data(fidelity)
    torch.set_num_threads(fidelity["threads"])
    device = device or pick_device(fidelity["gpu_share"])
    model = task.deployable(config, fidelity, device=device)
    data = task.data(fidelity)
    images = data["test"][0]
    _write(model, output, record, {"name": task.name, "channels": images.shape[1], "side": images.shape[-1]})
    loaded = load_standalone(output).load(output, device=device)
    return rescore(loaded, data, fidelity, device, anchor=lambda m, samples: task.anchor(m, samples, device))
