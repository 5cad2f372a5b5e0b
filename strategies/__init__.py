"""Pluggable strategies and the named strategy sets built from them."""
