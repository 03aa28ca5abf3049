package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// Series is one plotted line: a value per sample time (NaN: no value).
type Series struct {
	Name  string
	Color string
	Times []time.Time
	Vals  []float64
}

// Plot is a titled chart of one or more series, drawn as inline SVG.
type Plot struct {
	ID, Title, Unit string
	Series          []Series
}

// Points is the number of values plotted in the first series.
func (p Plot) Points() int {
	if len(p.Series) == 0 {
		return 0
	}
	n := 0
	for _, v := range p.Series[0].Vals {
		if !math.IsNaN(v) {
			n++
		}
	}
	return n
}

// Last is the newest value of each series, formatted.
func (p Plot) Last() string {
	var parts []string
	for _, s := range p.Series {
		v := math.NaN()
		for i := len(s.Vals) - 1; i >= 0; i-- {
			if !math.IsNaN(s.Vals[i]) {
				v = s.Vals[i]
				break
			}
		}
		if math.IsNaN(v) {
			parts = append(parts, s.Name+": none yet")
		} else {
			parts = append(parts, s.Name+": "+formatValue(v, p.Unit))
		}
	}
	return strings.Join(parts, " · ")
}

const plotW, plotH, padL, padB = 660.0, 140.0, 84.0, 18.0

// SVG draws the plot: a polyline per series, the y range on the left and
// the time range below.
func (p Plot) SVG() template.HTML {
	var lo, hi = math.Inf(1), math.Inf(-1)
	var t0, t1 time.Time
	for _, s := range p.Series {
		for i, v := range s.Vals {
			if math.IsNaN(v) {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
			if t0.IsZero() || s.Times[i].Before(t0) {
				t0 = s.Times[i]
			}
			if s.Times[i].After(t1) {
				t1 = s.Times[i]
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot" id="plot-%s" data-points="%d" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`,
		template.HTMLEscapeString(p.ID), p.Points(), plotW, plotH, plotW, plotH, template.HTMLEscapeString(p.Title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="0" width="%.0f" height="%.0f" fill="#fafafa" stroke="#ddd"/>`, padL, plotW-padL, plotH-padB)
	if math.IsInf(lo, 1) {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#888">no data yet</text></svg>`, padL+10, (plotH-padB)/2)
		return template.HTML(b.String())
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		hi = lo + 1
	}
	span := t1.Sub(t0).Seconds()
	x := func(t time.Time) float64 {
		if span == 0 {
			return plotW - 4
		}
		return padL + 4 + (plotW-padL-8)*t.Sub(t0).Seconds()/span
	}
	y := func(v float64) float64 { return 4 + (plotH-padB-8)*(1-(v-lo)/(hi-lo)) }
	fmt.Fprintf(&b, `<text x="%.0f" y="12" font-size="11" text-anchor="end">%s</text>`, padL-4, template.HTMLEscapeString(formatValue(hi, p.Unit)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%s</text>`, padL-4, plotH-padB, template.HTMLEscapeString(formatValue(lo, p.Unit)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11">%s</text>`, padL, plotH-4, t0.UTC().Format("15:04:05"))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%s UTC</text>`, plotW, plotH-4, t1.UTC().Format("15:04:05"))
	for _, s := range p.Series {
		var pts []string
		step := 1
		if n := len(s.Vals); n > 600 {
			step = (n + 599) / 600
		}
		for i := 0; i < len(s.Vals); i += step {
			if math.IsNaN(s.Vals[i]) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.Times[i]), y(s.Vals[i])))
		}
		if len(pts) == 1 {
			fmt.Fprintf(&b, `<circle cx="%s" r="3" fill="%s"/>`, strings.Replace(pts[0], ",", `" cy="`, 1), s.Color)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.Color, strings.Join(pts, " "))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "%":
		return fmt.Sprintf("%.1f%%", v)
	case "B":
		return formatBytes(v)
	case "B/s":
		return formatBytes(v) + "/s"
	case "/s":
		return fmt.Sprintf("%.2f/s", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func formatBytes(v float64) string {
	const k = 1024.0
	switch {
	case math.Abs(v) >= k*k*k:
		return fmt.Sprintf("%.2f GiB", v/(k*k*k))
	case math.Abs(v) >= k*k:
		return fmt.Sprintf("%.2f MiB", v/(k*k))
	case math.Abs(v) >= k:
		return fmt.Sprintf("%.1f KiB", v/k)
	}
	return fmt.Sprintf("%.0f B", v)
}

// plots turns samples into the cache plots: rates between consecutive
// samples, levels as they are.
func plots(smps []Sample) []Plot {
	n := len(smps)
	if n == 0 {
		n = 1
	}
	times := make([]time.Time, 0, n)
	hit, req, in, out, fill, ev := make([]float64, 0, n), make([]float64, 0, n), make([]float64, 0, n), make([]float64, 0, n), make([]float64, 0, n), make([]float64, 0, n)
	for i, s := range smps {
		times = append(times, s.Time)
		fill = append(fill, s.StoreBytes)
		if i == 0 {
			hit, req, in, out, ev = append(hit, math.NaN()), append(req, math.NaN()), append(in, math.NaN()), append(out, math.NaN()), append(ev, math.NaN())
			continue
		}
		p := smps[i-1]
		dt := s.Time.Sub(p.Time).Seconds()
		if dt <= 0 {
			dt = 1
		}
		if l := (s.ACHits - p.ACHits) + (s.ACMisses - p.ACMisses); l > 0 {
			hit = append(hit, 100*(s.ACHits-p.ACHits)/l)
		} else {
			hit = append(hit, math.NaN())
		}
		req = append(req, (s.Requests-p.Requests)/dt)
		in = append(in, (s.BytesIn-p.BytesIn)/dt)
		out = append(out, (s.BytesOut-p.BytesOut)/dt)
		ev = append(ev, s.Evictions-p.Evictions)
	}
	return []Plot{
		{ID: "hit-rate", Title: "Action cache hit rate", Unit: "%", Series: []Series{{Name: "hit rate", Color: "#2a7", Times: times, Vals: hit}}},
		{ID: "requests", Title: "Requests", Unit: "/s", Series: []Series{{Name: "requests", Color: "#27c", Times: times, Vals: req}}},
		{ID: "bytes", Title: "Bytes in and out", Unit: "B/s", Series: []Series{
			{Name: "in", Color: "#c52", Times: times, Vals: in}, {Name: "out", Color: "#27c", Times: times, Vals: out}}},
		{ID: "store-fill", Title: "Store fill", Unit: "B", Series: []Series{{Name: "stored", Color: "#85c", Times: times, Vals: fill}}},
		{ID: "evictions", Title: "Evictions per sample", Unit: "", Series: []Series{{Name: "evicted", Color: "#c33", Times: times, Vals: ev}}},
	}
}
