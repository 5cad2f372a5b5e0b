"""Figures: the pathway tree and mask overlays."""
