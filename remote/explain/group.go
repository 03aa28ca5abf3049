package explain

import (
	"regexp"
	"sort"
	"strings"
)

// Options changes how Compare matches actions.
type Options struct {
	// AcrossConfigs compares builds of two configurations (e.g. two target
	// platforms): output paths are matched without their configuration
	// directory (bazel-out/k8-fastbuild/ and bazel-out/linux_aarch64-fastbuild/
	// both become bazel-out/CFG/), in keys, arguments, environment and inputs,
	// so what is left is what really differs.
	AcrossConfigs bool
}

var configDir = regexp.MustCompile(`bazel-out/[^/ "]+/`)

func (o Options) path(s string) string {
	if !o.AcrossConfigs {
		return s
	}
	return configDir.ReplaceAllString(s, "bazel-out/CFG/")
}

// normalize returns a copy of s with output paths rewritten by o.
func (o Options) normalize(s *Spawn) *Spawn {
	if !o.AcrossConfigs {
		return s
	}
	c := *s
	c.Args = make([]string, len(s.Args))
	for i, a := range s.Args {
		c.Args[i] = o.path(a)
	}
	c.EnvironmentVariables = make([]EnvVar, len(s.EnvironmentVariables))
	for i, e := range s.EnvironmentVariables {
		c.EnvironmentVariables[i] = EnvVar{Name: e.Name, Value: o.path(e.Value)}
	}
	c.Inputs = make([]File, len(s.Inputs))
	for i, f := range s.Inputs {
		c.Inputs[i] = File{Path: o.path(f.Path), Digest: f.Digest}
	}
	c.ListedOutputs = make([]string, len(s.ListedOutputs))
	for i, p := range s.ListedOutputs {
		c.ListedOutputs[i] = o.path(p)
	}
	return &c
}

// Group is a cause a person recognises and how many differing actions it
// explains (an action counts once per group).
type Group struct {
	Cause   string `json:"cause"`
	Actions int    `json:"actions"`
	Example string `json:"example"` // one difference of that cause
}

// The causes Group names, besides "environment variable NAME", "platform
// property NAME" and "source file PATH".
const (
	CauseTriple     = "target triple"
	CauseToolchain  = "toolchain"
	CausePyconfig   = "pyconfig"
	CauseDependency = "dependency outputs"
	CauseCommand    = "command line"
)

var triple = regexp.MustCompile(`\b(x86_64|aarch64|i686|armv7|riscv64gc|riscv64|s390x|powerpc64le|wasm32)-[a-z0-9_]+(-[a-z0-9_]+)*`)

// Classify names the cause of one difference.
func Classify(d Difference) string {
	all := d.Name + " " + d.A + " " + d.B
	switch {
	case strings.Contains(all, "pyconfig.h"):
		return CausePyconfig
	case d.Kind == InputFile && isToolchainPath(d.Name):
		return CauseToolchain
	case d.Kind == InputFile && strings.HasPrefix(d.Name, "bazel-out/"):
		// Made by another action of the build: a consequence, not a cause.
		return CauseDependency
	case d.Kind == InputFile:
		return "source file " + d.Name
	case d.Kind == Argument && (isToolchainPath(all) || strings.Contains(all, "-gcc") || strings.Contains(all, "linker=")):
		// A compiler or linker named (a cross compiler's name has a triple in it).
		return CauseToolchain
	case triple.FindString(d.A) != triple.FindString(d.B):
		return CauseTriple
	case d.Kind == EnvVarKind:
		return "environment variable " + d.Name
	case d.Kind == PlatformKey:
		return "platform property " + d.Name
	case d.Kind == Argument:
		return CauseCommand
	}
	return string(d.Kind)
}

func isToolchainPath(p string) bool {
	for _, marker := range []string{"toolchains~", "/rustlib/", "ferrule_python", "ferrule_bindgen", "ferrule_rust", "local_config_cc", "toolchains/cc"} {
		if strings.Contains(p, marker) {
			return true
		}
	}
	return false
}

// groups ranks the causes of rep's differing actions.
func groups(diffs []ActionDiff) []Group {
	count := map[string]int{}
	example := map[string]string{}
	for _, a := range diffs {
		seen := map[string]bool{}
		for _, d := range a.Differences {
			c := Classify(d)
			if seen[c] {
				continue
			}
			seen[c] = true
			count[c]++
			if _, ok := example[c]; !ok {
				example[c] = a.Key + ": " + d.String()
			}
		}
	}
	var out []Group
	for c, n := range count {
		out = append(out, Group{Cause: c, Actions: n, Example: example[c]})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Actions != out[j].Actions {
			return out[i].Actions > out[j].Actions
		}
		return out[i].Cause < out[j].Cause
	})
	return out
}

// Unexpected lists the differing actions that have a difference whose cause
// is not among expected.
func (rep *Report) Unexpected(expected []string) []ActionDiff {
	ok := map[string]bool{}
	for _, e := range expected {
		ok[strings.TrimSpace(e)] = true
	}
	var out []ActionDiff
	for _, a := range rep.Differing {
		for _, d := range a.Differences {
			if !ok[Classify(d)] {
				out = append(out, a)
				break
			}
		}
	}
	return out
}
