"""rnnlab: train, measure and explain recurrent networks on sequence tasks."""

__version__ = "0.1.0"
