// Package explain compares two Bazel execution logs, as written by
// --execution_log_json_file, and says which actions have different keys on
// the two sides and why: arguments, environment variables, input file
// digests, platform properties. It is what to reach for when the remote
// cache hit rate between two machines (or two days) drops.
//
// Bazel 4.x writes the log as a stream of concatenated JSON SpawnExec
// objects (field names from src/main/protobuf/spawn.proto in lowerCamelCase,
// 64-bit integers as strings); a JSON array of them is accepted too.
package explain

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Spawn is the part of a SpawnExec that explain uses.
type Spawn struct {
	Args                 []string `json:"commandArgs"`
	EnvironmentVariables []EnvVar `json:"environmentVariables"`
	Platform             *struct {
		Properties []EnvVar `json:"properties"`
	} `json:"platform"`
	Inputs        []File   `json:"inputs"`
	ListedOutputs []string `json:"listedOutputs"`
	Remotable     bool     `json:"remotable"`
	Cacheable     bool     `json:"cacheable"`
	Mnemonic      string   `json:"mnemonic"`
	Runner        string   `json:"runner"`
	CacheHit      bool     `json:"cacheHit"`
	TargetLabel   string   `json:"targetLabel"`
	Digest        *Digest  `json:"digest"`
}

// EnvVar is a name/value pair (environment variables, platform properties).
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// File is an input or output.
type File struct {
	Path   string  `json:"path"`
	Digest *Digest `json:"digest"`
}

// Digest is a content digest; sizeBytes may be a JSON string or number.
type Digest struct {
	Hash      string  `json:"hash"`
	SizeBytes jsonInt `json:"sizeBytes"`
}

func (d *Digest) String() string {
	if d == nil {
		return "(no digest)"
	}
	h := d.Hash
	if len(h) > 12 {
		h = h[:12] + "…"
	}
	return fmt.Sprintf("%s/%d", h, int64(d.SizeBytes))
}

type jsonInt int64

func (n *jsonInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*n = jsonInt(v)
	return nil
}

// Key is how an action is matched across logs: its first listed output, or
// for spawns without outputs, its mnemonic and arguments.
func (s *Spawn) Key() string {
	if len(s.ListedOutputs) > 0 {
		outs := append([]string(nil), s.ListedOutputs...)
		sort.Strings(outs)
		return outs[0]
	}
	return s.Mnemonic + " " + strings.Join(s.Args, " ")
}

// ReadFile reads an execution log from a file.
func ReadFile(path string) ([]*Spawn, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read execution log: %w", err)
	}
	defer f.Close()
	spawns, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return spawns, nil
}

// Read parses an execution log: concatenated SpawnExec JSON objects, or a
// JSON array of them.
func Read(r io.Reader) ([]*Spawn, error) {
	br := bufio.NewReader(r)
	first, err := peekNonSpace(br)
	if err == io.EOF {
		return nil, errors.New("empty execution log (was the build run with --execution_log_json_file?)")
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(br)
	var spawns []*Spawn
	decodeOne := func() error {
		var raw json.RawMessage
		start := dec.InputOffset()
		if err := dec.Decode(&raw); err != nil {
			if err == io.EOF {
				return io.EOF
			}
			return fmt.Errorf("entry %d (byte %d): malformed JSON: %w", len(spawns)+1, start, err)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] != '{' {
			return fmt.Errorf("entry %d (byte %d): not a JSON object", len(spawns)+1, start)
		}
		s := &Spawn{}
		if err := json.Unmarshal(raw, s); err != nil {
			return fmt.Errorf("entry %d (byte %d): not a SpawnExec: %w", len(spawns)+1, start, err)
		}
		if len(s.Args) == 0 && len(s.ListedOutputs) == 0 {
			return fmt.Errorf("entry %d (byte %d): not a SpawnExec (neither commandArgs nor listedOutputs)", len(spawns)+1, start)
		}
		spawns = append(spawns, s)
		return nil
	}
	if first == '[' {
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		for dec.More() {
			if err := decodeOne(); err == io.EOF {
				return nil, errors.New("unterminated JSON array")
			} else if err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("unterminated JSON array: %w", err)
		}
		return spawns, nil
	}
	for {
		if err := decodeOne(); err == io.EOF {
			return spawns, nil
		} else if err != nil {
			return nil, err
		}
	}
}

func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\n' && b != '\r' && b != '\t' {
			br.UnreadByte()
			return b, nil
		}
	}
}

