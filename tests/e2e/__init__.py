"""The e2e tier: `gpupool run` as a real process against a real kube-apiserver, with kubectl."""
