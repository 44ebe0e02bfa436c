"""``python -m serving``: the REST service alone (``lstm-pipeline start`` runs it together with Dagster)."""

import sys

from serving.app import serve

sys.exit(serve())
