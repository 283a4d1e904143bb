"""Model versions: versioned artifact directories, their manifests, and which one serves."""
