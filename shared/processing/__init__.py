"""Processing one image of a chunk: the bridge to the imaging pipeline and the duplicate index, and its writes."""
