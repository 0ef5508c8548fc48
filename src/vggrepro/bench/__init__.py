"""Benchmarks: each compares two things measured in the same run and reports medians."""
