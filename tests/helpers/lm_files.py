"""Small files in the real on-disk formats of the language experiments: a TinyStories-style text
file and a HuggingFace checkpoint folder (a tiny random model with a locally built tokenizer)."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.text import SEPARATOR, synthetic_story_text, write_tiny_checkpoint

# Two stories, one spanning lines, as in TinyStories-train.txt.
STORIES = ["Once upon a time, there was a cat.\nThe cat liked to nap.", "Tom had a red ball."]


def write_text(path: Path, num_stories: int = 300) -> Path:
    """The two fixed stories, then synthetic ones, separated by <|endoftext|> lines."""
    text = f"\n{SEPARATOR}\n".join(STORIES) + f"\n{SEPARATOR}\n" + synthetic_story_text(num_stories)
    path.write_text(text, encoding="utf-8")
    return path


def write_checkpoint(folder: Path, text_file: Path, arch: str = "gpt_neo") -> Path:
    return write_tiny_checkpoint(
        folder, text_file.read_text(), arch=arch, vocab_size=300, hidden_size=16, num_heads=2, context=64
    )
