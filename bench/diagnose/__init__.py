"""vitship diagnose: where in the network an artifact departs from its fp32 sibling (per-layer divergence locator).

    from vitship.bench.diagnose import locate
    result = locate("artifacts/<model>", "onnx-int8")
    result.first_below()   # the first layer under the precision's cosine gate, or None
    result.worst(5)        # the layers that add the most divergence (see DiagnoseResult for the ranking)

The int8 export ladder asks the same locator which Linears to keep in float (``bench.int8_gate.diagnose_ranking``).
"""

from vitship.bench.diagnose.locate import locate
from vitship.bench.diagnose.result import DiagnoseError, DiagnoseResult, LayerDivergence

__all__ = ["DiagnoseError", "DiagnoseResult", "LayerDivergence", "locate"]
