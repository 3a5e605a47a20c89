// Command kubectl is the upstream kubectl, built from this wrapper module so its
// version matches the kube-apiserver built beside it. It mirrors
// k8s.io/kubernetes/cmd/kubectl.
package main

import (
	"os"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // client auth plugins, as upstream
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	code := cli.Run(command)
	os.Exit(code)
}
