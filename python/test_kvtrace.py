"""test_kvtrace.py FREE.h5 ROWS.h5 — the Python reader against the C recorder.

FREE is a row-free trace (kvtrace record --rows none --dtype f32) and ROWS the same
prompt with every row stored in f32 (--rows all --dtype f32 --qk-dtype f32), whose rows
are the forward pass's.  Rows the reader rebuilds from FREE must equal them within
float32 rounding (1e-5: numpy's matmul and exp round differently from the C side's,
and a logit of 30 carries that difference into the probability); tokens, texts and
values must be the same.  Run by
tests/test_trace_rebuild.c when numpy and h5py are there.
"""
import sys

import numpy as np

import kvtrace


def main(free_path, rows_path):
    worst = 0.0
    with kvtrace.open(free_path) as free, kvtrace.open(rows_path) as rows:
        assert free.steps == rows.steps and free.complete and rows.complete
        assert list(free.tokens) == list(rows.tokens) and free.texts == rows.texts
        assert free.prompt == rows.prompt and free.prompt_len == rows.prompt_len
        for layer in free.layers:
            for head in free.heads:
                assert not free.stored(layer, head) and rows.stored(layer, head)
                a = free.rows(layer, head)
                b = rows.rows(layer, head)
                assert a.shape == b.shape == (free.steps, free.steps)
                worst = max(worst, float(np.abs(a - b).max()))
            for kv in free.kv_heads:
                assert np.array_equal(free.values(layer, kv), rows.values(layer, kv))
        tail = free.rows(free.layers[0], free.heads[0], t0=free.steps - 3)
        assert tail.shape == (3, free.steps)
    print(f"python reader: rebuilt rows vs the forward pass's, max |dp| {worst:.3g}")
    assert worst <= 1e-5, worst
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
