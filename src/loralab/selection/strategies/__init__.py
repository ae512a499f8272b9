"""Built-in selection strategies; each module registers its `Selector` on import."""
