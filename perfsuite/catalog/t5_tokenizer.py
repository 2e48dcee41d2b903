"""An offline T5 / UMT5 tokenizer (SentencePiece-style Unigram) built from a generated ``tokenizer.json``.

Flux, SD3 and Wan encode prompts with T5 (Flux, SD3) or UMT5 (Wan), whose tokenizers are Unigram
models over ``▁``-prefixed pieces. The catalog's models must build without network access, so this
module generates a small vocabulary of the same kind and loads it with the fast T5 tokenizer class
of transformers:

* ids 0, 1, 2 are ``<pad>``, ``</s>`` and ``<unk>``, as in T5 and UMT5;
* then ``▁`` (word start), every printable ASCII character (so any ASCII prompt encodes), and one
  ``▁word`` piece per word of the shared prompt corpus (:data:`.tokenizer.CORPUS_WORDS`), lower-case
  and capitalised; whole words score higher than their characters, so a typical prompt encodes into
  one piece per word;
* a prompt is followed by ``</s>`` and padded with ``<pad>``, as in T5.

Every prompt is padded to the pipeline's ``max_sequence_length``, so the compute of the text encoder
and the transformer does not depend on this vocabulary. The file bytes depend only on this code and
the installed ``tokenizers`` version (the folder is content-addressed).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tokenizer import CORPUS_WORDS, generated_files_dir, write_generated_files

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "EOS_TOKEN",
    "PAD_TOKEN",
    "T5_MODEL_MAX_LENGTH",
    "UNK_TOKEN",
    "build_t5_tokenizer",
    "t5_tokenizer_vocab_size",
    "t5_vocab",
    "write_t5_tokenizer_files",
]

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
_WORD_START = "\u2581"  # "▁", SentencePiece's word-start marker
#: Log-probability scores of the Unigram pieces: the Viterbi segmentation prefers one word piece
#: (one score) over several characters (one score each).
_SPECIAL_SCORE, _MARKER_SCORE, _WORD_SCORE, _CHAR_SCORE = 0.0, -2.0, -5.0, -10.0
#: The longest prompt the tokenizer accepts without a max_length (T5's default).
T5_MODEL_MAX_LENGTH = 512


@lru_cache(maxsize=1)
def _vocab() -> tuple[tuple[str, float], ...]:
    pieces: list[tuple[str, float]] = [
        (PAD_TOKEN, _SPECIAL_SCORE),
        (EOS_TOKEN, _SPECIAL_SCORE),
        (UNK_TOKEN, _SPECIAL_SCORE),
        (_WORD_START, _MARKER_SCORE),
    ]
    pieces += [(chr(code), _CHAR_SCORE) for code in range(ord("!"), ord("~") + 1)]
    words = dict.fromkeys(form for word in CORPUS_WORDS for form in (word, word.capitalize()))
    pieces += [(_WORD_START + word, _WORD_SCORE) for word in words]
    return tuple(pieces)


def t5_vocab() -> list[tuple[str, float]]:
    """The generated Unigram vocabulary: ``(piece, score)`` by id."""
    return list(_vocab())


def t5_tokenizer_vocab_size() -> int:
    """Number of ids the generated tokenizer can produce (the minimum text-encoder vocab size)."""
    return len(_vocab())


def _tokenizer_json() -> bytes:
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram(t5_vocab(), unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=_WORD_START, prepend_scheme="always", split=True),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_WORD_START, prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", EOS_TOKEN], pair=["$A", EOS_TOKEN, "$B", EOS_TOKEN], special_tokens=[(EOS_TOKEN, 1)]
    )
    return (tokenizer.to_str(pretty=True) + "\n").encode("utf-8")


@lru_cache(maxsize=1)
def _file_contents() -> tuple[tuple[str, bytes], ...]:
    return (("tokenizer.json", _tokenizer_json()),)


def write_t5_tokenizer_files(directory: str | Path | None = None) -> Path:
    """Write ``tokenizer.json`` into ``directory`` (default: a content-addressed temp folder)."""
    contents = dict(_file_contents())
    target = Path(directory) if directory is not None else generated_files_dir("t5-tokenizer", contents)
    return write_generated_files(target, contents)


def build_t5_tokenizer(directory: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The fast T5 tokenizer of transformers, loaded offline from a freshly generated ``tokenizer.json``.

    It serves T5 (Flux, SD3) and UMT5 (Wan) encoders alike: both use ``<pad>``/``</s>``/``<unk>`` at
    ids 0/1/2. No sentinel (``<extra_id_N>``) tokens are added.
    """
    import transformers

    # transformers 5 names the tokenizers-backed class T5Tokenizer (T5TokenizerFast is its alias);
    # in transformers 4, T5Tokenizer is the SentencePiece one and T5TokenizerFast reads tokenizer.json.
    tokenizer_class: Any = getattr(transformers, "T5TokenizerFast", None) or transformers.T5Tokenizer
    folder = write_t5_tokenizer_files(directory)
    tokenizer: Any = tokenizer_class.from_pretrained(
        str(folder),
        extra_ids=0,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=T5_MODEL_MAX_LENGTH,
        local_files_only=True,
    )
    return tokenizer
