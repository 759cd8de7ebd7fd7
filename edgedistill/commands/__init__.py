"""Click commands, one module per family; loaded lazily by :mod:`edgedistill.cli`."""
