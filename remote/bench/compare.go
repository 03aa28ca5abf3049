package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
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
	// A and B summarize each side's runs of the workload: the median of
	// their rates and latencies, the sum of their operations and errors.
	A, B Result
	// RunsA and RunsB are how many runs each side's figures come from.
	RunsA, RunsB int
	// Ratio is A's operations per second over B's; 0 if either has none.
	Ratio float64
}

// Compare pairs the workloads of a and b by name, in a's order. A workload
// measured several times on one side (repeated rounds on a shared machine)
// is summarized by the medians of its runs.
func Compare(a, b []*Report) []Comparison {
	group := func(reps []*Report) (map[string][]Result, []string) {
		m := map[string][]Result{}
		var order []string
		for _, r := range reps {
			for _, w := range r.Workloads {
				if _, seen := m[w.Name]; !seen {
					order = append(order, w.Name)
				}
				m[w.Name] = append(m[w.Name], w)
			}
		}
		return m, order
	}
	am, order := group(a)
	bm, _ := group(b)
	var out []Comparison
	for _, name := range order {
		rb, ok := bm[name]
		if !ok {
			continue
		}
		c := Comparison{Name: name, A: summarizeRuns(am[name]), B: summarizeRuns(rb), RunsA: len(am[name]), RunsB: len(rb)}
		if c.A.OpsPerSec > 0 && c.B.OpsPerSec > 0 {
			c.Ratio = c.A.OpsPerSec / c.B.OpsPerSec
		}
		out = append(out, c)
	}
	return out
}

// summarizeRuns folds several runs of one workload into one Result: counts
// are summed, rates and latencies are the medians of the runs that did
// some work, and the status is ok only if every run's was.
func summarizeRuns(runs []Result) Result {
	if len(runs) == 1 {
		return runs[0]
	}
	sum := Result{Name: runs[0].Name, Unit: runs[0].Unit, Status: "ok"}
	var ops, items, mb, p50, p99, max []float64
	for _, r := range runs {
		sum.Ops += r.Ops
		sum.Items += r.Items
		sum.Bytes += r.Bytes
		sum.WireBytes += r.WireBytes
		sum.Errors += r.Errors
		sum.Seconds += r.Seconds
		sum.ErrorSamples = append(sum.ErrorSamples, r.ErrorSamples...)
		if r.Status != "ok" && sum.Status == "ok" {
			sum.Status, sum.Note = r.Status, r.Note
		}
		if r.Ops > 0 {
			ops = append(ops, r.OpsPerSec)
			items = append(items, r.ItemsPerSec)
			mb = append(mb, r.MBPerSec)
			p50 = append(p50, r.P50Ms)
			p99 = append(p99, r.P99Ms)
			max = append(max, r.MaxMs)
		}
	}
	sum.OpsPerSec, sum.ItemsPerSec, sum.MBPerSec = median(ops), median(items), median(mb)
	sum.P50Ms, sum.P99Ms, sum.MaxMs = median(p50), median(p99), median(max)
	return sum
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteComparison prints cs as a table, labelling the two sides.
func WriteComparison(w io.Writer, labelA, labelB string, cs []Comparison) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\truns\t%s ops/s\t%s ops/s\tratio\t%s MB/s\t%s MB/s\t%s p99 ms\t%s p99 ms\tlower p99\terrors\t\n",
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
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t\n", c.Name, c.RunsA, c.RunsB,
			rate(c.A, c.A.OpsPerSec, "%.1f"), rate(c.B, c.B.OpsPerSec, "%.1f"), ratio,
			mbRate(c.A), mbRate(c.B),
			rate(c.A, c.A.P99Ms, "%.2f"), rate(c.B, c.B.P99Ms, "%.2f"), lower,
			c.A.Errors, c.B.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nratio = %s ops/s / %s ops/s; with several runs, figures are medians; a workload that did not run shows its status.\n", labelA, labelB)
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
