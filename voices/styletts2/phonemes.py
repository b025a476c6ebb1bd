"""Text to StyleTTS2 phoneme tokens, word by word, with espeak-ng (the Debian binary).

Each word of a clause is read by ``espeak-ng -q --ipa`` in a subprocess (cached), so every
token knows the word it belongs to: the durations the model predicts per token then give word
timings. Punctuation around a word is kept as tokens (StyleTTS2 reads punctuation), spaces
separate words, and a pad token opens the sequence, as in StyleTTS2's inference. A
:class:`~voices.engine.PhonemeSpan` replaces espeak-ng for its characters. No downloads, no
nltk.

The symbol table is the published StyleTTS2 one (pad, punctuation, ASCII letters, IPA
letters and marks, in its order: a checkpoint's embedding rows index into it); it has
:data:`N_SYMBOLS` (178) entries and a model's ``n_token`` must be at least that. Characters
it does not know are skipped. As in the published inference (which word-tokenizes the
phonemes), punctuation around a word is set off from its phonemes by a space.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

from pipeline.errors import ModelError
from voices.engine import PhonemeSpan

__all__ = ["N_SYMBOLS", "SYMBOLS", "Phonemizer", "TokenizedClause", "Unit"]

PAD = "$"
_PUNCTUATION = ';:,.!?¡¿—…"«»“” '
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# the published order, including the apostrophe listed twice around U+0329 (the later wins)
_IPA = (
    "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢ"
    "ǀǁǂǃˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘'\u0329'ᵻ"
)
SYMBOLS: tuple[str, ...] = (PAD, *_PUNCTUATION, *_LETTERS, *_IPA)
N_SYMBOLS = len(SYMBOLS)
_INDEX = {symbol: i for i, symbol in enumerate(SYMBOLS)}
_SPACE = _INDEX[" "]
_WORD = re.compile(r"\S+")
_EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Unit:
    """``text[text_start:text_end]`` (clause offsets) is tokens ``[token_start, token_end)``."""

    text_start: int
    text_end: int
    token_start: int
    token_end: int


@dataclass(frozen=True, slots=True)
class TokenizedClause:
    """Token ids (the pad first) and the words that own them; units tile the tokens."""

    tokens: tuple[int, ...]
    units: tuple[Unit, ...]


def _ids(phonemes: str) -> list[int]:
    return [_INDEX[c] for c in phonemes if c in _INDEX]


class Phonemizer:
    """IPA for words through ``espeak-ng`` (``voice``: an espeak-ng voice such as ``en-us``)."""

    def __init__(self, voice: str = "en-us", *, binary: str = "espeak-ng", cache: int = 20_000):
        found = shutil.which(binary)
        if found is None:
            raise ModelError(f"StyleTTS2 needs {binary} for phonemes (apt-get install espeak-ng)")
        self._binary = found
        self.voice = voice
        self._cache: dict[str, str] = {}
        self._limit = cache
        self._lock = threading.Lock()

    def word(self, word: str) -> str:
        """The IPA of one word (no punctuation handling: see :meth:`tokenize`)."""
        with self._lock:
            cached = self._cache.get(word)
        if cached is not None:
            return cached
        try:
            done = subprocess.run(
                [self._binary, "-q", "--ipa", "-v", self.voice, "--stdin"],
                input=word.encode(),
                capture_output=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as error:
            raise ModelError(f"espeak-ng failed on a word: {error}") from error
        ipa = " ".join(done.stdout.decode(errors="replace").split())
        with self._lock:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[word] = ipa
        return ipa

    def tokenize(self, text: str, spans: tuple[PhonemeSpan, ...] = ()) -> TokenizedClause:
        """Tokens of ``text``; ``spans`` (offsets in ``text``) are read as their phonemes.

        Every token belongs to a unit: a word (with the space after it) or a phoneme span;
        the opening pad belongs to the first unit. A text without words has no units.
        """
        pieces: list[tuple[int, int, str]] = []  # (start, end, phonemes)
        position = 0
        for span in sorted(spans, key=lambda s: s.start):
            start = max(span.start, position)
            pieces += self._words(text, position, start)
            if span.end > start:
                pieces.append((start, span.end, span.phonemes))
            position = max(position, span.end)
        pieces += self._words(text, position, len(text))
        tokens = [_INDEX[PAD]]
        units: list[Unit] = []
        for i, (start, end, phonemes) in enumerate(pieces):
            first = 0 if i == 0 else len(tokens)
            tokens += _ids(phonemes)
            if i + 1 < len(pieces):
                tokens.append(_SPACE)
            units.append(Unit(start, end, first, len(tokens)))
        return TokenizedClause(tuple(tokens), tuple(units))

    def _words(self, text: str, start: int, end: int) -> list[tuple[int, int, str]]:
        out: list[tuple[int, int, str]] = []
        for match in _WORD.finditer(text, start, end):
            edge = _EDGE.match(match.group())
            assert edge is not None
            before, core, after = edge.groups()
            spoken = self.word(core) if core else ""
            parts = (before, spoken, after)
            out.append((match.start(), match.end(), " ".join(part for part in parts if part)))
        return out
