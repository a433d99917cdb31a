"""solvency."""
