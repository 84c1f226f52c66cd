"""Writing what `soxs_es.pure` derived: SQLite tables of `soxspipe.db` and files. Rebuildable at any time."""
