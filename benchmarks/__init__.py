"""``make bench``: performance and quality benchmarks of the hard-hat detector.

Run ``python -m benchmarks.run --help``. Each benchmark lives in its own module (``inference``,
``serving``, ``training``, ``real_data``, ``evaluator``) and runs in its own Python process, so
thread settings, mixed-precision policies and memory never leak from one into the next.
"""
