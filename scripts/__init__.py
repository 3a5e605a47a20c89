"""What a person runs by hand, from the repo root: `python -m scripts.demo` (`make demo`) and
`scripts/kind-e2e.sh` (the operator's image on a kind cluster). The services they start are in
testbed/."""
