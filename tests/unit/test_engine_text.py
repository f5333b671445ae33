"""Issue 17 #3: the server's text of an answer that ends inside a multi-byte character.

`TextTracker.finish` must flush what the incremental decoder held back, so the text is
`decode(completion_token_ids)`, as `run`'s is; with the tiny models' real byte-level tokenizer
and with hand-made byte tokens.
"""

from __future__ import annotations

import pytest

from edge_hired.models.tiny import build_tokenizer
from edge_hired.serve.detokenize import TextTracker

PIECES = [b"ok ", b"\xe6", b"\x97", b"\xa5", b"\xf0", b"\x9f", b"\x98", b"\x80"]  # 日, then 😀


def byte_decode(ids: list[int]) -> str:
    return b"".join(PIECES[i] for i in ids).decode("utf-8", "replace")


def streamed(tracker: TextTracker, ids: list[int]) -> str:
    return "".join(tracker.feed(i) for i in ids) + tracker.finish()


@pytest.mark.parametrize("cut", [2, 3, 5, 6, 7])  # inside 日 or inside 😀
def test_an_answer_cut_inside_a_character_keeps_its_end(cut: int) -> None:
    ids = list(range(cut))
    assert streamed(TextTracker(byte_decode), ids) == byte_decode(ids)
    assert byte_decode(ids).endswith("\ufffd")


def test_whole_characters_are_sent_once_complete() -> None:
    tracker = TextTracker(byte_decode)
    assert [tracker.feed(i) for i in range(4)] == ["ok ", "", "", "日"]
    assert tracker.finish() == ""


def test_the_byte_level_tokenizer_splits_an_emoji_and_the_text_is_its_decode() -> None:
    tokenizer = build_tokenizer()
    ids = tokenizer.encode("a cat 😀 日本", add_special_tokens=False)
    decode = lambda part: tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
    cuts = [n for n in range(1, len(ids) + 1) if decode(ids[:n]).endswith("\ufffd")]
    assert cuts  # the emoji or the CJK characters take several byte tokens
    for n in [*cuts, len(ids)]:
        assert streamed(TextTracker(decode), ids[:n]) == decode(ids[:n])


def test_a_stop_string_in_the_flushed_end_still_cuts() -> None:
    tracker = TextTracker(byte_decode, ("\ufffd",))
    assert streamed(tracker, [0, 1]) == "ok " and tracker.stopped
