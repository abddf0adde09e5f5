"""Rewrite rules by intent: canonical (normal forms, folding), stability, specialize (cheaper ops)."""
