"""``python -m jax_mla_meta``: the ``jax-mla-meta`` command line (see :mod:`jax_mla_meta.cli`)."""

import sys

from .cli import main

sys.exit(main())
