// Command gitops-health says what Flux and Argo CD make of Kubernetes objects: for each object in
// the files given, the kstatus result (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, which
// Flux's `wait`/`healthChecks` use) and the result of an Argo CD Lua health check run the way
// Argo CD runs it (gopher-lua, the libraries Argo CD opens; see argolua.go).
//
//	gitops-health [-lua health.lua] FILE...   ("-" reads stdin)
//	gitops-health -versions
//
// Input: YAML or JSON, one or many documents per file; a List (`kubectl get -o yaml` of several
// objects) counts as its items. Output: a JSON array on stdout, one entry per object, in order:
//
//	{"source": "FILE#DOC", "apiVersion": ..., "kind": ..., "name": ..., "generation": N,
//	 "kstatus": {"status": "Current|InProgress|Failed|Terminating|...", "message": "..."},
//	 "lua": {"argocd-cm": {"status": ..., "message": ...}, "builtin": {...}},
//	 "argocd": {"status": ..., "message": ...}}
//
// "lua" is the script's own answer, as Argo CD's health_test.yaml runner checks it, with the
// libraries of an argocd-cm customization (base, table, package and Argo's safe os: no string,
// no math) and with those of a built-in customization (all of gopher-lua's, as for
// resource_customizations/). "argocd" is what the application controller shows for the
// argocd-cm script: gitops-engine answers "Pending deletion" for an object being deleted before
// any script runs. A failed evaluation gives {"error": "..."} in place of a result.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

type entry struct {
	Source     string             `json:"source"`
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Name       string             `json:"name"`
	Generation int64              `json:"generation"`
	Kstatus    verdict            `json:"kstatus"`
	Lua        map[string]verdict `json:"lua,omitempty"`
	ArgoCD     *verdict           `json:"argocd,omitempty"`
}

func main() {
	luaPath := flag.String("lua", "", "an Argo CD health.lua to run on each object")
	versions := flag.Bool("versions", false, "print the versions of kstatus and gopher-lua built in, as JSON")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: gitops-health [-lua health.lua] FILE... (- for stdin)\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *versions {
		printVersions()
		return
	}
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(64)
	}
	script := ""
	if *luaPath != "" {
		b, err := os.ReadFile(*luaPath)
		if err != nil {
			fail(err)
		}
		script = string(b)
	}
	entries := []entry{}
	for _, path := range flag.Args() {
		objects, err := readObjects(path)
		if err != nil {
			fail(fmt.Errorf("%s: %w", path, err))
		}
		for i, obj := range objects {
			entries = append(entries, evaluate(fmt.Sprintf("%s#%d", path, i), obj, script))
		}
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(entries); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "gitops-health: %v\n", err)
	os.Exit(1)
}

func evaluate(source string, obj *unstructured.Unstructured, script string) entry {
	e := entry{
		Source:     source,
		APIVersion: obj.GetAPIVersion(),
		Kind:       obj.GetKind(),
		Name:       obj.GetName(),
		Generation: obj.GetGeneration(),
	}
	if res, err := status.Compute(obj); err != nil {
		e.Kstatus = verdict{Error: err.Error()}
	} else {
		e.Kstatus = verdict{Status: string(res.Status), Message: res.Message}
	}
	if script == "" {
		return e
	}
	e.Lua = map[string]verdict{}
	for name, openLibs := range map[string]bool{"argocd-cm": false, "builtin": true} {
		e.Lua[name] = asVerdict(executeHealthLua(obj, script, openLibs))
	}
	controller := asVerdict(controllerHealth(obj, script))
	e.ArgoCD = &controller
	return e
}

func asVerdict(h *healthStatus, err error) verdict {
	if err != nil {
		return verdict{Error: err.Error()}
	}
	return verdict{Status: h.Status, Message: h.Message}
}

// readObjects decodes every document of a file as the API server's clients do (integers stay
// int64, as in Argo CD's cluster cache and kstatus's reads); a List gives its items.
func readObjects(path string) ([]*unstructured.Unstructured, error) {
	var in io.Reader
	if path == "-" {
		in = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	var objects []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, err
		}
		raw, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		if !obj.IsList() {
			objects = append(objects, obj)
			continue
		}
		err = obj.EachListItem(func(item runtime.Object) error {
			objects = append(objects, item.(*unstructured.Unstructured))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
}

func printVersions() {
	found := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		found["go"] = info.GoVersion
		for _, dep := range info.Deps {
			switch dep.Path {
			case "sigs.k8s.io/cli-utils", "github.com/yuin/gopher-lua", "layeh.com/gopher-json", "k8s.io/apimachinery":
				found[dep.Path] = dep.Version
			}
		}
	}
	b, _ := json.MarshalIndent(found, "", "  ")
	fmt.Println(string(b))
}
