"""The ``recloop`` command: one module per command group.

Each module registers its commands on the root app when imported; the order of the imports
below is the order of the commands in ``recloop --help``.
"""

# isort: off
from recloop.cli import serve, db, keys, data_import, data_export, snapshot  # noqa: F401
from recloop.cli import dataset, train, models, experiment, shadow, purge, gc, monitor  # noqa: F401
from recloop.cli import worker, runs  # noqa: F401
from recloop.cli import demo  # noqa: F401

# isort: on
from recloop.cli.common import app


def main() -> None:
    """Entry point of the ``recloop`` script."""
    app()
