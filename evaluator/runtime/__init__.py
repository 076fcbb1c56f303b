"""onnxruntime on the provider asked for: availability (``providers``), pinned sessions (``session``),
and the test set resident on the device with passes over it (``runner``)."""
