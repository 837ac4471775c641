#!/usr/bin/env bash
# Cost of ordinary traffic: legitimate new TCP connections per second to a
# real service on the server, and what the daemon pays for them.
#
# In two throw-away network namespaces joined by a veth pair, a service
# (knock-connect serve) accepts connections on a port that is no door's,
# and a client (knock-connect connect) opens and closes connections to it at
# a steady rate. Measured, as CPU of one core over the run:
#   1. our knockd, one door of 3 ports, as configured by default (scan
#      guard on: the filter passes every connection attempt, TCP SYN
#      without ACK and any UDP, so each connection's SYN reaches the
#      daemon), and with Scan_Threshold = 0 (the filter passes door ports
#      only, so the connections are dropped in the kernel)
#   2. knockd's capture path alone (knock-capture-cost: the same capture,
#      filter and decoder) with the door-port filter, and with the wider
#      filter that also passes every connection attempt (TCP SYN without ACK,
#      any UDP) as the scan guard needs
#
# Every packet stays inside the two namespaces; every run is bounded in
# connections and seconds; namespaces, processes and files go away on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

usage() {
  cat <<'EOF'
usage: bench/connections.sh [--rate N] [--seconds S] [--out FILE]

  --rate N      new connections per second (default 10000)
  --seconds S   length of each run (default 10, at most 60)
  --out FILE    where to write the Markdown table
                (default target/bench/connections.md)

Needs root (network namespaces, packet capture). Example:
  sudo bench/connections.sh      # about 40 seconds
EOF
}

rate=10000 secs=10 out=target/bench/connections.md
parse_options connections --rate=rate --seconds=secs --out=out -- "$@"
check_int connections --rate "$rate" 1 50000
check_int connections --seconds "$secs" 1 60
require_root connections

echo "== building (release)"
cargo build --release --quiet -p knockd -p knock-flood
bin=$(release_bin_dir)

srv=kconn-srv-$$ cli=kconn-cli-$$ sif=kcs$$ cif=kcc$$
srv_ip=10.252.0.1 cli_ip=10.252.0.2 service=8443
pids=()
stop_processes() { stop_pids "${pids[@]}"; }
lab_open conn
veth_pair_up
# A backlog for the bursts.
ip netns exec "$srv" sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
clk_tck=$(getconf CLK_TCK)
pct() { awk -v t="$1" -v hz="$clk_tck" -v s="$2" 'BEGIN {printf "%.2f", t / hz / s * 100}'; }

# Run the client for $secs seconds while PID runs; print "CPU% connected".
under_load() { # PID
  local p=$1 before after res
  sleep 0.5
  before=$(cpu_ticks "$p")
  res=$(ip netns exec "$cli" "$bin/knock-connect" connect --dst "$srv_ip" --port "$service" \
    --rate "$rate" --count $((rate * secs)) --seconds "$secs")
  after=$(cpu_ticks "$p")
  echo "$(pct $((after - before)) "$secs") $(sed -n 's/.*connected=\([0-9]*\).*rate=\([0-9]*\).*/\1 \2/p' <<<"$res")"
}

ip netns exec "$srv" "$bin/knock-connect" serve --port "$service" --seconds $((4 * secs + 30)) >"$work/serve.out" 2>&1 &
pids+=($!)

declare -A R
for guard in default off; do
  {
    echo "[options]"
    echo "    LogFile = $work/knockd.log"
    echo "[door]"
    echo "    Sequence = 7000,8000,9000"
    echo "    Command = true"
    [[ $guard == off ]] && echo "    Scan_Threshold = 0"
  } >"$work/knockd.conf"
  rm -f "$work/knockd.log"
  echo "== our knockd, scan guard $guard, $rate connections/s for $secs s"
  ip netns exec "$srv" "$bin/knockd" -i "$sif" -c "$work/knockd.conf" >"$work/knockd.out" 2>&1 &
  kpid=$!
  pids+=("$kpid")
  for _ in $(seq 100); do grep -qs "listening on" "$work/knockd.log" && break; sleep 0.1; done
  grep -qs "listening on" "$work/knockd.log" || { echo "connections: knockd did not start:" >&2; cat "$work/knockd.out" >&2; exit 1; }
  read -r cpu n r <<<"$(under_load "$kpid")"
  R[daemon_$guard]="$cpu % ($n connections, $r/s)"
  echo "   ${R[daemon_$guard]}"
  stop_pid "$kpid"
done

for mode in ports watch; do
  flag=()
  [[ $mode == watch ]] && flag=(--watch-attempts)
  echo "== capture path alone, filter: $mode, $rate connections/s for $secs s"
  ip netns exec "$srv" "$bin/knock-capture-cost" -i "$sif" --tcp-port 7000 --tcp-port 8000 --tcp-port 9000 \
    "${flag[@]}" --seconds $((secs + 2)) >"$work/cost.out" 2>&1 &
  cpid=$!
  pids+=("$cpid")
  read -r cpu n r <<<"$(under_load "$cpid")"
  wait "$cpid" || true
  R[$mode]="$cpu % ($n connections, $r/s; $(cat "$work/cost.out"))"
  echo "   ${R[$mode]}"
done

mkdir -p "$(dirname "$out")"
{
  echo "| $rate new TCP connections/s to a served port, $secs s | CPU of one core |"
  echo "|---|---|"
  echo "| our knockd, default (scan guard on: every connection attempt reaches it) | ${R[daemon_default]} |"
  echo "| our knockd, Scan_Threshold = 0 (door ports only) | ${R[daemon_off]} |"
  echo "| capture path alone, door ports only | ${R[ports]} |"
  echo "| capture path alone, every connection attempt | ${R[watch]} |"
} >"$out"
echo "== written to $out"
cat "$out"
