"""`fim-server eval`: the whole pipeline scored on public infilling benchmarks.

tasks.py reads the suites (HumanEval-Infilling, SAFIM) from `benchmarks/data/`;
run.py sends each task through the engine and scores it; sandbox.py runs the completed
programs with limits.
"""
