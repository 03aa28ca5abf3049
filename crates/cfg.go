package crates

import (
	"fmt"
	"strings"
)

// targetCfgs are the cfg values of the targets the generator can resolve
// target-specific dependencies for.
var targetCfgs = map[string]map[string][]string{
	"x86_64-unknown-linux-gnu": {
		"unix": nil, "target_os": {"linux"}, "target_family": {"unix"}, "target_arch": {"x86_64"},
		"target_env": {"gnu"}, "target_vendor": {"unknown"}, "target_endian": {"little"},
		"target_pointer_width": {"64"}, "panic": {"unwind"}, "target_has_atomic": {"8", "16", "32", "64", "ptr"},
	},
	"aarch64-unknown-linux-gnu": {
		"unix": nil, "target_os": {"linux"}, "target_family": {"unix"}, "target_arch": {"aarch64"},
		"target_env": {"gnu"}, "target_vendor": {"unknown"}, "target_endian": {"little"},
		"target_pointer_width": {"64"}, "panic": {"unwind"}, "target_has_atomic": {"8", "16", "32", "64", "128", "ptr"},
	},
}

// platforms are the target triples the generated targets build for, in
// the order their select() branches are written, with the constraint values
// of the Bazel platforms (//platforms) that stand for them.
var platforms = []struct {
	triple      string
	constraints []string
}{
	{"aarch64-unknown-linux-gnu", []string{"@platforms//cpu:aarch64", "@platforms//os:linux"}},
	{"x86_64-unknown-linux-gnu", []string{"@platforms//cpu:x86_64", "@platforms//os:linux"}},
}

// settingName is the config_setting the generated BUILD file declares for a
// triple.
func settingName(triple string) string { return "platform_" + triple }

// matchTarget reports whether a [target.X] key applies to triple: X is a
// triple or a cfg(...) expression.
func matchTarget(spec, triple string) (bool, error) {
	if spec == "" {
		return true, nil
	}
	if !strings.HasPrefix(spec, "cfg(") {
		return spec == triple, nil
	}
	cfgs, ok := targetCfgs[triple]
	if !ok {
		return false, fmt.Errorf("no cfg table for target %s", triple)
	}
	p := &cfgParser{s: spec}
	v, err := p.expr(cfgs)
	if err != nil {
		return false, fmt.Errorf("target %q: %v", spec, err)
	}
	return v, nil
}

type cfgParser struct {
	s   string
	pos int
}

func (p *cfgParser) skip() {
	for p.pos < len(p.s) && p.s[p.pos] == ' ' {
		p.pos++
	}
}

func (p *cfgParser) ident() string {
	p.skip()
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			p.pos++
			continue
		}
		break
	}
	return p.s[start:p.pos]
}

func (p *cfgParser) expect(c byte) error {
	p.skip()
	if p.pos >= len(p.s) || p.s[p.pos] != c {
		return fmt.Errorf("expected %q at offset %d", c, p.pos)
	}
	p.pos++
	return nil
}

func (p *cfgParser) expr(cfgs map[string][]string) (bool, error) {
	name := p.ident()
	if name == "" {
		return false, fmt.Errorf("expected a cfg name at offset %d", p.pos)
	}
	p.skip()
	switch name {
	case "cfg", "all", "any", "not":
		if err := p.expect('('); err != nil {
			return false, err
		}
		var vals []bool
		for {
			p.skip()
			if p.pos < len(p.s) && p.s[p.pos] == ')' {
				p.pos++
				break
			}
			v, err := p.expr(cfgs)
			if err != nil {
				return false, err
			}
			vals = append(vals, v)
			p.skip()
			if p.pos < len(p.s) && p.s[p.pos] == ',' {
				p.pos++
			}
		}
		switch name {
		case "cfg", "not":
			if len(vals) != 1 {
				return false, fmt.Errorf("%s() takes one predicate", name)
			}
			return vals[0] != (name == "not"), nil
		case "all":
			for _, v := range vals {
				if !v {
					return false, nil
				}
			}
			return true, nil
		default:
			for _, v := range vals {
				if v {
					return true, nil
				}
			}
			return false, nil
		}
	}
	if p.pos < len(p.s) && p.s[p.pos] == '=' {
		p.pos++
		p.skip()
		if p.pos >= len(p.s) || p.s[p.pos] != '"' {
			return false, fmt.Errorf("expected a string after %s =", name)
		}
		end := strings.IndexByte(p.s[p.pos+1:], '"')
		if end < 0 {
			return false, fmt.Errorf("unterminated string")
		}
		val := p.s[p.pos+1 : p.pos+1+end]
		p.pos += end + 2
		for _, v := range cfgs[name] {
			if v == val {
				return true, nil
			}
		}
		return false, nil
	}
	_, ok := cfgs[name]
	return ok, nil
}
