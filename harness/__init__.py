"""bon-harness: one yardstick for Best-of-N alignment methods."""

__version__ = "0.1.0"
