"""The conformance tier: the same scenarios against novasim and a real Nova, compared."""
