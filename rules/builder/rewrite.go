package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func init() {
	register("rewrite", "copy a text file, replacing literal prefixes (e.g. sandbox paths) deterministically", runRewrite)
}

// runRewrite implements `builder rewrite --in F --out F --replace OLD=NEW ...`.
// Replacements are applied longest OLD first so that nested prefixes (an
// execroot inside an output base) are both handled, whatever the flag order.
func runRewrite(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rewrite", stderr)
	in := fs.String("in", "", "input file")
	out := fs.String("out", "", "output file")
	var repl stringList
	fs.Var(&repl, "replace", "OLD=NEW literal replacement (repeatable); OLD may use ${PWD} for the action's working directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return fmt.Errorf("--in and --out are required")
	}
	pairs, err := parseReplacements(repl)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	return writeFileAtomic(*out, rewrite(data, pairs), 0o644)
}

type replacement struct{ old, new string }

func parseReplacements(specs []string) ([]replacement, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	var pairs []replacement
	for _, s := range specs {
		old, new, ok := strings.Cut(s, "=")
		if !ok || old == "" {
			return nil, fmt.Errorf("--replace %q: want OLD=NEW with a non-empty OLD", s)
		}
		pairs = append(pairs, replacement{strings.ReplaceAll(old, "${PWD}", wd), new})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return len(pairs[i].old) > len(pairs[j].old) })
	return pairs, nil
}

func rewrite(data []byte, pairs []replacement) []byte {
	if len(pairs) == 0 {
		return data
	}
	args := make([]string, 0, 2*len(pairs))
	for _, p := range pairs {
		args = append(args, p.old, p.new)
	}
	// strings.Replacer tries the pairs in argument order at each position, so
	// longer prefixes (sorted first) win over their own prefixes.
	var buf bytes.Buffer
	strings.NewReplacer(args...).WriteString(&buf, string(data))
	return buf.Bytes()
}

// writeFileAtomic writes data to path through a temporary file and rename so
// an interrupted action never leaves a partial output.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
