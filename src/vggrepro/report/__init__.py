"""The report's pieces: Tables 3-6 beside the paper's numbers (tables) and the figures.
Imports the paper's code (params, paper) and runtime/; the report stage puts them together."""
