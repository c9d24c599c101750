"""ClArC Studio backend: find shortcut biases in image classifiers and unlearn them (RR-ClArC and baselines).

The library never imports streamlit; the dashboard (`app/`) and the CLI (`python -m backend`) are its clients.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
