package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
)

// ReadReports reads every report in r: one JSON report, or several written
// one after the other (as successive `ferrule bench --json` runs append
// them to a file).
func ReadReports(r io.Reader) ([]*Report, error) {
	dec := json.NewDecoder(r)
	var out []*Report
	for {
		var rep Report
		err := dec.Decode(&rep)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading benchmark results: %w", err)
		}
		out = append(out, &rep)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no benchmark results found")
	}
	return out, nil
}

// Comparison is one workload measured on two servers.
type Comparison struct {
	Name string
	A, B Result
	// Ratio is A's operations per second over B's; 0 if either has none.
	Ratio float64
}

// Compare pairs the workloads of a and b by name, in a's order. A
// workload measured more than once on one side keeps its last result.
func Compare(a, b []*Report) []Comparison {
	last := func(reps []*Report) (map[string]Result, []string) {
		m := map[string]Result{}
		var order []string
		for _, r := range reps {
			for _, w := range r.Workloads {
				if _, seen := m[w.Name]; !seen {
					order = append(order, w.Name)
				}
				m[w.Name] = w
			}
		}
		return m, order
	}
	am, order := last(a)
	bm, _ := last(b)
	var out []Comparison
	for _, name := range order {
		rb, ok := bm[name]
		if !ok {
			continue
		}
		c := Comparison{Name: name, A: am[name], B: rb}
		if c.A.OpsPerSec > 0 && c.B.OpsPerSec > 0 {
			c.Ratio = c.A.OpsPerSec / c.B.OpsPerSec
		}
		out = append(out, c)
	}
	return out
}

// WriteComparison prints cs as a table, labelling the two sides.
func WriteComparison(w io.Writer, labelA, labelB string, cs []Comparison) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\t%s ops/s\t%s ops/s\tratio\t%s MB/s\t%s MB/s\t%s p99 ms\t%s p99 ms\tlower p99\terrors\t\n",
		labelA, labelB, labelA, labelB, labelA, labelB)
	for _, c := range cs {
		ratio, lower := "-", "-"
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", c.Ratio)
			lower = labelB
			if c.A.P99Ms < c.B.P99Ms {
				lower = labelA
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t\n", c.Name,
			rate(c.A, c.A.OpsPerSec, "%.1f"), rate(c.B, c.B.OpsPerSec, "%.1f"), ratio,
			mbRate(c.A), mbRate(c.B),
			rate(c.A, c.A.P99Ms, "%.2f"), rate(c.B, c.B.P99Ms, "%.2f"), lower,
			c.A.Errors, c.B.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nratio = %s ops/s / %s ops/s; a workload that did not run shows its status.\n", labelA, labelB)
	for _, c := range cs {
		for _, x := range []struct {
			label string
			r     Result
		}{{labelA, c.A}, {labelB, c.B}} {
			if x.r.Status != "ok" {
				fmt.Fprintf(w, "%s on %s: %s %s\n", c.Name, x.label, x.r.Status, x.r.Note)
				for _, e := range x.r.ErrorSamples {
					fmt.Fprintf(w, "  %d x %s\n", e.Count, e.Error)
				}
			}
		}
	}
	return nil
}

func rate(r Result, v float64, format string) string {
	if r.Status == "skipped" || r.Status == "failed" || r.Ops == 0 {
		return r.Status
	}
	return fmt.Sprintf(format, v)
}

func mbRate(r Result) string {
	if r.Bytes == 0 && r.Ops > 0 {
		return "-" // a workload that moves no payload (findmissing)
	}
	return rate(r, r.MBPerSec, "%.1f")
}
