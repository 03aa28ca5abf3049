package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMaxSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{
		"10":      10 << 30,
		"1.5":     3 << 29,
		"0.25":    1 << 28,
		"500MiB":  500 << 20,
		"500mib":  500 << 20,
		"2GB":     2_000_000_000,
		"1.5 GiB": 3 << 29,
		"4096B":   4096,
		"1TiB":    1 << 40,
	} {
		c, err := loadForTest(t, "--max_size", in)
		if err != nil {
			t.Errorf("--max_size %s: %v", in, err)
			continue
		}
		if int64(c.MaxSize) != want {
			t.Errorf("--max_size %s = %d bytes, want %d", in, c.MaxSize, want)
		}
		// The flag's text form reads back as the same size (flags are
		// applied again over a config file that way).
		if back, err := parseMaxSize(c.MaxSize.String()); err != nil || back != c.MaxSize {
			t.Errorf("%s: String %q reads back as %d, %v", in, c.MaxSize, back, err)
		}
	}
	for _, in := range []string{"lots", "12 parsecs", "NaN", "Inf", "-1", "0", "0MiB", "", "1e30", "99999999999TiB"} {
		// The flag package reports a value Set refuses on the flag set's
		// output, naming the flag; check() names it for the others.
		fs := flag.NewFlagSet("ferrule serve", flag.ContinueOnError)
		var out bytes.Buffer
		fs.SetOutput(&out)
		_, err := loadServeConfig(fs, []string{"--max_size", in})
		if err == nil || !strings.Contains(err.Error()+out.String(), "max_size") {
			t.Errorf("--max_size %q: %v (%s), want an error naming the flag", in, err, out.String())
		}
	}
}

func TestMaxSizeConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ferrule.yaml")
	for in, want := range map[string]int64{
		"1.9":     2040109466, // 1.9 GiB, rounded
		"3":       3 << 30,
		"500MiB":  500 << 20,
		`"2GB"`:   2_000_000_000,
		"1.5 GiB": 3 << 29,
	} {
		os.WriteFile(file, []byte("max_size: "+in+"\n"), 0o644)
		c, err := loadForTest(t, "--config_file", file)
		if err != nil {
			t.Errorf("max_size: %s: %v", in, err)
		} else if int64(c.MaxSize) != want {
			t.Errorf("max_size: %s = %d bytes, want %d", in, c.MaxSize, want)
		}
	}
	for _, in := range []string{"lots", "[1, 2]", "-2"} {
		os.WriteFile(file, []byte("max_size: "+in+"\n"), 0o644)
		if _, err := loadForTest(t, "--config_file", file); err == nil || !strings.Contains(err.Error(), "max_size") {
			t.Errorf("max_size: %s: %v, want an error naming max_size", in, err)
		}
	}
	// A flag on the command line still wins over the file.
	os.WriteFile(file, []byte("max_size: 1.9\n"), 0o644)
	c, err := loadForTest(t, "--config_file", file, "--max_size", "700MiB")
	if err != nil || c.MaxSize != 700<<20 {
		t.Errorf("--max_size over the file: %d, %v", c.MaxSize, err)
	}
}
