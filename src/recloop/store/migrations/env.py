"""Alembic environment: runs on the engine recloop hands over, never on a config-file URL."""

from alembic import context

from recloop.store.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
