"""Model backends: synthetic (numpy) and SAM 2 (torch)."""
