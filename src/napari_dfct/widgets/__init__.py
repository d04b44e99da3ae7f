"""napari dock widgets. Thin: they gather inputs, start workers and show results."""
