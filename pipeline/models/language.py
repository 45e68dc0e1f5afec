"""Causal language models (appendix G.3): HuggingFace checkpoints from a local folder as plain
functions of token ids, and their tokenizers (the text itself: `pipeline.data.text`).

Needs the optional extra `lm` (`transformers`). Nothing here reaches the HuggingFace hub:
`HF_HUB_OFFLINE=1` is set before `transformers` is imported, and every load is `local_files_only`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import UserError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The paper's models (G.3) and where to get them where there is network.
HUB_IDS = {
    "TinyStories-1M": "roneneldan/TinyStories-1M",
    "tinyllama-15M": "nickypro/tinyllama-15M",
    "TinyStories-33M": "roneneldan/TinyStories-33M",
}


def transformers_lib():
    """The `transformers` module, quiet; one line naming the extra to install when it is missing."""
    try:
        import transformers
    except ImportError as e:
        raise UserError(
            "language models need the optional extra 'lm': pip install -e '.[lm]' (installs transformers)"
        ) from e
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # one bar per checkpoint load: noise in run logs
    return transformers


def _missing_checkpoint(path: Path, name: str | None) -> UserError:
    hub = HUB_IDS.get(name or path.name, "<hub id, e.g. roneneldan/TinyStories-1M>")
    return UserError(
        f"no causal LM checkpoint at {path} (expects config.json, weights and tokenizer files): "
        f"on a machine with network run `hf download {hub} --local-dir {path}` and copy it here, "
        "or set model.path=<checkpoint folder>"
    )


def _unreadable(folder: Path, what: str, error: Exception) -> UserError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return UserError(
        f"could not load a {what} from {folder} ({first}): point to a complete checkpoint folder "
        "(config.json, weights, tokenizer files) as `hf download` writes it"
    )


class LanguageModel(nn.Module):
    """A HuggingFace causal LM as a plain function of token ids: `forward(ids) -> logits`
    [batch, tokens, vocab], the form `tasks.CausalLM` and devinterp's loss hook take."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    @property
    def context(self) -> int:
        cfg = self.lm.config
        return int(getattr(cfg, "max_position_embeddings", None) or cfg.n_positions)

    @property
    def vocab_size(self) -> int:
        return int(self.lm.config.vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, use_cache=False).logits


def causal_lm(
    path: str,
    name: str | None = None,
    in_features: int | None = None,
    num_classes: int | None = None,
) -> LanguageModel:
    """The causal LM saved in checkpoint folder `path` (as `save_pretrained` or `hf download` write
    it), in float32. `in_features` (the data's block length) and `num_classes` (its tokenizer's
    vocabulary) are checked against the model's context and vocabulary."""
    folder = Path(path).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise _missing_checkpoint(folder, name)
    tf = transformers_lib()
    try:
        lm = tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise _unreadable(folder, "causal LM", e) from e
    model = LanguageModel(lm)
    if in_features is not None and int(in_features) > model.context:
        raise UserError(
            f"dataset.block_size={in_features} is longer than the context of {folder.name} "
            f"({model.context} tokens): set dataset.block_size ≤ {model.context}"
        )
    if num_classes is not None and int(num_classes) > model.vocab_size:
        raise UserError(
            f"the tokenizer has {num_classes} tokens but {folder.name} embeds only {model.vocab_size}: "
            "tokenize with the model's own tokenizer (dataset.tokenizer=<the model's folder>)"
        )
    return model


def load_tokenizer(path: str, name: str | None = None):
    """The tokenizer saved in checkpoint folder `path`."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise _missing_checkpoint(folder, name)
    try:
        tok = transformers_lib().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise _unreadable(folder, "tokenizer", e) from e
    if not tok.vocab_size:  # transformers builds an empty tokenizer from a folder without its files
        raise _unreadable(folder, "tokenizer", ValueError("no tokenizer files"))
    return tok
