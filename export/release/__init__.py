"""Shipping: the Hugging Face model card (`card`), publishing a manifest's files under a tag
(`publish`) and its record (`published`), Hub names and token rules (`hubnames`), the generated model-URL constants
(`codegen`), how an app uses them (`snippets`) and whether their URLs resolve (`urls`); the
measured tables of docs/ rendered from their data (`docs_tables`). Reads files only; never imports torch."""

__all__ = ["card", "publish", "published", "hubnames", "codegen", "snippets", "urls", "docs_tables"]
