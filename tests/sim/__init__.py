"""The sim tier: the real gpupool CLI and openstacksdk against novasim in a child process."""
