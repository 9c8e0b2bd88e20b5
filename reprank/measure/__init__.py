"""Measurement: judging answers, intervals, discrimination (d'), the matched-strength frontier, compute."""
