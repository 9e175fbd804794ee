"""serlib."""
