"""Side-by-side benchmark harness: Wherry against uvicorn, granian, hypercorn and daphne.

Entry point: ``python3 bench/run.py`` (see ``bench/README.md``).
"""
