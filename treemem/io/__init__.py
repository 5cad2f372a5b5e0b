"""Video and mask input/output."""
