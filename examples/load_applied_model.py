"""Load a model directory written by `autotradeoff apply` with plain transformers calls, as a service would,
and print its predictions for sentences given on the command line:

    python examples/load_applied_model.py model_dir "a gripping , funny film" "a dull , lifeless mess"

No autotradeoff import: the directory carries its own model code (axbert.py, loaded with trust_remote_code),
and its tokenizer and config load without it, without a prompt or a warning."""

from __future__ import annotations

import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging


def main(directory: str, sentences: list[str]) -> None:
    logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits
    for sentence, label in zip(sentences, logits.argmax(-1).tolist()):
        print(f"{label}\t{sentence}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["a gripping , funny film", "a dull , lifeless mess"])
