"""What a build leaves on disk and how it is read back: the typed manifest (`manifest`) and whether a variant is up to date (`uptodate`). No torch."""

__all__ = ["manifest", "uptodate"]
