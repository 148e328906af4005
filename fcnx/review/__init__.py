"""``fcnx review``: a local web page to review a crop or suspects run image by image, its decisions kept in
``review.jsonl`` (:mod:`fcnx.io.decisions`). Needs the ``review`` extra (Flask)."""
