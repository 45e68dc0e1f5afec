"""Causal LMs from a local checkpoint folder and TinyStories text from a local file, written here
in their real formats (no hub access: HF_HUB_OFFLINE is set by pipeline.models.language)."""

import os
from pathlib import Path

import pytest
import torch

from pipeline.data import text as text_data
from pipeline.errors import UserError
from pipeline.models import language
from tests.helpers.lm_files import STORIES, write_checkpoint, write_text


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lm")
    text = write_text(root / "TinyStories-train.txt")
    return text, write_checkpoint(root / "tiny-lm", text)


def test_read_stories_splits_on_end_of_text(tmp_path: Path) -> None:
    path = write_text(tmp_path / "stories.txt", num_stories=3)
    stories = list(text_data.read_stories(path))
    assert stories[:2] == STORIES and len(stories) == 5
    assert all(text_data.SEPARATOR not in s and s == s.strip() for s in stories)


def test_tinystories_blocks_are_the_tokenized_stream(files) -> None:
    text, ckpt = files
    d = text_data.tinystories(
        batch_size=4, path=str(text), tokenizer=str(ckpt), block_size=16, train_blocks=20, test_blocks=6
    )
    assert d.x_train.shape == (20, 16) and d.x_test.shape == (6, 16) and d.x_train.dtype == torch.long
    assert d.y_train is d.x_train  # targets are the inputs; the causal-LM task shifts them
    tok = language.load_tokenizer(str(ckpt))
    assert d.num_classes == len(tok) and os.environ["HF_HUB_OFFLINE"] == "1"
    # Every block is a consecutive piece of the stories' tokens, each story ended by <|endoftext|>.
    stream = []
    for story in text_data.read_stories(text):
        stream += [*tok(story, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    pieces = {tuple(stream[i : i + 16]) for i in range(0, 26 * 16, 16)}
    assert {tuple(b) for b in torch.cat([d.x_train, d.x_test]).tolist()} == pieces
    assert tok.decode(stream[: stream.index(tok.eos_token_id)]) == STORIES[0]
    again = text_data.tinystories(4, str(text), str(ckpt), 16, 20, 6)
    assert torch.equal(d.x_train, again.x_train)  # the split is fixed by split_seed


@pytest.mark.parametrize("arch", ["gpt_neo", "llama"])
def test_tiny_checkpoint_round_trips(tmp_path: Path, files, arch: str) -> None:
    text, _ = files
    folder = write_checkpoint(tmp_path / arch, text, arch=arch)
    model = language.causal_lm(str(folder), in_features=16, num_classes=300)
    assert model.lm.config.model_type == arch and model.context == 64
    ids = torch.randint(0, model.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = model(ids)
    assert logits.shape == (2, 16, model.vocab_size)
    # Causal: the logits at position 5 do not depend on later tokens.
    later = ids.clone()
    later[:, 6:] = (later[:, 6:] + 1) % model.vocab_size
    assert torch.allclose(model(later)[:, :6], logits[:, :6], atol=1e-5)
    # The saved weights come back exactly (the checkpoint, not a fresh random init).
    again = language.causal_lm(str(folder))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_missing_checkpoint_names_the_path_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        language.causal_lm(str(tmp_path / "TinyStories-33M"), name="TinyStories-33M")
    msg = str(e.value)
    assert str(tmp_path / "TinyStories-33M") in msg and "hf download roneneldan/TinyStories-33M" in msg
    assert "\n" not in msg


def test_missing_or_short_text_is_one_line(tmp_path: Path, files) -> None:
    _, ckpt = files
    with pytest.raises(UserError, match="TinyStories text not found at .*nowhere.txt") as e:
        text_data.tinystories(4, str(tmp_path / "nowhere.txt"), str(ckpt))
    assert "\n" not in str(e.value)
    short = tmp_path / "short.txt"
    short.write_text("One tiny story.")
    with pytest.raises(UserError, match="holds only 0 blocks"):
        text_data.tinystories(4, str(short), str(ckpt), block_size=16, train_blocks=4, test_blocks=1)


def test_block_longer_than_the_context_is_refused(files) -> None:
    _, ckpt = files
    with pytest.raises(UserError, match=r"block_size=128 is longer than the context of tiny-lm \(64 tok"):
        language.causal_lm(str(ckpt), in_features=128)


def test_synthetic_stories_are_written_once_and_reused(tmp_path: Path) -> None:
    kwargs = {
        "num_stories": 200,
        "tiny_model": {"hidden_size": 16, "num_heads": 2, "vocab_size": 300, "context": 32},
        "block_size": 16,
        "train_blocks": 40,
        "test_blocks": 8,
    }
    d = text_data.synthetic_stories(8, str(tmp_path / "syn"), **kwargs)
    model_dir = tmp_path / "syn" / "model"
    stamp = (model_dir / "config.json").stat().st_mtime_ns
    again = text_data.synthetic_stories(8, str(tmp_path / "syn"), **kwargs)
    assert torch.equal(d.x_train, again.x_train)
    assert (model_dir / "config.json").stat().st_mtime_ns == stamp  # not rewritten
    assert language.causal_lm(str(model_dir), in_features=16, num_classes=d.num_classes).context == 32
    with pytest.raises(UserError, match="holds a stand-in made with other settings"):
        text_data.synthetic_stories(8, str(tmp_path / "syn"), **{**kwargs, "num_stories": 100})


def test_incomplete_checkpoint_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "gpt_neo"}')
    for load in (language.causal_lm, language.load_tokenizer):
        with pytest.raises(UserError, match="could not load a .* from .*broken") as e:
            load(str(tmp_path / "broken"))
        assert "\n" not in str(e.value)
