"""Benchmarks: each compares two things measured in the same run and reports medians.
May import anything of the package; nothing imports them (the CLI loads one by name)."""
