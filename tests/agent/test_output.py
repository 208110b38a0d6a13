"""When captured output is handed out to be stored (agent.output.OutputCapture): fast
output a MiB at a time, slow output within flush_seconds of being printed."""

from agent.output import STDERR, STDOUT, STORE_BATCH_BYTES, OutputCapture

KIB = 1024


def capture() -> OutputCapture:
    return OutputCapture(max_bytes=64 * 1024 * KIB, flush_bytes=64 * KIB, flush_seconds=0.2)


def test_fast_output_is_handed_out_once_a_mib_of_chunks_is_ready():
    out = capture()
    line = b"x" * 1023 + b"\n"
    fed = 0
    while not out.due(now=0.0):
        out.feed(STDOUT, line * 64, now=0.0)
        fed += 64 * KIB
        assert fed <= STORE_BATCH_BYTES + 64 * KIB, "never due"
    chunks = out.take(now=0.0)
    assert fed >= STORE_BATCH_BYTES
    assert all(len(c.message) <= 64 * KIB for c in chunks)  # still chunks of 64 KiB
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert "".join(c.message for c in chunks) == (line * (fed // KIB)).decode()
    assert not out.due(now=0.0)


def test_slow_output_is_due_within_flush_seconds_of_its_oldest_line():
    out = capture()
    out.feed(STDOUT, b"first\n", now=10.0)
    assert not out.due(now=10.1)
    out.feed(STDERR, b"second\n", now=10.15)
    assert out.due(now=10.25)  # counted from the oldest output, not the newest
    assert [(c.stream, c.message) for c in out.take(now=10.25)] == [(STDOUT, "first\n")]
    # Each line within flush_seconds of being printed, not sooner.
    assert not out.due(now=10.3)
    assert out.due(now=10.4)
    assert [(c.stream, c.message) for c in out.take(now=10.4)] == [(STDERR, "second\n")]


def test_a_full_chunk_waits_for_company_but_not_past_flush_seconds():
    out = capture()
    out.feed(STDOUT, b"y" * (64 * KIB - 1) + b"\n", now=5.0)  # one whole chunk, cut at once
    assert not out.due(now=5.1)
    assert out.due(now=5.2)
    assert len(out.take(now=5.2)) == 1
