"""The incremental decoder emits exactly the answer's text, a short window per token (O(n))."""

from __future__ import annotations

import random

from edge_hired.runtime.detokenize import IncrementalDecoder

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
    decoder = CountingDecoder()
    text = IncrementalDecoder(decoder)
    pieces = [text.add((token,)) for token in ids] + [text.flush()]
    return [piece for piece in pieces if piece], decoder


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


def test_an_answer_cut_inside_a_character_is_flushed_at_the_end() -> None:
    ids = [0, 1, *EMOJI[:2]]  # max_tokens stopped the answer after two of the emoji's bytes
    pieces, _ = stream(ids)
    assert pieces == ["the", " cat", "\ufffd"] and "".join(pieces) == CountingDecoder()(ids)
