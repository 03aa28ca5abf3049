package crates

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Options say what to generate from.
type Options struct {
	Manifest  string // the root Cargo.toml (its [dependencies] are the roots)
	Lock      string // its Cargo.lock
	VendorDir string // the directory `cargo vendor --versioned-dirs` wrote
	Repo      string // name of the external repository that holds the crates, e.g. ferrule_crates
	Target    string // only this target triple; "" for every triple of the platform table (select()s)
	Overrides string // the user's per-crate overrides file (overrides.toml); "" or absent for none
}

// Result is the generated files' contents.
type Result struct {
	RepoBuild    []byte // BUILD file of the crates repository (one target per crate)
	AliasBuild   []byte // BUILD file of the package with aliases for the direct dependencies
	Crates       []*Package
	EnabledCount int
}

type resolved struct {
	pkg      *Package
	features map[string]bool
	deps     map[string]bool // keys of active dependencies (normal)
	bdeps    map[string]bool // keys of active build-dependencies
}

// Generate reads the lock file and vendor directory and returns the BUILD files.
func Generate(o Options) (*Result, error) {
	var triples []string
	for _, pl := range platforms {
		if o.Target == "" || o.Target == pl.triple {
			triples = append(triples, pl.triple)
		}
	}
	if len(triples) == 0 {
		return nil, fmt.Errorf("target %s is not in the platform table (%s)", o.Target, strings.Join(platformTriples(), ", "))
	}
	overrides, err := ReadOverrides(o.Overrides)
	if err != nil {
		return nil, err
	}
	lock, err := ReadLock(o.Lock)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(o.VendorDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: vendor directory %s does not exist: run tools/setup.d/20-crates.sh (cargo vendor)", ErrMissingCrate, o.VendorDir)
	}
	byName := map[string][]*Package{}
	for _, p := range lock.Packages {
		if err := loadVendored(o.VendorDir, p); err != nil {
			return nil, err
		}
		byName[p.Name] = append(byName[p.Name], p)
	}
	rootDeps, rootLockDeps, err := readRoot(o.Manifest, lock)
	if err != nil {
		return nil, err
	}
	find := func(lockDeps []string, name, from string) (*Package, error) {
		for _, e := range lockDeps {
			f := strings.Fields(e)
			if len(f) == 0 || f[0] != name {
				continue
			}
			for _, p := range byName[name] {
				if len(f) == 1 || f[1] == p.Version {
					return p, nil
				}
			}
		}
		if len(byName[name]) == 1 && from == "" {
			return byName[name][0], nil
		}
		return nil, fmt.Errorf("%w: %s depends on crate %s, which Cargo.lock does not list for it: run cargo generate-lockfile / cargo vendor again", ErrMismatch, orRoot(from), name)
	}

	state := map[*Package]*resolved{}
	get := func(p *Package) *resolved {
		r := state[p]
		if r == nil {
			r = &resolved{pkg: p, features: map[string]bool{}, deps: map[string]bool{}, bdeps: map[string]bool{}}
			state[p] = r
		}
		return r
	}
	// activate enables a dependency edge: the target package with the
	// requested features (and "default" unless disabled).
	activateDep := func(d Dep, lockDeps []string, from string) (bool, error) {
		p, err := find(lockDeps, d.Package, from)
		if err != nil {
			return false, err
		}
		_, existed := state[p]
		r := get(p)
		changed := !existed
		want := append([]string{}, d.Features...)
		if d.DefaultFeatures {
			want = append(want, "default")
		}
		for _, f := range want {
			if !r.features[f] {
				r.features[f] = true
				changed = true
			}
		}
		return changed, nil
	}
	for _, d := range rootDeps {
		if _, err := activateDep(d, rootLockDeps, ""); err != nil {
			return nil, err
		}
	}
	// Fixpoint: apply every enabled feature of every active package until
	// nothing changes (handles optional deps, dep/feature and weak dep?/feature).
	for round := 0; ; round++ {
		if round > 1000 {
			return nil, fmt.Errorf("feature resolution did not converge")
		}
		changed := false
		pkgs := make([]*Package, 0, len(state))
		for p := range state {
			pkgs = append(pkgs, p)
		}
		sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Dir < pkgs[j].Dir })
		for _, p := range pkgs {
			r := state[p]
			c, err := applyFeatures(r, triples, func(d Dep) (bool, error) { return activateDep(d, p.LockDeps, p.Name+" "+p.Version) })
			if err != nil {
				return nil, err
			}
			changed = changed || c
		}
		if !changed {
			break
		}
	}

	res := &Result{}
	var active []*resolved
	for _, r := range state {
		active = append(active, r)
	}
	sort.Slice(active, func(i, j int) bool { return active[i].pkg.Dir < active[j].pkg.Dir })
	for _, r := range active {
		if r.pkg.HasBuildFile {
			return nil, fmt.Errorf("crate %s %s ships its own BUILD file, which would split the crates repository; remove it from the vendor directory or patch the crate", r.pkg.Name, r.pkg.Version)
		}
		res.Crates = append(res.Crates, r.pkg)
	}
	if err := checkOverrides(o.Overrides, overrides, res.Crates); err != nil {
		return nil, err
	}
	var rb bytes.Buffer
	rb.WriteString(repoHeader)
	g := &gen{b: &rb, triples: triples, overrides: overrides}
	for _, r := range active {
		if err := g.writeCrate(r, func(d Dep) (*Package, error) { return find(r.pkg.LockDeps, d.Package, r.pkg.Name+" "+r.pkg.Version) }); err != nil {
			return nil, err
		}
	}
	if g.selects {
		for _, pl := range platforms {
			if !contains(triples, pl.triple) {
				continue
			}
			fmt.Fprintf(&rb, "\nconfig_setting(\n    name = %q,\n    constraint_values = [\n", settingName(pl.triple))
			for _, c := range pl.constraints {
				fmt.Fprintf(&rb, "        %q,\n", c)
			}
			fmt.Fprintf(&rb, "    ],\n)\n")
		}
	}
	res.RepoBuild = rb.Bytes()

	var ab bytes.Buffer
	ab.WriteString(aliasHeader)
	seen := map[string]bool{}
	for _, d := range rootDeps {
		p, err := find(rootLockDeps, d.Package, "")
		if err != nil {
			return nil, err
		}
		name := d.Key
		if seen[name] {
			continue
		}
		seen[name] = true
		fmt.Fprintf(&ab, "\nalias(\n    name = %q,\n    actual = \"@%s//:%s\",\n)\n", name, o.Repo, p.Dir)
	}
	res.AliasBuild = ab.Bytes()
	return res, nil
}

