"""Jobs as Python functions: build a Ray Data plan from options, run it, return a summary."""
