"""Cost meters shared by every task: latency, FLOPs, model size, peak memory, hardware/software fingerprint."""

from autotradeoff.cost import alone
from autotradeoff.cost.flops import count_flops
from autotradeoff.cost.latency import Anchor, LatencyStats, measure_latency, measure_parts
from autotradeoff.cost.memory import PeakMemory
from autotradeoff.cost.size import model_size

__all__ = ["Anchor", "LatencyStats", "PeakMemory", "alone", "count_flops", "measure_latency", "measure_parts", "model_size"]
