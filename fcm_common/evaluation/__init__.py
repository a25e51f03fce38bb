"""Judging results: MOT metrics the way the MPEG framework computes them, and BD-rate over RD curves."""
