#!/usr/bin/env bash
# Whole-process timing, median of many runs:
#   1. `sshbreak inspect CERT`            vs  `ssh-keygen -L -f CERT`
#   2. `sshbreak issue` on the soft token  vs  `ssh-keygen -t ed25519` + `ssh-keygen -s CA` (the manual pair)
# Usage: bench/compare.sh [RUNS]   (default 50). Builds the release binary first.
# Each run starts a fresh process, as an operator's command would; output paths are removed between
# runs outside the timed region. The soft token has no touch delay, so (2) measures sshbreak's own cost.
set -euo pipefail
runs=${1:-50}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/sshbreak
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export SSHBREAK_HOME=$work/home SSHBREAK_TOKEN=soft:$work/token.json SSHBREAK_PIN_FILE=$work/pin
export SSHBREAK_NEW_PIN_FILE=$work/pin
echo "bench-pin-1234" > "$work/pin"
"$bin" token set-pin 2>/dev/null
"$bin" init-ca >/dev/null 2>&1
"$bin" issue -n bench -o "$work/cert" >/dev/null 2>&1
ssh-keygen -q -t ed25519 -N '' -f "$work/ca"

now_ns() { date +%s%N; }

# median_ms NAME SETUP COMMAND: runs SETUP (untimed) then COMMAND (timed) $runs times.
median_ms() {
  local name=$1 setup=$2 cmd=$3 t0 t1 i
  local -a samples=()
  for ((i = 0; i < runs; i++)); do
    eval "$setup"
    t0=$(now_ns)
    eval "$cmd" >/dev/null 2>&1
    t1=$(now_ns)
    samples+=($(((t1 - t0) / 1000)))
  done
  local median
  median=$(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  awk -v n="$name" -v us="$median" 'BEGIN { printf "%-58s %8.2f ms\n", n, us / 1000 }'
}

echo "median of $runs runs, whole process ($(uname -m), $(nproc) cores, $(ssh -V 2>&1 | cut -d, -f1))"
median_ms "sshbreak inspect CERT" ":" "'$bin' inspect '$work/cert-cert.pub'"
median_ms "ssh-keygen -L -f CERT" ":" "ssh-keygen -L -f '$work/cert-cert.pub'"
median_ms "sshbreak issue -n bench (soft token)" \
  "rm -f '$work/i' '$work/i.pub' '$work/i-cert.pub'" \
  "'$bin' issue -n bench -o '$work/i'"
median_ms "ssh-keygen -t ed25519 + ssh-keygen -s CA (manual pair)" \
  "rm -f '$work/m' '$work/m.pub' '$work/m-cert.pub'" \
  "ssh-keygen -q -t ed25519 -N '' -f '$work/m' && ssh-keygen -q -s '$work/ca' -I bench -n bench -V -5m:+10m -z 1 '$work/m.pub'"
