"""serlib: a notebook-driven research workbench for speech emotion recognition."""

__version__ = "0.1.0"
