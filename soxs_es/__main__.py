import sys

from soxs_es.cli import main

sys.exit(main())
