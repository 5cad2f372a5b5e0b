"""SAM 2 / SAM 2.1 backend (torch + sam2)."""
