"""One module per stage: a function of typed inputs that returns a dict of metrics."""
