"""``python -m DiffusionSegLib`` is the ``diffusionseg`` command."""

import sys

from .cli.main import main

sys.exit(main())
