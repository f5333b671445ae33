"""The streamer emits exactly the answer's text, decoding a short window per token (O(n) total)."""

from __future__ import annotations

import random

import torch

from edge_hired.runtime.generation import TimingStreamer

# Byte pieces like a byte-fallback tokenizer's: words with a leading space, and the two bytes of
# "é" and the four of an emoji as separate tokens, so characters are split across tokens.
PIECES = [b" the", b" cat", b"s", b" sat", b"\xc3", b"\xa9", b"\xf0", b"\x9f", b"\x98", b"\x80"]
EMOJI = [6, 7, 8, 9]


class CountingDecoder:
    """Decodes like SentencePiece (a leading space is dropped) and counts the tokens it is given."""

    def __init__(self) -> None:
        self.tokens_decoded = 0

    def __call__(self, ids: list[int]) -> str:
        self.tokens_decoded += len(ids)
        return b"".join(PIECES[i] for i in ids).decode("utf-8", "replace").removeprefix(" ")


def stream(ids: list[int]) -> tuple[list[str], CountingDecoder]:
    decoder, pieces = CountingDecoder(), []
    streamer = TimingStreamer(decoder, pieces.append)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt: ignored
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    return pieces, decoder


def test_pieces_join_to_the_whole_decode_and_split_characters_wait() -> None:
    ids = [0, 1, 4, 5, 2, *EMOJI, 3]
    pieces, _ = stream(ids)
    assert "".join(pieces) == "the catés😀 sat"
    assert "\ufffd" not in "".join(pieces)
    assert pieces[:3] == ["the", " cat", "é"]  # "é" only once both of its bytes arrived


def test_random_answers_stream_exactly_with_linear_decode_work() -> None:
    rng = random.Random(0)
    for _ in range(50):
        ids: list[int] = []
        while len(ids) < 400:
            ids += EMOJI if rng.random() < 0.1 else [rng.choice([0, 1, 2, 3])]
        pieces, decoder = stream(ids)
        whole = CountingDecoder()(ids)
        assert "".join(pieces) == whole
        # each token is decoded a bounded number of times (window: emitted last + unread;
        # an emoji waits for 4 tokens), where re-decoding the whole answer costs ~n^2 / 2 = 80,000
        assert decoder.tokens_decoded <= 8 * len(ids)


def test_only_the_first_token_is_timestamped() -> None:
    streamer = TimingStreamer(CountingDecoder())
    streamer.put(torch.tensor([[1]]))
    assert streamer.first_token_at is None
    streamer.put(torch.tensor([0]))
    first = streamer.first_token_at
    streamer.put(torch.tensor([1]))
    assert first is not None and streamer.first_token_at == first
    assert streamer.token_ids == [0, 1]
