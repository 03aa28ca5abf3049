#!/usr/bin/env bash
# Runs every Go native fuzz target for a bounded time, one at a time (go
# test -fuzz takes one target per invocation), and prints a closing line
#   fuzz: N targets, M executions in S s
# M adds up the last "execs:" figure go prints for each target. A crash
# fails the script, naming the target and the corpus file go wrote under
# the package's testdata/fuzz/ (commit it as a seed with the fix).
# FUZZTIME (default 6s) is the time per target; the targets are found by
# grepping the test files of the module's packages, so a new FuzzXxx is run without editing this.
# An argument, a regular expression, runs only the targets it matches.
set -uo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-6s}
targets=()
while IFS=: read -r file _ line; do
	name=${line#func }
	name=${name%%(*}
	[[ -n "${1:-}" && ! "$name" =~ $1 ]] && continue
	targets+=("$(dirname "$file"):$name")
done < <(
	# The module's own packages (go list skips .ferrule/, where the e2e
	# tests copy the checkout, and testdata/).
	for d in $(go list -f '{{.Dir}}' ./...); do
		grep -n -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' "$d"/*_test.go 2>/dev/null | sed "s|^$PWD/|./|"
	done | sort
)

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no targets found" >&2
	exit 1
fi

start=$(date +%s)
total=0
n=0
for t in "${targets[@]}"; do
	pkg=${t%%:*}
	name=${t##*:}
	n=$((n + 1))
	log=$(mktemp)
	t0=$(date +%s)
	# -fuzzminimizetime bounds the time spent shrinking new corpus entries,
	# which otherwise can take a target's whole budget without executing.
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 200x "$pkg" >"$log" 2>&1
	rc=$?
	execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
	execs=${execs:-0}
	total=$((total + execs))
	printf 'fuzz: [%d/%d] %-28s %-22s %9d execs in %ds\n' "$n" "${#targets[@]}" "$name" "$pkg" "$execs" "$(($(date +%s) - t0))"
	if [ $rc -ne 0 ]; then
		cat "$log"
		corpus=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | head -1)
		echo "fuzz: FAILED: $name in $pkg; new corpus file: ${pkg#./}/${corpus:-?}" >&2
		rm -f "$log"
		exit 1
	fi
	rm -f "$log"
done
echo "fuzz: $n targets, $total executions in $(($(date +%s) - start)) s"
