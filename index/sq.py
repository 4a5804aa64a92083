"""fp16 scalar quantisation (FAISS): a brute-force scan over half-precision codes."""
from __future__ import annotations

from vecdb.index.faiss_base import FaissIndex, _faiss

__all__ = ["SQFP16Index"]


class SQFP16Index(FaissIndex):
    """``faiss.IndexScalarQuantizer(d, QT_fp16, metric)``: exhaustive, half the memory of float32.

    fp16 keeps about 3 significant digits, so rankings are nearly exact; ``rescore`` r >= 1
    re-ranks r*k candidates on the original vectors and returns exact scores. An allow-list
    goes to FAISS as a selector: only allowed rows are scored, nothing needs widening.
    """

    kind = "sq_fp16"
    pad_to = 8

    def _new(self, n: int):
        f = _faiss()
        return f.IndexScalarQuantizer(self._fdim, f.ScalarQuantizer.QT_fp16, self.faiss_metric)

    def _search(self, q, k, allowed, count, p, ran):
        rescore = p["rescore"]
        kk = k * rescore if rescore else k
        sel, bits = self._selector(allowed)
        sp = _faiss().SearchParameters()
        if sel is not None:
            sp.sel = sel
        D, I = self._index.search(self._fx(q), kk, params=sp)
        del sel, bits       # kept alive until FAISS returned
        return self._finish(q, k, D, I, rescore)

    def memory_bytes(self) -> int:
        return 0 if self._index is None else int(_faiss().downcast_index(self._index).codes.size())