// Kind is a kind of difference between two actions' keys.
type Kind string

const (
	Argument    Kind = "argument"
	EnvVarKind  Kind = "environment variable"
	InputFile   Kind = "input file"
	PlatformKey Kind = "platform property"
	Outputs     Kind = "outputs"
	Other       Kind = "other"
)

// Difference is one reason two actions differ.
type Difference struct {
	Kind Kind
	Name string // variable, property or input path; argument position
	A, B string // values on each side; "(unset)" / "(absent)" when missing
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s: %s vs %s", d.Kind, d.Name, d.A, d.B)
}

// ActionDiff is an action present in both logs whose key differs.
type ActionDiff struct {
	Key, Mnemonic, Target string
	Differences           []Difference
}

// Cause is one (kind, name) and how many actions it affects.
type Cause struct {
	Kind    Kind
	Name    string
	Actions int
}

// Report is the outcome of Compare.
type Report struct {
	SpawnsA, SpawnsB int
	Matched          int
	Differing        []ActionDiff
	OnlyA, OnlyB     []string
	// Causes ranks (kind, name) by how many actions they affect, most first.
	Causes []Cause
	// Kinds ranks the kinds of difference by how many actions they affect.
	Kinds []Cause
	// Groups ranks the causes a person recognises (target triple,
	// toolchain, pyconfig, ...; see Classify) by how many actions they explain.
	Groups []Group
}

// Compare matches the spawns of two logs by Key and explains differences.
func Compare(a, b []*Spawn) *Report { return CompareWith(a, b, Options{}) }

// CompareWith is Compare with options.
func CompareWith(a, b []*Spawn, opts Options) *Report {
	rep := &Report{SpawnsA: len(a), SpawnsB: len(b)}
	index := func(spawns []*Spawn) (map[string]*Spawn, []string) {
		m := map[string]*Spawn{}
		var order []string
		for _, s := range spawns {
			s = opts.normalize(s)
			k := s.Key()
			if _, dup := m[k]; !dup {
				order = append(order, k)
			}
			m[k] = s // a later spawn for the same output (a retry) wins
		}
		return m, order
	}
	ma, orderA := index(a)
	mb, orderB := index(b)
	causeCount := map[Cause]int{}
	kindCount := map[Kind]int{}
	for _, k := range orderA {
		sa := ma[k]
		sb, ok := mb[k]
		if !ok {
			rep.OnlyA = append(rep.OnlyA, k)
			continue
		}
		rep.Matched++
		diffs := diffSpawns(sa, sb)
		if len(diffs) == 0 {
			continue
		}
		rep.Differing = append(rep.Differing, ActionDiff{Key: k, Mnemonic: sa.Mnemonic, Target: sa.TargetLabel, Differences: diffs})
		seenCause := map[Cause]bool{}
		seenKind := map[Kind]bool{}
		for _, d := range diffs {
			c := Cause{Kind: d.Kind, Name: d.Name}
			if d.Kind == Argument {
				c.Name = "" // argument positions differ between actions
			}
			if !seenCause[c] {
				seenCause[c] = true
				causeCount[c]++
			}
			if !seenKind[d.Kind] {
				seenKind[d.Kind] = true
				kindCount[d.Kind]++
			}
		}
	}
	for _, k := range orderB {
		if _, ok := ma[k]; !ok {
			rep.OnlyB = append(rep.OnlyB, k)
		}
	}
	for c, n := range causeCount {
		c.Actions = n
		rep.Causes = append(rep.Causes, c)
	}
	for k, n := range kindCount {
		rep.Kinds = append(rep.Kinds, Cause{Kind: k, Actions: n})
	}
	rank := func(cs []Cause) {
		sort.Slice(cs, func(i, j int) bool {
			if cs[i].Actions != cs[j].Actions {
				return cs[i].Actions > cs[j].Actions
			}
			if cs[i].Kind != cs[j].Kind {
				return cs[i].Kind < cs[j].Kind
			}
			return cs[i].Name < cs[j].Name
		})
	}
	rank(rep.Causes)
	rank(rep.Kinds)
	rep.Groups = groups(rep.Differing)
	return rep
}

