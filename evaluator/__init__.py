"""edl: the evaluator of an energy-efficiency competition for CIFAR-10 classifiers."""

__version__ = "0.1.0"
