#!/usr/bin/env bash
# Side-by-side benchmark of two REAPI v2 cache servers that are already
# running (for example `ferrule serve` and another REAPI server), with the
# same workloads, duration and concurrency, using `ferrule bench`.
#
#   tools/bench-compare.sh [-d 10s] [-c 8] [-r 1] [-w LIST] [-o DIR] [-b FERRULE] \
#       LABEL_A=HOST:PORT[@PID] LABEL_B=HOST:PORT[@PID] [-- more ferrule bench flags]
#
# Workloads run one at a time, alternating which server goes first, so that
# slow drift on a shared machine does not favour one side; -r repeats the
# whole sequence, and the comparison then shows medians. With a PID, the
# server's peak RSS is taken from /proc/PID/status (VmHWM), reset at the
# start where the kernel allows it (clear_refs), so it covers these runs.
#
# This script neither builds nor starts the servers it measures; it builds
# only Ferrule's own CLI from this checkout when -b is not given.
set -euo pipefail

usage() {
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

duration=10s
concurrency=8
rounds=1
workloads=findmissing,batch-write,batch-read,bs-write,bs-read,bs-write-zstd,bs-read-zstd,ac-get
out=""
ferrule="${FERRULE:-}"
while getopts "d:c:r:w:o:b:h" opt; do
	case "$opt" in
	d) duration=$OPTARG ;;
	c) concurrency=$OPTARG ;;
	r) rounds=$OPTARG ;;
	w) workloads=$OPTARG ;;
	o) out=$OPTARG ;;
	b) ferrule=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || usage
spec_a=$1 spec_b=$2
shift 2
if [ $# -gt 0 ]; then
	[ "$1" = "--" ] || usage
	shift
fi
extra=("$@")

parse() { # LABEL=ADDR[@PID] -> "label addr pid"
	local spec=$1 label rest addr pid=""
	case "$spec" in *=*) ;; *) echo "bench-compare: want LABEL=HOST:PORT[@PID], got '$spec'" >&2; exit 2 ;; esac
	label=${spec%%=*}
	rest=${spec#*=}
	addr=${rest%%@*}
	[ "$rest" != "$addr" ] && pid=${rest#*@}
	if [ -n "$pid" ] && ! [ -r "/proc/$pid/status" ]; then
		echo "bench-compare: no process $pid for $label" >&2
		exit 2
	fi
	echo "$label $addr $pid"
}
read -r label_a addr_a pid_a <<<"$(parse "$spec_a")"
read -r label_b addr_b pid_b <<<"$(parse "$spec_b")"
[ "$label_a" != "$label_b" ] || { echo "bench-compare: the two labels must differ" >&2; exit 2; }

if [ -z "$out" ]; then
	out=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")
fi
mkdir -p "$out"
if [ -z "$ferrule" ]; then
	root=$(cd "$(dirname "$0")/.." && pwd)
	echo "bench-compare: building ferrule from $root"
	(cd "$root" && go build -o "$out/ferrule" ./cmd/ferrule)
	ferrule=$out/ferrule
fi
: >"$out/$label_a.json"
: >"$out/$label_b.json"

rss() { # PID FIELD -> value in kB, or empty
	[ -n "$1" ] && awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}
reset_hwm() { # PID -> "reset" if the peak could be reset
	if [ -n "$1" ] && { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null; then echo reset; else echo since-start; fi
}
hwm_a=$(reset_hwm "$pid_a")
hwm_b=$(reset_hwm "$pid_b")
start_rss_a=$(rss "$pid_a" VmRSS)
start_rss_b=$(rss "$pid_b" VmRSS)

run_one() { # LABEL ADDR WORKLOAD
	local cmd=("$ferrule" bench --addr "$2" --workloads "$3" --duration "$duration" --concurrency "$concurrency" --json "${extra[@]}")
	echo "+ ${cmd[*]}" | tee -a "$out/commands.txt"
	local rc=0
	"${cmd[@]}" >>"$out/$1.json" 2>>"$out/$1.log" || rc=$?
	case $rc in
	0) ;;
	1) echo "  ($1: $3 reported errors, or could not run; see $out/$1.log)" ;;
	*) echo "bench-compare: ferrule bench failed (exit $rc); see $out/$1.log" >&2; tail -3 "$out/$1.log" >&2; exit 1 ;;
	esac
}

case "$rounds" in '' | *[!0-9]* | 0) echo "bench-compare: -r wants a positive number" >&2; exit 2 ;; esac
IFS=, read -r -a list <<<"$workloads"
for round in $(seq 1 "$rounds"); do
	[ "$rounds" -eq 1 ] || echo "-- round $round of $rounds"
	i=$round # each round flips who goes first for every workload
	for w in "${list[@]}"; do
		if [ $((i % 2)) -eq 1 ]; then
			run_one "$label_a" "$addr_a" "$w"
			run_one "$label_b" "$addr_b" "$w"
		else
			run_one "$label_b" "$addr_b" "$w"
			run_one "$label_a" "$addr_a" "$w"
		fi
		i=$((i + 1))
	done
done

echo
echo "== $label_a ($addr_a) vs $label_b ($addr_b): duration $duration per workload, concurrency $concurrency, $rounds round(s) ${extra[*]}"
"$ferrule" bench --compare --labels "$label_a,$label_b" "$out/$label_a.json" "$out/$label_b.json" | tee "$out/comparison.txt"
echo
for side in a b; do
	eval "label=\$label_$side pid=\$pid_$side hwm=\$hwm_$side start=\$start_rss_$side"
	if [ -n "$pid" ]; then
		peak=$(rss "$pid" VmHWM)
		now=$(rss "$pid" VmRSS)
		scope="during these runs"
		[ "$hwm" = reset ] || scope="since the process started (could not reset the peak)"
		printf '%s (pid %s): peak RSS %s MiB %s; RSS %s MiB before, %s MiB after\n' "$label" "$pid" \
			"$((peak / 1024))" "$scope" "$((start / 1024))" "$((now / 1024))" | tee -a "$out/comparison.txt"
	else
		echo "$label: no PID given, RSS not measured" | tee -a "$out/comparison.txt"
	fi
done
echo
echo "results, logs and the commands run are in $out"
