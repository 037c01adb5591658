"""Auditing the query store: can the labels be trusted?

- ``stats``: label-quality numbers (agreement with ground truth, by return gap, confusion, flips).
- ``plots``: matplotlib PNGs of those numbers.
- ``report``: one self-contained HTML report of a store (``rlvlmf queries audit``).
- ``export``: JSON lines / Parquet datasets of the store, and import back.
- ``relabel``: human labels from a CSV, stored beside the VLM's answers.
- ``cli``: the ``rlvlmf queries`` sub-commands for the above.

Nothing is imported here, so ``import rlvlmf.audit.stats`` does not load matplotlib.
"""
