"""Reports from results on disk: loading, metrics (errors, CIs, CE/mCE, calibration), summaries, tables, plots,
gallery; ``run.run_report`` writes them all.

Reads only what the engine wrote (``results.csv`` and the per-image records), never the engine itself.
"""