func quote(s string) string { return strconv.Quote(s) }

func diffSpawns(a, b *Spawn) []Difference {
	var out []Difference
	for i := 0; i < max(len(a.Args), len(b.Args)); i++ {
		va, vb := "(absent)", "(absent)"
		if i < len(a.Args) {
			va = quote(a.Args[i])
		}
		if i < len(b.Args) {
			vb = quote(b.Args[i])
		}
		if va != vb {
			out = append(out, Difference{Kind: Argument, Name: strconv.Itoa(i), A: va, B: vb})
		}
	}
	out = append(out, diffPairs(EnvVarKind, a.EnvironmentVariables, b.EnvironmentVariables, "(unset)")...)
	var pa, pb []EnvVar
	if a.Platform != nil {
		pa = a.Platform.Properties
	}
	if b.Platform != nil {
		pb = b.Platform.Properties
	}
	out = append(out, diffPairs(PlatformKey, pa, pb, "(unset)")...)
	out = append(out, diffInputs(a.Inputs, b.Inputs)...)
	oa, ob := append([]string(nil), a.ListedOutputs...), append([]string(nil), b.ListedOutputs...)
	sort.Strings(oa)
	sort.Strings(ob)
	if strings.Join(oa, "\x00") != strings.Join(ob, "\x00") {
		out = append(out, Difference{Kind: Outputs, Name: "listed outputs", A: strings.Join(oa, " "), B: strings.Join(ob, " ")})
	}
	if len(out) == 0 && a.Digest != nil && b.Digest != nil && a.Digest.Hash != "" && b.Digest.Hash != "" && a.Digest.Hash != b.Digest.Hash {
		out = append(out, Difference{Kind: Other, Name: "action digest (timeout, output kinds or properties not in the log)", A: a.Digest.String(), B: b.Digest.String()})
	}
	return out
}

func diffPairs(kind Kind, a, b []EnvVar, unset string) []Difference {
	ma, mb := map[string]string{}, map[string]string{}
	var names []string
	for _, e := range a {
		if _, ok := ma[e.Name]; !ok {
			names = append(names, e.Name)
		}
		ma[e.Name] = e.Value
	}
	for _, e := range b {
		if _, ok := ma[e.Name]; !ok {
			if _, ok := mb[e.Name]; !ok {
				names = append(names, e.Name)
			}
		}
		mb[e.Name] = e.Value
	}
	sort.Strings(names)
	var out []Difference
	for _, n := range names {
		va, oka := ma[n]
		vb, okb := mb[n]
		if oka && okb && va == vb {
			continue
		}
		d := Difference{Kind: kind, Name: n, A: unset, B: unset}
		if oka {
			d.A = quote(va)
		}
		if okb {
			d.B = quote(vb)
		}
		out = append(out, d)
	}
	return out
}

