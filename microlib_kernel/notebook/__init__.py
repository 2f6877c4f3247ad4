"""The notebook experience: the IPython extension, magics, displays, dashboard."""
