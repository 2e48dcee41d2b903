"""An offline CLIP tokenizer built from generated ``vocab.json`` and ``merges.txt`` files.

The catalog's models must build without network access, so their tokenizer cannot come from the
hub. This module generates the two files a CLIP byte-level BPE tokenizer is made of and loads them
with :class:`transformers.CLIPTokenizer`:

* the vocabulary starts like CLIP's: the 256 byte-level characters, then the same characters with the
  ``</w>`` end-of-word marker, then one entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>``
  (so the end-of-text token has the highest id, as in CLIP);
* the merges are learned, with the classic BPE procedure, from a fixed list of common English and
  image-prompt words, so a typical prompt encodes into a handful of tokens.

Everything is deterministic: the same code always writes byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

__all__ = [
    "BOS_TOKEN",
    "CORPUS_WORDS",
    "EOS_TOKEN",
    "MODEL_MAX_LENGTH",
    "build_clip_tokenizer",
    "clip_vocab_and_merges",
    "default_tokenizer_dir",
    "generated_files_dir",
    "tokenizer_vocab_size",
    "write_clip_tokenizer_files",
    "write_generated_files",
]

#: CLIP's context length: every prompt is padded or truncated to this many tokens.
MODEL_MAX_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
_END_OF_WORD = "</w>"

#: Words the merges are learned from. Order does not matter (ties are broken lexicographically),
#: but changing the list changes the vocabulary, and with it every tiny model's text embeddings.
_CORPUS_TEXT = """
a an the of in on at to for with and or by from into over under above below near behind
is are was be it its this that these those there here very more most much many some no not
one two three four five six seven eight nine ten
photo photograph picture image painting drawing sketch illustration render portrait landscape
astronaut jungle cold color colors palette muted detailed detail high quality hd
cat cats dog dogs horse horses bird birds fish lion tiger bear fox wolf owl rabbit dragon
man woman men women person people child children girl boy old young face eyes hair hand hands
riding sitting standing walking running flying swimming holding wearing looking playing
mars moon sun sky star stars space planet earth ocean sea river lake beach mountain mountains
forest tree trees flower flowers garden field grass snow rain cloud clouds fog light dark night
city street road house building castle tower bridge room window door table chair car boat train
red orange yellow green blue purple pink white black gray grey brown gold golden silver
beautiful cinematic lighting sharp focus soft dramatic vibrant realistic photorealistic epic
style art artist digital oil watercolor studio trending concept fantasy science fiction
futuristic ancient medieval modern vintage retro abstract surreal minimalist
small large big tiny huge tall little long short bright warm cool glowing shiny
background foreground close up wide angle view shot camera lens depth field bokeh
morning evening sunset sunrise summer winter autumn spring
astronauts riding jungle palette muted detailed
"""

#: The words every generated tokenizer is built from (CLIP's merges, the T5 vocabulary), sorted.
CORPUS_WORDS: tuple[str, ...] = tuple(sorted(set(_CORPUS_TEXT.split())))


@lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet: every byte value mapped to one printable unicode character.

    Printable latin-1 bytes keep their own character; the others (controls, space, ...) are mapped,
    in increasing byte order, to the code points from 256 upwards.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping: dict[int, str] = {b: chr(b) for b in printable}
    next_code_point = 256
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(next_code_point)
            next_code_point += 1
    return dict(sorted(mapping.items()))


def _learn_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Classic BPE training over ``words`` until every word is a single symbol.

    Each word is split into characters, the last one carrying the ``</w>`` marker. At each step the
    most frequent adjacent pair is merged; ties go to the lexicographically smallest pair, which
    makes the result independent of dict ordering.
    """
    byte_chars = _byte_to_unicode()
    segmented: list[list[str]] = []
    for word in words:
        chars = [byte_chars[b] for b in word.encode("utf-8")]
        chars[-1] += _END_OF_WORD
        segmented.append(chars)

    merges: list[tuple[str, str]] = []
    while True:
        pair_counts: Counter[tuple[str, str]] = Counter()
        for symbols in segmented:
            pair_counts.update(pairwise(symbols))
        if not pair_counts:
            return merges
        best_count = max(pair_counts.values())
        best = min(pair for pair, count in pair_counts.items() if count == best_count)
        merges.append(best)
        for i, symbols in enumerate(segmented):
            merged: list[str] = []
            j = 0
            while j < len(symbols):
                if j + 1 < len(symbols) and (symbols[j], symbols[j + 1]) == best:
                    merged.append(symbols[j] + symbols[j + 1])
                    j += 2
                else:
                    merged.append(symbols[j])
                    j += 1
            segmented[i] = merged


@lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    """Cached, immutable form of :func:`clip_vocab_and_merges`."""
    alphabet = list(_byte_to_unicode().values())
    tokens: list[str] = [*alphabet, *(char + _END_OF_WORD for char in alphabet)]
    merges = _learn_merges(CORPUS_WORDS)
    seen = set(tokens)
    for left, right in merges:
        token = left + right
        if token not in seen:
            seen.add(token)
            tokens.append(token)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = tuple((token, index) for index, token in enumerate(tokens))
    return vocab, tuple(f"{left} {right}" for left, right in merges)


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """The generated vocabulary (token -> id) and the merges (``"left right"``, by rank)."""
    vocab, merges = _vocab_and_merges()
    return dict(vocab), list(merges)


def tokenizer_vocab_size() -> int:
    """Number of ids the generated tokenizer can produce (the minimum text-encoder vocab size)."""
    return len(_vocab_and_merges()[0])


def _file_contents() -> dict[str, bytes]:
    """The exact bytes of ``vocab.json`` and ``merges.txt``."""
    vocab, merges = clip_vocab_and_merges()
    vocab_json = json.dumps(vocab, ensure_ascii=False, indent=0, sort_keys=False) + "\n"
    merges_txt = "#version: 0.2 - generated by perfsuite\n" + "\n".join(merges) + "\n"
    return {"vocab.json": vocab_json.encode("utf-8"), "merges.txt": merges_txt.encode("utf-8")}


def generated_files_dir(kind: str, contents: dict[str, bytes]) -> Path:
    """A content-addressed folder in the temp dir for generated ``contents`` of one ``kind``.

    The folder name carries a hash of the files, so a changed vocabulary never reuses stale files.
    ``PERFSUITE_CACHE_DIR`` overrides the parent folder.
    """
    digest = hashlib.sha256(b"".join(contents.values())).hexdigest()[:16]
    parent = os.environ.get("PERFSUITE_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "perfsuite-cache")
    return Path(parent) / f"{kind}-{digest}"


def write_generated_files(target: Path, contents: dict[str, bytes]) -> Path:
    """Write ``contents`` (file name -> bytes) into ``target`` (created if needed) and return it.

    Files that already hold the right bytes are left alone; others are replaced atomically, so
    concurrent test workers never read a half-written file.
    """
    target.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        path = target / name
        if path.is_file() and path.read_bytes() == content:
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=target)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    return target


def default_tokenizer_dir() -> Path:
    """Where the CLIP files go when no directory is given (:func:`generated_files_dir`)."""
    return generated_files_dir("clip-tokenizer", _file_contents())


def write_clip_tokenizer_files(directory: str | Path | None = None) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` into ``directory`` (created if needed) and return it.

    Files that already hold the right bytes are left alone; others are replaced atomically.
    """
    target = Path(directory) if directory is not None else default_tokenizer_dir()
    return write_generated_files(target, _file_contents())


def build_clip_tokenizer(directory: str | Path | None = None) -> CLIPTokenizer:
    """A :class:`~transformers.CLIPTokenizer` loaded, offline, from freshly generated files.

    ``directory`` is where the files are written (default: :func:`default_tokenizer_dir`). The
    tokenizer pads and truncates to :data:`MODEL_MAX_LENGTH`; its pad token is ``<|endoftext|>``.
    """
    from transformers import CLIPTokenizer

    folder = write_clip_tokenizer_files(directory)
    return CLIPTokenizer.from_pretrained(
        str(folder),
        model_max_length=MODEL_MAX_LENGTH,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        local_files_only=True,
    )