func diffInputs(a, b []File) []Difference {
	ma, mb := map[string]*Digest{}, map[string]*Digest{}
	var paths []string
	for _, f := range a {
		if _, ok := ma[f.Path]; !ok {
			paths = append(paths, f.Path)
		}
		ma[f.Path] = f.Digest
	}
	for _, f := range b {
		_, inA := ma[f.Path]
		if _, ok := mb[f.Path]; !ok && !inA {
			paths = append(paths, f.Path)
		}
		mb[f.Path] = f.Digest
	}
	sort.Strings(paths)
	var out []Difference
	for _, p := range paths {
		da, oka := ma[p]
		db, okb := mb[p]
		switch {
		case oka && okb:
			if sameDigest(da, db) {
				continue
			}
			out = append(out, Difference{Kind: InputFile, Name: p, A: da.String(), B: db.String()})
		case oka:
			out = append(out, Difference{Kind: InputFile, Name: p, A: da.String(), B: "(absent)"})
		default:
			out = append(out, Difference{Kind: InputFile, Name: p, A: "(absent)", B: db.String()})
		}
	}
	return out
}

// sameDigest treats a missing digest as the empty file's (Bazel omits the
// digest of empty files).
func sameDigest(a, b *Digest) bool {
	if a == nil || a.Hash == "" {
		return b == nil || b.Hash == "" || b.SizeBytes == 0
	}
	if b == nil || b.Hash == "" {
		return a.SizeBytes == 0
	}
	return a.Hash == b.Hash && a.SizeBytes == b.SizeBytes
}

// Write prints rep for a person: every differing action with its reasons
// (at most maxActions actions; 0 for all), then the causes ranked.
func (rep *Report) Write(w io.Writer, nameA, nameB string, maxActions int) {
	fmt.Fprintf(w, "A: %s (%d spawns)\nB: %s (%d spawns)\n", nameA, rep.SpawnsA, nameB, rep.SpawnsB)
	fmt.Fprintf(w, "%d actions in both logs, %d with differing keys; %d only in A, %d only in B\n",
		rep.Matched, len(rep.Differing), len(rep.OnlyA), len(rep.OnlyB))
	if len(rep.Differing) == 0 {
		fmt.Fprintf(w, "\nno action in both logs differs: they share their cache keys\n")
	}
	for i, d := range rep.Differing {
		if maxActions > 0 && i == maxActions {
			fmt.Fprintf(w, "\n... and %d more differing actions (raise --max to see them)\n", len(rep.Differing)-maxActions)
			break
		}
		fmt.Fprintf(w, "\n%s", d.Key)
		if what := strings.TrimSpace(d.Mnemonic + " " + d.Target); what != "" {
			fmt.Fprintf(w, "  (%s)", what)
		}
		fmt.Fprintln(w)
		for _, x := range d.Differences {
			fmt.Fprintf(w, "  %s\n", x)
		}
	}
	if len(rep.Groups) > 0 {
		fmt.Fprintf(w, "\nwhy, by cause (an action counts once per cause):\n")
		for _, g := range rep.Groups {
			fmt.Fprintf(w, "  %5d %-8s %s\n", g.Actions, plural(g.Actions, "action"), g.Cause)
		}
	}
	if len(rep.Causes) > 0 {
		fmt.Fprintf(w, "\ncauses in detail, most common first:\n")
		for _, c := range rep.Causes {
			name := c.Name
			if c.Kind == Argument {
				name = "(command-line arguments)"
			}
			fmt.Fprintf(w, "  %5d %-8s %s %s\n", c.Actions, plural(c.Actions, "action"), c.Kind, name)
		}
	}
	show := func(label string, keys []string) {
		if len(keys) == 0 {
			return
		}
		fmt.Fprintf(w, "\nonly in %s:\n", label)
		for i, k := range keys {
			if maxActions > 0 && i == maxActions {
				fmt.Fprintf(w, "  ... and %d more\n", len(keys)-maxActions)
				break
			}
			fmt.Fprintf(w, "  %s\n", k)
		}
	}
	show("A", rep.OnlyA)
	show("B", rep.OnlyB)
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}
