from soxs_es.cli import run

run()
