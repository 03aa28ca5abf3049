package crates

import (
	"fmt"
	"strconv"
	"strings"
)

// parseTOML reads the subset of TOML that Cargo.toml (as normalised by
// `cargo vendor`) and Cargo.lock use: tables, arrays of tables, dotted and
// quoted keys, strings (basic, literal, multi-line), integers, floats,
// booleans, arrays and inline tables. Values are map[string]any, []any,
// string, int64, float64 or bool.
func parseTOML(src string) (map[string]any, error) {
	p := &tomlParser{src: src, line: 1}
	root := map[string]any{}
	cur := root
	for {
		p.skipSpaceAndComments(true)
		if p.eof() {
			return root, nil
		}
		if p.peek() == '[' {
			arrayTable := strings.HasPrefix(p.src[p.pos:], "[[")
			if arrayTable {
				p.pos += 2
			} else {
				p.pos++
			}
			keys, err := p.keyPath()
			if err != nil {
				return nil, err
			}
			p.skipSpace()
			closing := "]"
			if arrayTable {
				closing = "]]"
			}
			if !strings.HasPrefix(p.src[p.pos:], closing) {
				return nil, p.errorf("expected %q after table header", closing)
			}
			p.pos += len(closing)
			t, err := tableAt(root, keys[:len(keys)-1])
			if err != nil {
				return nil, p.errorf("%v", err)
			}
			last := keys[len(keys)-1]
			if arrayTable {
				arr, _ := t[last].([]any)
				next := map[string]any{}
				t[last] = append(arr, next)
				cur = next
			} else {
				next, err := tableAt(t, []string{last})
				if err != nil {
					return nil, p.errorf("%v", err)
				}
				cur = next
			}
			if err := p.endOfLine(); err != nil {
				return nil, err
			}
			continue
		}
		if err := p.keyValue(cur); err != nil {
			return nil, err
		}
		if err := p.endOfLine(); err != nil {
			return nil, err
		}
	}
}

// tableAt walks (creating) nested tables; for an array of tables it uses the
// last element, as TOML does.
func tableAt(t map[string]any, keys []string) (map[string]any, error) {
	for _, k := range keys {
		switch v := t[k].(type) {
		case nil:
			n := map[string]any{}
			t[k] = n
			t = n
		case map[string]any:
			t = v
		case []any:
			if len(v) == 0 {
				return nil, fmt.Errorf("key %q is an empty array", k)
			}
			m, ok := v[len(v)-1].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("key %q is not a table", k)
			}
			t = m
		default:
			return nil, fmt.Errorf("key %q is not a table", k)
		}
	}
	return t, nil
}

type tomlParser struct {
	src  string
	pos  int
	line int
}

func (p *tomlParser) eof() bool  { return p.pos >= len(p.src) }
func (p *tomlParser) peek() byte { return p.src[p.pos] }

func (p *tomlParser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.line, fmt.Sprintf(format, args...))
}

func (p *tomlParser) skipSpace() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.pos++
	}
}

// skipSpaceAndComments skips blanks and comments, and newlines if nl.
func (p *tomlParser) skipSpaceAndComments(nl bool) {
	for !p.eof() {
		switch c := p.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '\n' && nl:
			p.line++
			p.pos++
		case c == '#':
			for !p.eof() && p.peek() != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func (p *tomlParser) endOfLine() error {
	p.skipSpaceAndComments(false)
	if p.eof() {
		return nil
	}
	if p.peek() != '\n' {
		return p.errorf("unexpected %q after value", p.peek())
	}
	return nil
}

func (p *tomlParser) keyPath() ([]string, error) {
	var keys []string
	for {
		p.skipSpace()
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
		p.skipSpace()
		if p.eof() || p.peek() != '.' {
			return keys, nil
		}
		p.pos++
	}
}

func (p *tomlParser) key() (string, error) {
	if p.eof() {
		return "", p.errorf("expected a key")
	}
	switch p.peek() {
	case '"':
		return p.basicString()
	case '\'':
		return p.literalString()
	}
	start := p.pos
	for !p.eof() {
		c := p.peek()
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			p.pos++
			continue
		}
		break
	}
	if p.pos == start {
		return "", p.errorf("expected a key, got %q", p.peek())
	}
	return p.src[start:p.pos], nil
}

func (p *tomlParser) keyValue(t map[string]any) error {
	keys, err := p.keyPath()
	if err != nil {
		return err
	}
	p.skipSpace()
	if p.eof() || p.peek() != '=' {
		return p.errorf("expected '=' after key %q", strings.Join(keys, "."))
	}
	p.pos++
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return err
	}
	dst, err := tableAt(t, keys[:len(keys)-1])
	if err != nil {
		return p.errorf("%v", err)
	}
	last := keys[len(keys)-1]
	if _, dup := dst[last]; dup {
		return p.errorf("duplicate key %q", last)
	}
	dst[last] = v
	return nil
}

