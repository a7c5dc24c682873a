"""The pieces of `python -m deltamem.bench`: settings and timing, the model lanes, peak memory, the scan forms, and
the report. Each mode lives in its own module so that a reader finds what a number means next to the code that
measures it.
"""
