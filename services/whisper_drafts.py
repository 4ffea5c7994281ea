"""The draft path: quick tentative text of open utterances, several sessions' in one model call.

Each window is encoded padded only to its own length plus three seconds instead of Whisper's
fixed 30 s, the idea behind whisper.cpp's `audio_ctx`: CTranslate2's encoder accepts shorter
inputs, and a 4 s window then encodes in ~15 ms instead of ~200 ms. Short-padded decoding
sometimes loops back to the start of the window once the real audio runs out, or stops before
its last words (far-field talkers): drafts are budgeted in tokens and trimmed where they repeat
their own opening, and the padding is 3 s rather than 1 (on the AMI excerpts, four start offsets
each: word lag p50 0.1-0.5 s lower, p90 up to 6 s lower, for draft CPU +2-19 %).

Decoding is greedy and never falls back to sampling. The windows of a call are padded to the
longest and decoded together: a greedy decoder step reads all the decoder's weights whatever the
batch, so eight drafts cost little more than one. CTranslate2 wants the start token at the same
place in every prompt of a call, so the prompted windows share the shortest prompt among them
(each keeps its latest words) and the unprompted ones go in a call of their own.

Blocking model work: call it on the inference executor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_ctranslate2_storage

from services.errors import ASRError
from services.transcript_words import trim_self_repetition
from services.types import SAMPLE_RATE, DraftRequest

PAD_FRAMES = 300  # 3 s of silence after a draft window (log-mel frames of 10 ms): see above
TOKENS_PER_SECOND = 5
PROMPT_TOKENS = 8  # read in one decoder pass, yet its length costs; 8 drafted as well as 16 on AMI
_MAX_FRAMES = 3000


class WhisperDrafts:
    """Greedy short-padded drafts with one faster-whisper model."""

    def __init__(self, model: WhisperModel, tokenizer: Tokenizer) -> None:
        self._model = model
        self._tokenizer = tokenizer

    def decode(self, requests: Sequence[DraftRequest]) -> list[str]:
        """The draft text of each request, in order.

        Raises:
            ASRError: CTranslate2 failed on a call.
        """
        texts: list[str] = [""] * len(requests)
        previous = [self._previous_tokens(request.prompt) for request in requests]
        shortest = min((len(tokens) for tokens in previous if tokens), default=0)
        for prompted in (False, True):
            group = [i for i, tokens in enumerate(previous) if bool(tokens) is prompted]
            if group:
                prompts = [self._prompt(previous[i][len(previous[i]) - shortest :]) for i in group]
                for i, text in zip(group, self._decode_group([requests[i] for i in group], prompts), strict=True):
                    texts[i] = text
        return texts

    def _decode_group(self, requests: list[DraftRequest], prompts: list[list[int]]) -> list[str]:
        features = [self._model.feature_extractor(request.audio) for request in requests]
        frames = min(max(f.shape[-1] for f in features) + PAD_FRAMES, _MAX_FRAMES)
        batch = np.stack([np.pad(f, ((0, 0), (0, max(0, frames - f.shape[-1]))))[:, :frames] for f in features])
        budgets = [int(8 + len(request.audio) / SAMPLE_RATE * TOKENS_PER_SECOND) for request in requests]
        try:
            encoded = self._model.model.encode(get_ctranslate2_storage(batch), to_cpu=False)
            results = self._model.model.generate(
                encoded,
                prompts,
                beam_size=1,
                max_length=len(prompts[0]) + max(budgets),
                suppress_blank=True,
                suppress_tokens=[-1],
            )
        except RuntimeError as exc:
            raise ASRError(f"draft decoding failed: {exc}") from exc
        texts = []
        for result, budget in zip(results, budgets, strict=True):
            # each window keeps what it would have had alone: CTranslate2 stops at half of max_length
            kept = result.sequences_ids[0][: min((len(prompts[0]) + budget) // 2, budget)]
            ids = [token for token in kept if token < self._tokenizer.eot]
            texts.append(trim_self_repetition(self._tokenizer.decode(ids).strip()))
        return texts

    def _previous_tokens(self, prompt: str) -> list[int]:
        return self._tokenizer.encode(" " + prompt.strip())[-PROMPT_TOKENS:] if prompt.strip() else []

    def _prompt(self, previous: list[int]) -> list[int]:
        context = [self._tokenizer.sot_prev, *previous] if previous else []
        return [*context, *self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
