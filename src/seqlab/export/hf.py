"""The Hugging Face export: a learned-position GPT run as a ``GPT2LMHeadModel`` folder (``from_pretrained``).

The weights go through ``seqlab.models.gpt_hf`` (the one mapping, used by ``GPT.from_hf`` too). The
folder is Hugging Face's: its ``config.json`` is GPT-2's, so seqlab's own record (model config,
source run, data fingerprint) is ``seqlab.json``. A character vocabulary also becomes a
``tokenizers`` tokenizer (one token per character), loadable with ``AutoTokenizer``; a word
vocabulary is described in README.md and vocab.json instead.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from ..models.gpt_hf import check_gpt2_compatible, gpt2_config_values, to_gpt2_state_dict
from .common import SEQLAB_FILE, VOCAB_FILE, ExportedRun, config_json, vocab_json, write_json

README = """\
# {name}: a seqlab GPT as Hugging Face GPT-2

Exported by `seqlab export {run_dir} --format hf` (checkpoint {checkpoint}, step {step}).

```python
from transformers import GPT2LMHeadModel{tok_import}
model = GPT2LMHeadModel.from_pretrained("path/to/this/folder")
{tok_lines}```

{vocab_note}

The model has {vocab_size} tokens and a context of {block_size}. It was trained on a plain token stream:
it has no beginning- or end-of-text token, so `generate` runs for `max_new_tokens` (pass
`pad_token_id=0`).
`seqlab.json` records the seqlab model config, the source run and its data files (size and sha256).
"""


def _is_characters(run: ExportedRun) -> bool:
    vocab = run.vocabularies.get("vocab")
    return vocab is not None and run.token_separator == "" and all(len(t) == 1 for t in vocab.itos)


def _tokenizer(vocab):
    """A fast tokenizer that splits text into characters and maps each to the seqlab id; decoding joins them."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab.itos)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character, \n too
    tok.decoder = decoders.Fuse()  # characters join with nothing between them
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def write_hf(run: ExportedRun, out: Path) -> None:
    """GPT-2's config.json and model.safetensors, a character tokenizer, seqlab.json, vocab.json, README.md."""
    if run.exp.model.name != "gpt":
        raise ConfigError(f"--format hf exports GPT runs (as GPT-2); this run's model is {run.exp.model.name!r}")
    try:
        check_gpt2_compatible(run.exp.model)
    except ValueError as err:
        raise ConfigError(f"--format hf: {err}; use --format safetensors or onnx") from None
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging as hf_logging
    except ImportError as err:
        raise ConfigError(f"--format hf needs the transformers package ({err}): pip install 'seqlab[hf]'") from None

    hf = GPT2LMHeadModel(GPT2Config(**gpt2_config_values(run.exp.model)))
    missing, unexpected = hf.load_state_dict(to_gpt2_state_dict(run.model), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # lm_head is wte when tied
        raise RuntimeError(f"GPT-2 mapping out of date: missing {missing}, unexpected {unexpected}")
    hf_logging.disable_progress_bar()  # its "Writing model shards" bar is not the user's business
    try:
        hf.eval().save_pretrained(str(out))
    finally:
        hf_logging.enable_progress_bar()
    known = {"config.json": "GPT-2's config", "model.safetensors": "GPT-2's weights"}
    # whatever else save_pretrained writes (generation_config.json): listed, so that --force may replace the folder
    files = {p.name: known.get(p.name, "written by transformers' save_pretrained") for p in sorted(out.iterdir())}
    characters = _is_characters(run)
    if characters:
        files |= {Path(f).name: "tokenizer" for f in _tokenizer(run.vocabularies["vocab"]).save_pretrained(str(out))}
    if run.vocabularies:
        write_json(out / VOCAB_FILE, vocab_json(run))
        files[VOCAB_FILE] = "token <-> id, seqlab's form"
    c = run.exp.model
    (out / "README.md").write_text(
        README.format(
            name=run.run_dir.name,
            run_dir=run.run_dir,
            checkpoint=run.checkpoint,
            step=run.step,
            tok_import=", AutoTokenizer" if characters else "",
            tok_lines='tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")\n' if characters else "",
            vocab_note=(
                "The tokenizer reads one token per character, with the ids seqlab trained with."
                if characters
                else "No tokenizer is included: the run's vocabulary is not one token per character. "
                "vocab.json lists the tokens by id (`itos[i]` is token i), joined by its `token_separator`."
            ),
            vocab_size=c.vocab_size,
            block_size=c.block_size,
        ),
        encoding="utf-8",
    )
    files["README.md"] = "how to load it"
    write_json(out / SEQLAB_FILE, config_json(run, "hf", files))
