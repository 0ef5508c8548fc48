"""The report's pieces: the paper's numbers (paper, paper.yaml), Tables 3-6 beside them, figures.
Imports params, paths and runtime/; only the report stage imports it."""
