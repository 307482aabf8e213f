"""Media: video, compositing, diffusion pipelines, the tiny model and content credentials."""
