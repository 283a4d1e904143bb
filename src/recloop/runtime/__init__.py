"""The composition root: builds the store, writer, loaders, guards and pipelines of a process."""