func orRoot(from string) string {
	if from == "" {
		return "the root manifest"
	}
	return "crate " + from
}

// readRoot returns the root manifest's dependencies and the lock file's
// dependency list of that workspace member.
func readRoot(manifest string, lock *Lock) ([]Dep, []string, error) {
	data, err := os.ReadFile(manifest)
	if err != nil {
		return nil, nil, err
	}
	doc, err := parseTOML(string(data))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", manifest, err)
	}
	name := str(table(doc["package"])["name"])
	var lockDeps []string
	found := false
	for _, m := range lock.Members {
		if m.Name == name {
			lockDeps, found = m.LockDeps, true
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("%w: the lock file has no entry for the root package %q of %s: run cargo generate-lockfile", ErrMismatch, name, manifest)
	}
	return deps(doc["dependencies"], ""), lockDeps, nil
}

// applyFeatures enables what r's features imply; activate enables a
// dependency edge and reports whether anything changed.
func applyFeatures(r *resolved, triples []string, activate func(Dep) (bool, error)) (bool, error) {
	p := r.pkg
	changed := false
	usesDepSyntax := map[string]bool{}
	for _, items := range p.Features {
		for _, it := range items {
			if strings.HasPrefix(it, "dep:") {
				usesDepSyntax[it[4:]] = true
			}
		}
	}
	enableFeature := func(f string) {
		if !r.features[f] {
			r.features[f] = true
			changed = true
		}
	}
	enableDep := func(key string) {
		for _, d := range p.Deps {
			if d.Key == key && !r.deps[key] {
				r.deps[key] = true
				changed = true
			}
		}
		for _, d := range p.BuildDeps {
			if d.Key == key && !r.bdeps[key] {
				r.bdeps[key] = true
				changed = true
			}
		}
	}
	extraFeatures := map[string][]string{} // dep key -> features requested through "dep/feat"
	for _, f := range sortedKeys(r.features) {
		items, ok := p.Features[f]
		if !ok {
			if !usesDepSyntax[f] {
				enableDep(f) // implicit feature of an optional dependency
			}
			continue
		}
		for _, it := range items {
			switch {
			case strings.HasPrefix(it, "dep:"):
				enableDep(it[4:])
			case strings.Contains(it, "/"):
				dep, feat, _ := strings.Cut(it, "/")
				weak := strings.HasSuffix(dep, "?")
				dep = strings.TrimSuffix(dep, "?")
				if !weak {
					enableDep(dep)
					if !usesDepSyntax[dep] && isOptional(p, dep) {
						enableFeature(dep)
					}
				}
				extraFeatures[dep] = append(extraFeatures[dep], feat)
			default:
				enableFeature(it)
			}
		}
	}
	for _, group := range []struct {
		deps   []Dep
		active map[string]bool
	}{{p.Deps, r.deps}, {p.BuildDeps, r.bdeps}} {
		for _, d := range group.deps {
			// Active if it applies to any target of the table; the BUILD
			// file selects it on the platforms it applies to.
			ts, err := depTriples(d, triples)
			if err != nil {
				return false, fmt.Errorf("crate %s %s: %v", p.Name, p.Version, err)
			}
			if len(ts) == 0 {
				continue
			}
			if !d.Optional && !group.active[d.Key] {
				group.active[d.Key] = true
				changed = true
			}
			if !group.active[d.Key] {
				continue
			}
			d.Features = append(append([]string{}, d.Features...), extraFeatures[d.Key]...)
			c, err := activate(d)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
	}
	return changed, nil
}

func isOptional(p *Package, key string) bool {
	for _, d := range append(append([]Dep{}, p.Deps...), p.BuildDeps...) {
		if d.Key == key && d.Optional {
			return true
		}
	}
	return false
}

const repoHeader = `# Generated by ` + "`ferrule vendor`" + ` from Cargo.lock and the cargo vendor directory.
# DO NOT EDIT: re-run ferrule vendor (tools/setup.d/20-crates.sh) instead.
# One target per crate; build scripts run as their own actions.
load("@ferrule//rules:defs.bzl", "cargo_build_script", "rust_library", "rust_proc_macro")

package(default_visibility = ["//visibility:public"])
`

const aliasHeader = `# Generated by ` + "`ferrule vendor`" + `: the direct dependencies of Cargo.toml.
# DO NOT EDIT: re-run ferrule vendor (tools/setup.d/20-crates.sh) instead.

package(default_visibility = ["//visibility:public"])

exports_files(["BUILD.crates.bazel"])
`

// gen writes the repository's BUILD file.
type gen struct {
	b         *bytes.Buffer
	triples   []string
	overrides map[string]*Override
	selects   bool // some list used select(): declare the config_settings
}

func (g *gen) override(p *Package) *Override {
	if o := g.overrides[p.Dir]; o != nil {
		return o
	}
	if o := g.overrides[p.Name]; o != nil {
		return o
	}
	return &Override{}
}

// buildScriptLabel is the target whose BuildScriptInfo feeds p's compile:
// the generated cargo_build_script, an override's replacement, or "".
func (g *gen) buildScriptLabel(p *Package) string {
	if o := g.override(p); o.BuildScript != "" {
		return userLabel(o.BuildScript)
	}
	if p.BuildScript != "" {
		return ":" + p.Dir + "_build_script"
	}
	return ""
}

// condList maps labels to the triples they apply to.
type condList map[string]map[string]bool

func (c condList) add(label string, triples []string) {
	if c[label] == nil {
		c[label] = map[string]bool{}
	}
	for _, t := range triples {
		c[label][t] = true
	}
}

// write renders `name = [always...] + select({platform: [...]})`.
func (g *gen) writeCond(name string, c condList, extra []string) {
	var always []string
	per := map[string][]string{}
	for _, label := range sortedKeys(c) {
		if len(c[label]) == len(g.triples) {
			always = append(always, label)
			continue
		}
		for _, t := range sortedKeys(c[label]) {
			per[t] = append(per[t], label)
		}
	}
	always = append(always, extra...)
	if len(always) == 0 && len(per) == 0 {
		return
	}
	b := g.b
	fmt.Fprintf(b, "    %s = ", name)
	if len(always) > 0 || len(per) == 0 {
		b.WriteString("[\n")
		for _, v := range always {
			fmt.Fprintf(b, "        %q,\n", v)
		}
		b.WriteString("    ]")
	}
	if len(per) > 0 {
		g.selects = true
		if len(always) > 0 {
			b.WriteString(" + ")
		}
		b.WriteString("select({\n")
		for _, t := range g.triples {
			if len(per[t]) == 0 {
				continue
			}
			quoted := make([]string, len(per[t]))
			for i, l := range per[t] {
				quoted[i] = fmt.Sprintf("%q", l)
			}
			fmt.Fprintf(b, "        %q: [%s],\n", ":"+settingName(t), strings.Join(quoted, ", "))
		}
		b.WriteString("        \"//conditions:default\": [],\n    })")
	}
	b.WriteString(",\n")
}

func (g *gen) writeCrate(r *resolved, find func(Dep) (*Package, error)) error {
	b := g.b
	p := r.pkg
	ov := g.override(p)
	var features []string
	for f := range r.features {
		if f == "default" {
			if _, ok := p.Features["default"]; !ok {
				continue
			}
		}
		features = append(features, f)
	}
	sort.Strings(features)
	// labels sorts the active dependencies into libraries and proc macros,
	// each with the triples it applies to, and the build scripts of those
	// with a `links` key (their metadata reaches p's build script).
	labels := func(ds []Dep, active map[string]bool) (libs, macros, linked condList, aliases map[string]string, err error) {
		libs, macros, linked, aliases = condList{}, condList{}, condList{}, map[string]string{}
		for _, d := range ds {
			if !active[d.Key] {
				continue
			}
			ts, err := depTriples(d, g.triples)
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("crate %s %s: %v", p.Name, p.Version, err)
			}
			if len(ts) == 0 {
				continue
			}
			dp, err := find(d)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			label := ":" + dp.Dir
			if dp.ProcMacro {
				macros.add(label, ts)
			} else {
				libs.add(label, ts)
			}
			if bs := g.buildScriptLabel(dp); dp.Links != "" && bs != "" {
				linked.add(bs, ts)
			}
			if alias := strings.ReplaceAll(d.Key, "-", "_"); alias != dp.CrateName {
				aliases[label] = alias
			}
		}
		return libs, macros, linked, aliases, nil
	}
	libs, macros, linked, aliases, err := labels(p.Deps, r.deps)
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "\n# %s %s (sha256 %s)\n", p.Name, p.Version, p.Checksum)
	if p.BuildScript != "" && ov.BuildScript == "" {
		blibs, bmacros, _, _, err := labels(p.BuildDeps, r.bdeps)
		if err != nil {
			return err
		}
		fmt.Fprintf(b, "cargo_build_script(\n")
		fmt.Fprintf(b, "    name = %q,\n", p.Dir+"_build_script")
		// The script may include!() any of the crate's files (e.g. from src/).
		fmt.Fprintf(b, "    srcs = glob([%q]),\n", p.Dir+"/**/*.rs")
		fmt.Fprintf(b, "    crate_root = %q,\n", p.Dir+"/"+p.BuildScript)
		fmt.Fprintf(b, "    package_name = %q,\n", p.Name)
		fmt.Fprintf(b, "    version = %q,\n", p.Version)
		fmt.Fprintf(b, "    edition = %q,\n", p.Edition)
		writeList(b, "crate_features", features)
		g.writeCond("deps", blibs, nil)
		g.writeCond("proc_macro_deps", bmacros, nil)
		g.writeCond("links_deps", linked, nil)
		fmt.Fprintf(b, "    data = glob([%q])", p.Dir+"/**")
		writeExtra(b, userLabels(ov.BuildScriptData))
		fmt.Fprintf(b, "    manifest_dir = %q,\n", p.Dir)
		if p.Links != "" {
			fmt.Fprintf(b, "    links = %q,\n", p.Links)
		}
		writeDict(b, "build_script_env", ov.BuildScriptEnv)
		fmt.Fprintf(b, "    rustc_flags = [\"--cap-lints=allow\"],\n")
		fmt.Fprintf(b, ")\n\n")
	}
	rule := "rust_library"
	if p.ProcMacro {
		rule = "rust_proc_macro"
	}
	fmt.Fprintf(b, "%s(\n", rule)
	fmt.Fprintf(b, "    name = %q,\n", p.Dir)
	// Every .rs file: modules, and files the crate include!()s from
	// examples/ or elsewhere.
	fmt.Fprintf(b, "    srcs = glob([%q]),\n", p.Dir+"/**/*.rs")
	fmt.Fprintf(b, "    crate_root = %q,\n", p.Dir+"/"+p.LibPath)
	fmt.Fprintf(b, "    crate_name = %q,\n", p.CrateName)
	fmt.Fprintf(b, "    package_name = %q,\n", p.Name)
	fmt.Fprintf(b, "    version = %q,\n", p.Version)
	fmt.Fprintf(b, "    edition = %q,\n", p.Edition)
	writeList(b, "crate_features", features)
	g.writeCond("deps", libs, userLabels(ov.Deps))
	g.writeCond("proc_macro_deps", macros, nil)
	if len(aliases) > 0 {
		fmt.Fprintf(b, "    aliases = {\n")
		for _, k := range sortedKeys(aliases) {
			fmt.Fprintf(b, "        %q: %q,\n", k, aliases[k])
		}
		fmt.Fprintf(b, "    },\n")
	}
	if bs := g.buildScriptLabel(p); bs != "" {
		fmt.Fprintf(b, "    build_script = %q,\n", bs)
	}
	fmt.Fprintf(b, "    compile_data = glob([%q], exclude = [%q, %q])", p.Dir+"/**", p.Dir+"/**/*.rs", p.Dir+"/.cargo-checksum.json")
	writeExtra(b, userLabels(ov.CompileData))
	writeDict(b, "rustc_env", ov.RustcEnv)
	var flags []string
	for _, f := range append([]string{"--cap-lints=allow"}, ov.RustcFlags...) {
		flags = append(flags, fmt.Sprintf("%q", f))
	}
	fmt.Fprintf(b, "    rustc_flags = [%s],\n", strings.Join(flags, ", "))
	fmt.Fprintf(b, ")\n")
	return nil
}

// writeExtra ends a glob() attribute, appending extra labels.
func writeExtra(b *bytes.Buffer, extra []string) {
	if len(extra) > 0 {
		b.WriteString(" + [\n")
		for _, v := range extra {
			fmt.Fprintf(b, "        %q,\n", v)
		}
		b.WriteString("    ]")
	}
	b.WriteString(",\n")
}

func writeDict(b *bytes.Buffer, name string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "    %s = {\n", name)
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(b, "        %q: %q,\n", k, m[k])
	}
	fmt.Fprintf(b, "    },\n")
}

// depTriples returns the triples of the table a dependency applies to.
func depTriples(d Dep, triples []string) ([]string, error) {
	var out []string
	for _, t := range triples {
		ok, err := matchTarget(d.Target, t)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, t)
		}
	}
	return out, nil
}

func platformTriples() []string {
	var out []string
	for _, pl := range platforms {
		out = append(out, pl.triple)
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func writeList(b *bytes.Buffer, name string, vals []string) {
	if len(vals) == 0 {
		return
	}
	fmt.Fprintf(b, "    %s = [\n", name)
	for _, v := range vals {
		fmt.Fprintf(b, "        %q,\n", v)
	}
	fmt.Fprintf(b, "    ],\n")
}
