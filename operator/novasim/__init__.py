"""novasim: a simulated OpenStack cloud speaking the real Keystone v3 and Nova v2.1 HTTP APIs."""
