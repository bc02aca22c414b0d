"""servesim: predict and explain the performance of LLM inference serving."""

__version__ = "0.1.0"
