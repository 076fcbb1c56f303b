"""Power measurement: one module per source (``nvml``, ``rapl``) behind a small interface (``base``),
the sampler process (``sampler``), the meter a workload drives (``meter``), and the pure window
arithmetic (``analysis``). It imports nothing from the rest of the evaluator but the error types."""
