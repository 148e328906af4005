"""The crop job's OUTDIR: where each output goes (naming), how it is written so that nothing is lost
(outputs, encoding, pool), the settings a resume checks (settings), and what the run writes at its end
(reports, maps)."""
