"""Every Op class, grouped by family."""
