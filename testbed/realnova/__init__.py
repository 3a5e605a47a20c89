"""A real OpenStack Nova on 127.0.0.1: nova-api 34, Keystone 30 and Placement 16 from PyPI, in a
venv cached per machine. The conformance tier runs every scenario against it and against novasim.

    python -m testbed.realnova install|venv|up|down|env|status|register   (see services.py)

What is here:
  services.py      the library and the command line: install the cached venv, start and stop
                   the services, register hosts and instances (`RealNova`). Stdlib only.
  __main__.py      `python -m testbed.realnova`
  serve.py, register.py, netstub.py
                   run by path with the real-Nova venv's python (they import gunicorn and nova,
                   which gpupool's venv does not have): the WSGI launcher, the writer of what
                   nova-compute, the scheduler and the conductor would write, a stand-in network
                   service.
  templates/       the services' configuration files; constraints.txt pins the venv's packages.
"""

from testbed.realnova.services import RealNova, RealNovaError, ensure_installed, venv_dir

__all__ = ["RealNova", "RealNovaError", "ensure_installed", "venv_dir"]
