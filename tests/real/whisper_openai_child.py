"""Child of test_whisper_layouts.py: load a converted OpenAI-layout file into openai-whisper's own
`Whisper` model (INSPECTOR_WHISPER_SITE on the path) and save its logits and state dict names.

usage: whisper_openai_child.py CHECKPOINT INPUTS OUT"""

from __future__ import annotations

import sys

import torch
from whisper.model import ModelDimensions, Whisper


def main(checkpoint: str, inputs: str, out: str) -> None:
    saved = torch.load(checkpoint, weights_only=True)
    model = Whisper(ModelDimensions(**saved["dims"])).eval()
    model.load_state_dict(saved["model_state_dict"])  # strict: every name, every shape
    data = torch.load(inputs, weights_only=True)
    with torch.no_grad():
        logits = model(data["mel"], data["tokens"])
    torch.save({"logits": logits, "names": list(model.state_dict())}, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
