"""TinyStories text (appendix G.3) tokenized with the model's own tokenizer into fixed-length blocks,
and a synthetic stand-in (TinyStories-shaped text + a tiny randomly initialised model) for CPU runs
and tests. Needs the optional extra `lm`; nothing is read from the HuggingFace hub."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pipeline.data.container import Data
from pipeline.errors import UserError
from pipeline.models.language import load_tokenizer, transformers_lib

SEPARATOR = "<|endoftext|>"  # between stories in the TinyStories text files


def read_stories(path: Path) -> Iterator[str]:
    """Stories of a TinyStories text file (stories separated by `<|endoftext|>`), streamed, so that
    the first stories of the 1.9 GB training file are read without loading it."""
    buffer: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if SEPARATOR in line:
                head, *rest = line.split(SEPARATOR)
                buffer.append(head)
                for piece in rest:
                    if story := "".join(buffer).strip():
                        yield story
                    buffer = [piece]
            else:
                buffer.append(line)
    if story := "".join(buffer).strip():
        yield story


def tokenize_blocks(stories: Iterator[str], tokenizer, block_size: int, num_blocks: int) -> torch.Tensor:
    """The stories' tokens, each story followed by the end-of-text token, concatenated and cut into
    `num_blocks` blocks of `block_size` tokens (fewer when the text runs out)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    need, tokens, chunk = num_blocks * block_size, [], []

    def flush() -> None:
        for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
            tokens.extend([*ids, *eos])
        chunk.clear()

    for story in stories:
        chunk.append(story)
        if len(chunk) == 256:
            flush()
            if len(tokens) >= need:
                break
    if chunk:
        flush()
    n = min(num_blocks, len(tokens) // block_size)
    return torch.tensor(tokens[: n * block_size], dtype=torch.long).view(n, block_size)


def tinystories(
    batch_size: int,
    path: str,
    tokenizer: str,
    block_size: int = 256,
    train_blocks: int = 16_000,
    test_blocks: int = 512,
    split_seed: int = 0,
) -> Data:
    """The first `train_blocks + test_blocks` blocks of `block_size` tokens of a TinyStories text
    file, tokenized with the tokenizer in folder `tokenizer` (the model's checkpoint), shuffled into
    train and test blocks. Inputs and targets are the same token ids (`tasks.CausalLM` shifts them)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise UserError(
            f"TinyStories text not found at {file}: on a machine with network run `hf download "
            "roneneldan/TinyStories TinyStories-train.txt --repo-type dataset --local-dir <folder>` "
            "and set dataset.path=<folder>/TinyStories-train.txt"
        )
    if block_size < 2 or train_blocks < 1 or test_blocks < 1:
        raise UserError(
            f"dataset.block_size={block_size} must be ≥ 2 and train_blocks={train_blocks}, "
            f"test_blocks={test_blocks} ≥ 1"
        )
    tok = load_tokenizer(tokenizer)
    blocks = tokenize_blocks(read_stories(file), tok, int(block_size), int(train_blocks + test_blocks))
    if len(blocks) < train_blocks + test_blocks:
        raise UserError(
            f"{file} holds only {len(blocks)} blocks of {block_size} tokens, fewer than "
            f"train_blocks + test_blocks = {train_blocks + test_blocks}: lower them or use a longer file"
        )
    order = torch.as_tensor(np.random.default_rng(split_seed).permutation(len(blocks)))
    train, test = blocks[order[:train_blocks]], blocks[order[train_blocks:]]
    return Data(
        name="tinystories",
        x_train=train,
        y_train=train,
        x_test=test,
        y_test=test,
        num_classes=len(tok),
        batch_size=int(batch_size),
    )


# ---- the synthetic stand-in: TinyStories-shaped text and a tiny random model ---------------------

_NAMES = ["Lily", "Tom", "Mia", "Ben", "Sue", "Max", "Anna", "Tim", "Lucy", "Sam"]
_THINGS = ["cat", "dog", "bird", "ball", "kite", "frog", "boat", "bear", "duck", "car"]
_ADJECTIVES = ["little", "big", "happy", "red", "shiny", "soft", "brave", "sleepy", "funny", "kind"]
_VERBS = ["play", "run", "jump", "sing", "read", "swim", "draw", "dance", "hide", "help"]
_PLACES = ["park", "garden", "house", "forest", "beach", "school", "river", "shop"]
_FEELINGS = ["happy", "sad", "scared", "proud", "surprised", "tired"]


def synthetic_story_text(num_stories: int, seed: int = 0) -> str:
    """`num_stories` short stories in TinyStories' style and file format (separated by lines
    `<|endoftext|>`), from a small seeded grammar: a stand-in with the same shape, not the data."""
    rng = np.random.default_rng(seed)

    def pick(words: list[str]) -> str:
        return words[rng.integers(len(words))]

    stories = []
    for _ in range(num_stories):
        name, friend, thing, place = pick(_NAMES), pick(_NAMES), pick(_THINGS), pick(_PLACES)
        sentences = [f"Once upon a time, there was a {pick(_ADJECTIVES)} {thing} named {name}."]
        for _ in range(int(rng.integers(3, 8))):
            sentences.append(
                rng.choice(
                    [
                        f"{name} liked to {pick(_VERBS)} in the {place}.",
                        f"One day, {name} saw a {pick(_ADJECTIVES)} {pick(_THINGS)}.",
                        f'{friend} said, "Can I {pick(_VERBS)} with you?"',
                        f"{name} felt {pick(_FEELINGS)} and went to the {pick(_PLACES)}.",
                        f"They wanted to {pick(_VERBS)} with the {pick(_THINGS)} together.",
                    ]
                )
            )
        sentences.append(f"At the end of the day, {name} and {friend} were {pick(_FEELINGS)}.")
        stories.append(" ".join(sentences))
    return f"\n{SEPARATOR}\n".join(stories) + "\n"


def write_tiny_checkpoint(
    folder: str | Path,
    text: str,
    arch: str = "gpt_neo",
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    context: int = 256,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised causal LM (GPT-Neo like TinyStories-1M/33M, or Llama like
    tinyllama-15M) and a byte-level BPE tokenizer trained on `text` as a checkpoint folder, built
    locally with `tokenizers` (no hub access). Loads back with `causal_lm` / `load_tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tf = transformers_lib()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SEPARATOR],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(text.split(SEPARATOR), trainer)
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=SEPARATOR, bos_token=SEPARATOR)
    eos = tokenizer.eos_token_id
    sizes = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "max_position_embeddings": context,
        "bos_token_id": eos,
        "eos_token_id": eos,
    }
    if arch == "gpt_neo":
        # TinyStories' GPT-Neo alternates global and local attention layers.
        attention = [[["global", "local"], num_layers // 2]] + [[["global"], num_layers % 2]]
        config = tf.GPTNeoConfig(
            **sizes,
            num_layers=num_layers,
            num_heads=num_heads,
            attention_types=attention,
            window_size=context,
        )
    elif arch == "llama":
        config = tf.LlamaConfig(**sizes, num_hidden_layers=num_layers, num_attention_heads=num_heads)
    else:
        raise UserError(f"tiny model arch={arch!r}: choose gpt_neo or llama")
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config)
    folder = Path(folder)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def synthetic_stories(
    batch_size: int,
    folder: str,
    num_stories: int = 2000,
    tiny_model: dict | None = None,
    block_size: int = 32,
    train_blocks: int = 4000,
    test_blocks: int = 256,
    split_seed: int = 0,
    seed: int = 0,
) -> Data:
    """The CPU stand-in for (TinyStories text, pretrained checkpoint): writes, the first time,
    `<folder>/stories.txt` (synthetic stories in TinyStories' file format) and `<folder>/model` (a
    tiny random causal LM, `tiny_model` = `write_tiny_checkpoint`'s settings, with a tokenizer
    trained on that text), then loads them exactly as `tinystories` loads the real files."""
    root = Path(folder).expanduser().resolve()
    spec = {"num_stories": num_stories, "seed": seed, "tiny_model": dict(tiny_model or {})}
    if (root / "spec.json").is_file():
        if json.loads((root / "spec.json").read_text()) != spec:
            raise UserError(
                f"{root} holds a stand-in made with other settings: delete it, or set dataset.folder=<new>"
            )
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        # Built aside and moved into place, so a job that stops half-way leaves nothing half-made.
        tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
        try:
            text = synthetic_story_text(num_stories, seed)
            (tmp / "stories.txt").write_text(text, encoding="utf-8")
            write_tiny_checkpoint(tmp / "model", text, seed=seed, **spec["tiny_model"])
            (tmp / "spec.json").write_text(json.dumps(spec))
            tmp.rename(root)
        except OSError:
            if not (root / "spec.json").is_file():  # not another job that finished first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tinystories(
        batch_size,
        str(root / "stories.txt"),
        str(root / "model"),
        block_size=block_size,
        train_blocks=train_blocks,
        test_blocks=test_blocks,
        split_seed=split_seed,
    )
