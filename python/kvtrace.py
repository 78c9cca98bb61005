"""kvtrace.py — read kvtrace attention traces (format 2) from Python with h5py and numpy.

A trace stores every attention row (``kvtrace record --rows all``), some of them, or
none: rows it does not store are rebuilt here from the recorded queries and keys the
way the C reader rebuilds them (trace/trace_rebuild.c): scores ``attn_scale * q . k``
in float32 (through ``cap * tanh(s / cap)`` when the trace has a softcap), the layer's
mask (a sliding window when the trace says so), then a float32 softmax with the
maximum subtracted.  Rebuilt rows agree with the C reader's to float32
rounding (the C side's exp and summation order differ in the last bits).

    import kvtrace
    with kvtrace.open("trace.h5") as tr:
        print(tr.steps, tr.layers, tr.heads, tr.texts[:5])
        A = tr.rows(layer=15, head=3)              # (T, T) float32, causal
        r = tr.rows(15, 3, t0=100, t1=101)[0, :101]
        K = tr.keys(15, kv_head=1)                 # (T, head_dim), post-RoPE

Layers and heads are the model's numbers (as in ``/layers`` and ``/heads``).  Queries
and keys are in the GGUF's dimension order: for llama-family GGUFs RoPE pairs adjacent
dimensions, so dimension 2i+j here is dimension (D/2)*j+i of the Hugging Face model
(docs/TRACE_FORMAT.md, "Dimension order"); rows do not depend on it.

Needs numpy and h5py only (Debian: python3-numpy python3-h5py).  Install with
``pip install ./python`` or put this file on the path.
"""

import h5py
import numpy as np

__all__ = ["open", "Trace", "FORMAT_VERSION"]

FORMAT_VERSION = 2
_F32 = np.float32


def _text(value):
    """A fixed-length string attribute (h5py gives bytes) as str."""
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


class Trace:
    """One open trace; use as a context manager or call close()."""

    def __init__(self, path):
        # swmr: a trace that is still being written, or whose writer was killed, opens
        # as it stood at its last flushed batch (docs/TRACE_FORMAT.md, "Completeness").
        try:
            self._f = h5py.File(path, "r", swmr=True, locking=False)
        except TypeError:                    # h5py < 3.5 has no locking argument
            self._f = h5py.File(path, "r", swmr=True)
        f, a = self._f, self._f.attrs
        if _text(a.get("format", b"")) != "kvtrace":
            raise ValueError(f"{path}: not a kvtrace trace")
        if int(a["format_version"]) != FORMAT_VERSION:
            raise ValueError(f"{path}: format {int(a['format_version'])}, this reader "
                             f"reads {FORMAT_VERSION}")
        if _text(a["mask"]) != "causal":
            raise ValueError(f"{path}: attention mask '{_text(a['mask'])}' is unknown")
        self.path = path
        self.steps = int(f["status/steps"][()])
        self.complete = bool(f["status/complete"][()])
        self.layers = [int(x) for x in f["layers"][:]]
        self.heads = [int(x) for x in f["heads"][:]]
        self.kv_heads = [int(x) for x in f["kv_heads"][:]]
        self.window = [int(x) for x in f["attn/window"][:]]
        self.group = int(a["n_head"]) // int(a["n_head_kv"])
        self.scale = _F32(a["attn_scale"])
        self.prompt = bytes(f["prompt"][:]).decode("utf-8", "replace")
        T = self.steps
        self.tokens = f["tokens/id"][:T]
        self.phase = f["tokens/phase"][:T]
        ends = f["tokens/text_end"][:T]
        raw = bytes(f["tokens/text_bytes"][: int(ends[-1]) if T else 0])
        starts = np.concatenate([[0], ends[:-1]]).astype(int) if T else []
        self.texts = [raw[s:e].decode("utf-8", "replace") for s, e in zip(starts, ends)]
        self.prompt_len = int(np.argmax(self.phase != 0)) if (self.phase != 0).any() else T
        if "attn/row_layers" in f:
            self._row_layers = [int(x) for x in f["attn/row_layers"][:]]
            self._row_heads = [int(x) for x in f["attn/row_heads"][:]]
        else:
            self._row_layers, self._row_heads = [], []
        self.softcap = _F32(a["attn_softcap"])

    # -- what the trace holds ---------------------------------------------------------

    def stored(self, layer, head):
        """True when the rows of (layer, head) are stored, False when rebuilt."""
        return layer in self._row_layers and head in self._row_heads

    def _li(self, layer):
        return self.layers.index(layer)

    def _ki(self, head):
        return self.kv_heads.index(head // self.group)

    def keys(self, layer, kv_head):
        """(T, head_dim) float32 post-RoPE keys of a KV head."""
        return self._f["kv/keys"][self._li(layer), self.kv_heads.index(kv_head),
                                  : self.steps].astype(_F32)

    def values(self, layer, kv_head):
        """(T, head_dim) float32 values of a KV head."""
        return self._f["kv/values"][self._li(layer), self.kv_heads.index(kv_head),
                                    : self.steps].astype(_F32)

    def queries(self, layer, head, t0=0, t1=None):
        """(t1-t0, head_dim) float32 post-RoPE queries, before attn_scale."""
        t1 = self.steps if t1 is None else t1
        return self._f["kv/queries"][self._li(layer), self.heads.index(head),
                                     t0:t1].astype(_F32)

    # -- rows -------------------------------------------------------------------------

    def rows(self, layer, head, t0=0, t1=None):
        """Rows t0..t1-1 of (layer, head): float32 (t1-t0, t1); row t gives the
        probabilities over keys 0..t and zeros after (and before a window)."""
        t1 = self.steps if t1 is None else t1
        if not 0 <= t0 < t1 <= self.steps:
            raise IndexError(f"steps {t0}..{t1 - 1} outside 0..{self.steps - 1}")
        if self.stored(layer, head):
            li, hi = self._row_layers.index(layer), self._row_heads.index(head)
            return self._f["attn/probs"][li, hi, t0:t1, :t1].astype(_F32)
        return self._rebuild(layer, head, t0, t1)

    def _rebuild(self, layer, head, t0, t1):
        q = self.queries(layer, head, t0, t1)
        k = self._f["kv/keys"][self._li(layer), self._ki(head), :t1].astype(_F32)
        scores = (q @ k.T) * self.scale                  # float32, (t1-t0, t1)
        if self.softcap > 0:
            scores = (self.softcap * np.tanh(scores / self.softcap)).astype(_F32)
        t = np.arange(t0, t1)[:, None]
        j = np.arange(t1)[None, :]
        w = self.window[self._li(layer)]
        visible = (j <= t) & ((j > t - w) if w > 0 else True)
        scores = np.where(visible, scores, -np.inf).astype(_F32)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores, dtype=_F32)
        p /= p.sum(axis=1, dtype=_F32, keepdims=True)
        return p

    # -- life -------------------------------------------------------------------------

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open(path):  # noqa: A001 - the module's verb, as in h5py.File
    """Open a trace for reading."""
    return Trace(path)
