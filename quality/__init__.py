"""Quality: QC metrics measured on delivered media, and the Great Expectations suites that
judge them (segment, deliverable, lineage completeness) into verdicts.

``quality.judge.Judge`` is the entry point; thresholds live in ``quality/thresholds.toml``.
Nothing here imports Great Expectations until a Judge is made or Data Docs are built.
"""