func (p *tomlParser) value() (any, error) {
	if p.eof() {
		return nil, p.errorf("expected a value")
	}
	switch c := p.peek(); {
	case strings.HasPrefix(p.src[p.pos:], `"""`):
		return p.multiline(`"""`, true)
	case strings.HasPrefix(p.src[p.pos:], `'''`):
		return p.multiline(`'''`, false)
	case c == '"':
		return p.basicString()
	case c == '\'':
		return p.literalString()
	case c == '[':
		return p.array()
	case c == '{':
		return p.inlineTable()
	case strings.HasPrefix(p.src[p.pos:], "true"):
		p.pos += 4
		return true, nil
	case strings.HasPrefix(p.src[p.pos:], "false"):
		p.pos += 5
		return false, nil
	default:
		start := p.pos
		for !p.eof() && strings.IndexByte(" \t\r\n,]}#", p.peek()) < 0 {
			p.pos++
		}
		word := strings.ReplaceAll(p.src[start:p.pos], "_", "")
		if i, err := strconv.ParseInt(word, 0, 64); err == nil {
			return i, nil
		}
		if f, err := strconv.ParseFloat(word, 64); err == nil {
			return f, nil
		}
		return nil, p.errorf("unsupported value %q", p.src[start:p.pos])
	}
}

func (p *tomlParser) basicString() (string, error) {
	p.pos++ // opening quote
	var sb strings.Builder
	for {
		if p.eof() || p.peek() == '\n' {
			return "", p.errorf("unterminated string")
		}
		c := p.peek()
		p.pos++
		switch c {
		case '"':
			return sb.String(), nil
		case '\\':
			if err := p.escape(&sb); err != nil {
				return "", err
			}
		default:
			sb.WriteByte(c)
		}
	}
}

func (p *tomlParser) escape(sb *strings.Builder) error {
	if p.eof() {
		return p.errorf("unterminated escape")
	}
	c := p.peek()
	p.pos++
	switch c {
	case 'n':
		sb.WriteByte('\n')
	case 't':
		sb.WriteByte('\t')
	case 'r':
		sb.WriteByte('\r')
	case 'b':
		sb.WriteByte('\b')
	case 'f':
		sb.WriteByte('\f')
	case '"', '\\':
		sb.WriteByte(c)
	case 'u', 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if p.pos+n > len(p.src) {
			return p.errorf("short unicode escape")
		}
		r, err := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 32)
		if err != nil {
			return p.errorf("bad unicode escape")
		}
		sb.WriteRune(rune(r))
		p.pos += n
	default:
		return p.errorf("unknown escape \\%c", c)
	}
	return nil
}

func (p *tomlParser) literalString() (string, error) {
	p.pos++
	end := strings.IndexAny(p.src[p.pos:], "'\n")
	if end < 0 || p.src[p.pos+end] != '\'' {
		return "", p.errorf("unterminated literal string")
	}
	s := p.src[p.pos : p.pos+end]
	p.pos += end + 1
	return s, nil
}

func (p *tomlParser) multiline(delim string, escapes bool) (string, error) {
	p.pos += 3
	if strings.HasPrefix(p.src[p.pos:], "\r\n") {
		p.pos += 2
	} else if strings.HasPrefix(p.src[p.pos:], "\n") {
		p.pos++
	}
	var sb strings.Builder
	for {
		if p.eof() {
			return "", p.errorf("unterminated multi-line string")
		}
		if strings.HasPrefix(p.src[p.pos:], delim) {
			// Up to two quotes just before the closing delimiter belong to the string.
			for strings.HasPrefix(p.src[p.pos+1:], delim) {
				sb.WriteByte(p.peek())
				p.pos++
			}
			p.pos += 3
			return sb.String(), nil
		}
		c := p.peek()
		p.pos++
		if c == '\n' {
			p.line++
		}
		if c == '\\' && escapes {
			// Line-ending backslash trims the newline and following blanks.
			rest := p.src[p.pos:]
			trimmed := strings.TrimLeft(rest, " \t\r")
			if strings.HasPrefix(trimmed, "\n") {
				skip := len(rest) - len(strings.TrimLeft(rest, " \t\r\n"))
				p.line += strings.Count(rest[:skip], "\n")
				p.pos += skip
				continue
			}
			if err := p.escape(&sb); err != nil {
				return "", err
			}
			continue
		}
		sb.WriteByte(c)
	}
}

func (p *tomlParser) array() ([]any, error) {
	p.pos++
	arr := []any{}
	for {
		p.skipSpaceAndComments(true)
		if p.eof() {
			return nil, p.errorf("unterminated array")
		}
		if p.peek() == ']' {
			p.pos++
			return arr, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		p.skipSpaceAndComments(true)
		if !p.eof() && p.peek() == ',' {
			p.pos++
		}
	}
}

func (p *tomlParser) inlineTable() (map[string]any, error) {
	p.pos++
	t := map[string]any{}
	for {
		p.skipSpace()
		if p.eof() {
			return nil, p.errorf("unterminated inline table")
		}
		if p.peek() == '}' {
			p.pos++
			return t, nil
		}
		if err := p.keyValue(t); err != nil {
			return nil, err
		}
		p.skipSpace()
		if !p.eof() && p.peek() == ',' {
			p.pos++
		}
	}
}
