"""``make reproduce``: the paper's experiments end to end, multi-seed, with a paper-vs-ours report.

Modules: :mod:`.profile` (validated profiles), :mod:`.plan` (runs, identity, rerun commands), :mod:`.execute`
(resume from MLflow, worker processes, progress, Ctrl-C), :mod:`.results` (runs read back from MLflow),
:mod:`.verdicts` (the claims and their rules), :mod:`.figures`, :mod:`.report`, :mod:`.paper_numbers` (the
paper's published numbers) and :mod:`.cli`.
"""
