package main

// Running an Argo CD health.lua the way Argo CD does (argoproj/argo-cd util/lua/lua.go,
// VM.runLua and VM.ExecuteHealthLua; gitops-engine pkg/health GetResourceHealth), written anew
// here from what those do:
//
//   - a gopher-lua state; all of gopher-lua's libraries are opened only when the script may use
//     them (built-in customizations: always; argocd-cm ones: only with
//     resource.customizations.useOpenLibs.<group>_<kind>: "true"). Then, always, the package,
//     base and table libraries and a "safe" os module (time and date only) are opened, and the
//     same os module is preloaded for require("os");
//   - a 1 s deadline on the script;
//   - the object as the global `obj` (maps and lists as tables, numbers as numbers), and an
//     empty `actionParams` table;
//   - the returned table is encoded to JSON (layeh.com/gopher-json, as Argo CD does) and read as
//     {status, message}; nil gives an empty result, an empty table too, a status outside
//     Healthy/Progressing/Degraded/Suspended/Missing/Unknown gives Unknown.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
)

type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

var validHealth = []string{"Unknown", "Progressing", "Healthy", "Suspended", "Degraded", "Missing"}

// controllerHealth is what Argo CD's application controller shows for an object whose health
// check is an argocd-cm customization (no useOpenLibs).
func controllerHealth(obj *unstructured.Unstructured, script string) (*healthStatus, error) {
	if obj.GetDeletionTimestamp() != nil && !slices.Contains(obj.GetFinalizers(), "argocd.argoproj.io/hook-finalizer") {
		return &healthStatus{Status: "Progressing", Message: "Pending deletion"}, nil
	}
	h, err := executeHealthLua(obj, script, false)
	if err != nil {
		return &healthStatus{Status: "Unknown", Message: err.Error()}, nil
	}
	return h, nil
}

func executeHealthLua(obj *unstructured.Unstructured, script string, openLibs bool) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.NewTable())
	l.SetGlobal("obj", toLua(l, obj.Object))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = "" // as Argo CD: the message reaches users without Lua's stack trace
		err = apiErr
	}
	if err != nil {
		return nil, err
	}

	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return &healthStatus{}, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	h := &healthStatus{}
	if err := json.Unmarshal(encoded, h); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Value == "array" { // an empty table encodes as []
			return &healthStatus{}, nil
		}
		return nil, err
	}
	if !slices.Contains(validHealth, h.Status) {
		return &healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return h, nil
}

// toLua gives an object's value as Argo CD hands it to scripts: numbers of every Go type become
// Lua numbers, a json.Number a string, maps and slices tables, anything else nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
