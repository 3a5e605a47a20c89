"""The testbed: real services gpupool is tested and measured against, on 127.0.0.1, no cloud and
no cluster needed. Each part is a module to import and a `python -m` command, run from the repo
root.

  localkube    a local Kubernetes control plane: real etcd + kube-apiserver, real kubectl
               (`python3 -m testbed.localkube build|up|down|env|paths`). The binaries are built
               once per machine from the Go module in kube-apiserver/.
  realnova     a real OpenStack Nova: nova-api + Keystone + Placement in a cached venv
               (`python -m testbed.realnova install|up|down|env|status|register`).
  gitops_health  what Flux and Argo CD make of objects: the real kstatus and an Argo CD health.lua
               run by gopher-lua as Argo CD runs it (`python3 -m testbed.gitops_health build|eval`).
               A small Go program, built once per machine from gitops-health/.
  tcp_proxy    a TCP proxy that can stall or reset the connections through it (the HA tests put
               it between a replica and the kube-apiserver).
  prometheus   a real Prometheus and promtool from Debian's package: a Prometheus on a free port
               scraping given targets with given rule files, queried over its HTTP API
               (`python3 -m testbed.prometheus install|paths|run|promtool`).

Next: NetBox, as a module of its own here.

The simulated cloud, novasim, is not here: it ships with gpupool (operator/novasim, `gpupool sim`).
Nothing here imports more than the standard library at import time, so `localkube build` runs
with the system python3 before the project's venv exists (and `gitops_health build` likewise).
"""
