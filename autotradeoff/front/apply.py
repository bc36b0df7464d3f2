"""``autotradeoff apply``: turn an exported config into a model directory that loads with
``from_pretrained`` (the approximated model, its tokenizer and the code that rebuilds its shapes),
then reload that directory and score it, so the user sees it reproduces the exported metrics. Image
tasks take their own branch (``front.apply_image``: the ViT and its variable-effort ladder)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from autotradeoff.errors import UsageError
from autotradeoff.models import bert as axbert
from autotradeoff.tasks import pick_device, task_for

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["apply_export", "save_model_dir", "how_to_load"]

MARKER = "autotradeoff.yaml"


def save_model_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, output: Path,
                   record: dict[str, Any]) -> None:
    """Write a Hugging Face model directory with the AxFormer plan in its config and ``axbert.py``."""
    plain = {k: v for k, v in model.config.to_dict().items()
             if k not in ("model_type", "axformer_plan", "architectures", "auto_map", "transformers_version")}
    config = axbert.AxBertConfig(axformer_plan=getattr(model.config, "axformer_plan", None)
                                 or axbert.full_plan(model.config.num_hidden_layers), **plain)
    config.architectures = ["AxBertForSequenceClassification"]
    config.auto_map = {"AutoConfig": "axbert.AxBertConfig",
                       "AutoModelForSequenceClassification": "axbert.AxBertForSequenceClassification"}
    model.config = config
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    shutil.copy(axbert.__file__, output / "axbert.py")
    (output / MARKER).write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")


def apply_export(record: dict[str, Any], output: Path, *, device: str | None = None) -> dict[str, float]:
    """Build the exported config's model into ``output``; return the reloaded model's metrics."""
    task = task_for(record["task"] or "", record["fidelity"])
    if task.family == "vision":
        from autotradeoff.front.apply_image import apply_image

        return apply_image(task, record, output, device=device)
    if not hasattr(task, "build"):
        raise UsageError(f"task {task.name!r} has no model artifact to apply; apply works for GLUE tasks "
                         "(sst2, rte, cola, mrpc, qnli) and image tasks (fashion-mnist, cifar10)")
    if output.exists() and any(output.iterdir()) and not (output / MARKER).exists():
        raise UsageError(f"output folder {str(output)!r} is not empty and was not written by apply; choose a new folder")
    config = task.fill_config(record["config"], where="config")
    fidelity = task.fill_fidelity(record["fidelity"])
    task.check_data(fidelity)
    torch.set_num_threads(fidelity["threads"])
    device = device or pick_device(fidelity["gpu_share"])
    model, _, _ = task.build(config, fidelity, device=device)
    from autotradeoff.tasks.glue_model import load_tokenizer

    save_model_dir(model, load_tokenizer(fidelity["model"]), output, record)
    loaded = axbert.AxBertForSequenceClassification.from_pretrained(output).to(device).eval()
    return task.evaluate(loaded, fidelity, device=device)


def how_to_load(output: Path) -> str:
    """One line telling how to load what ``apply`` wrote to ``output``."""
    from autotradeoff.front.apply_image import MODULE

    if (output / MODULE).exists():
        return (f"load it with {MODULE}'s load() (torch + safetensors only; see {output / 'README.md'}), "
                "or autotradeoff.models.vit.load")
    return ("load it with AxBertForSequenceClassification.from_pretrained, or "
            "AutoModelForSequenceClassification.from_pretrained(..., trust_remote_code=True)")
