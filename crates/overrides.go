package crates

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Override is what the user's overrides file adds to one crate's generated
// targets. Labels starting with // name targets of the user's workspace.
type Override struct {
	Deps            []string          // extra deps of the library
	CompileData     []string          // extra compile_data of the library
	RustcEnv        map[string]string // extra rustc environment of the library
	RustcFlags      []string          // extra rustc flags of the library
	BuildScriptEnv  map[string]string // extra environment of the build script (e.g. PYO3_CONFIG_FILE)
	BuildScriptData []string          // extra inputs of the build script
	BuildScript     string            // a target providing BuildScriptInfo that replaces the crate's build.rs
}

// ReadOverrides parses an overrides file: one table per crate, named by
// package name or name-version, e.g.
//
//	[pyo3-ffi]
//	build_script_env = { PYO3_NO_PYTHON = "1" }
//	compile_data = ["//python:config"]
//
//	["libz-sys-1.1.20"]  # a version: quoted, for the dots
//	build_script = "//third_party/zlib:libz_sys_build_script"
//
// A missing file (or path "") means no overrides.
func ReadOverrides(path string) (map[string]*Override, error) {
	out := map[string]*Override{}
	if path == "" {
		return out, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	doc, err := parseTOML(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	for _, name := range sortedKeys(doc) {
		t, ok := doc[name].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %q must be a table ([%s]) of one crate's overrides", path, name, name)
		}
		o := &Override{}
		for _, key := range sortedKeys(t) {
			v := t[key]
			var err error
			switch key {
			case "deps":
				o.Deps, err = strList(v)
			case "compile_data":
				o.CompileData, err = strList(v)
			case "rustc_flags":
				o.RustcFlags, err = strList(v)
			case "build_script_data":
				o.BuildScriptData, err = strList(v)
			case "rustc_env":
				o.RustcEnv, err = strMap(v)
			case "build_script_env":
				o.BuildScriptEnv, err = strMap(v)
			case "build_script":
				s, ok := v.(string)
				if !ok || s == "" {
					err = fmt.Errorf("want a label string")
				}
				o.BuildScript = s
			default:
				err = fmt.Errorf("unknown key (known: build_script, build_script_data, build_script_env, compile_data, deps, rustc_env, rustc_flags)")
			}
			if err != nil {
				return nil, fmt.Errorf("%s: [%s] %s: %v", path, name, key, err)
			}
		}
		out[name] = o
	}
	return out, nil
}

// checkOverrides fails on a section naming no crate of the resolved graph.
func checkOverrides(path string, overrides map[string]*Override, pkgs []*Package) error {
	known := map[string]bool{}
	for _, p := range pkgs {
		known[p.Name] = true
		known[p.Dir] = true
	}
	var bad []string
	for name := range overrides {
		if !known[name] {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%s: crate %s is not in the resolved dependency graph (Cargo.lock, features, platforms): remove its section or fix the name (package name or name-version)", path, strings.Join(bad, ", "))
}

func strList(v any) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list of strings")
	}
	var out []string
	for _, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("want a list of strings, got %v", x)
		}
		out = append(out, s)
	}
	return out, nil
}

func strMap(v any) (map[string]string, error) {
	t, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a table of strings")
	}
	out := map[string]string{}
	for k, x := range t {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%s: want a string, got %v", k, x)
		}
		out[k] = s
	}
	return out, nil
}

// userLabel makes a label of the user's workspace usable from the crates
// repository: //pkg:target becomes @//pkg:target.
func userLabel(l string) string {
	if strings.HasPrefix(l, "//") {
		return "@" + l
	}
	return l
}

func userLabels(ls []string) []string {
	var out []string
	for _, l := range ls {
		out = append(out, userLabel(l))
	}
	return out
}
