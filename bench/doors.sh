#!/usr/bin/env bash
# Scale benchmark: how the daemon copes with many doors, ours beside the
# classic /usr/sbin/knockd.
#
# In two throw-away network namespaces joined by a veth pair, for each
# number of doors N (each door 3 TCP ports, no two ports adjacent):
#   1. start: time from exec until a knock on the LAST door opens it
#      (the client knocks every 50 ms until the door's command has run)
#   2. SIGHUP: the configuration is rewritten with that door's ports moved;
#      time from the signal until a knock on the new ports opens it
#   3. peak RSS (VmHWM) after both
# then, for our daemon only, the CPU per packet under a bounded spoofed-SYN
# flood on one door's port with 1 door and with the largest N, at the same
# rate, and the filter each run installed (from the -D log).
#
# Every packet stays inside the two namespaces; floods are bounded in packets
# and seconds; namespaces, daemons and files go away on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

usage() {
  cat <<'EOF'
usage: bench/doors.sh [--doors "N N ..."] [--classic-max N] [--bound S]
                      [--flood-rate PPS] [--flood-seconds S] [--no-flood]
                      [--classic PATH] [--ours PATH] [--out FILE]

  --doors LIST       door counts to measure (default "1 300 1000")
  --classic-max N    measure the classic daemon only up to N doors
                     (default 300: with these doors it takes 12 s to start
                     at 300, and at 1000 it had not started after 120 s,
                     at 2 GiB of memory)
  --bound S          give up on one start or reload after S seconds (default 90)
  --flood-rate PPS   packets per second of the CPU-per-packet flood (default 20000)
  --flood-seconds S  length of each flood (default 10)
  --no-flood         skip the flood
  --classic PATH     the classic daemon (default /usr/sbin/knockd)
  --ours PATH        our daemon (default: the release build of this tree),
                     e.g. an older build to compare against
  --out FILE         where to write the Markdown table
                     (default target/bench/doors.md)

Needs root (network namespaces, packet capture). Example:
  sudo bench/doors.sh                       # about 2 minutes
  sudo bench/doors.sh --classic-max 1000 --bound 120   # adds 2 minutes of classic
EOF
}

doors_list="1 300 1000" classic_max=300 bound=90 flood_rate=20000 flood_s=10 flood=1
classic=/usr/sbin/knockd ours= out=target/bench/doors.md
parse_options doors --doors=doors_list --classic-max=classic_max --bound=bound \
  --flood-rate=flood_rate --flood-seconds=flood_s --no-flood=flood:0 \
  --classic=classic --ours=ours --out=out -- "$@"
check_int doors --classic-max "$classic_max" 0
check_int doors --bound "$bound" 0
# The flood is bounded in packets per second and seconds.
check_int doors --flood-rate "$flood_rate" 0 200000
check_int doors --flood-seconds "$flood_s" 0 60
for n in $doors_list; do check_int doors "a --doors count" "$n" 1 3000; done
require_root doors
[[ -x $classic ]] || { echo "doors: classic knockd not found at $classic (apt-get install knockd, or --classic PATH)" >&2; exit 1; }

echo "== building (release)"
cargo build --release --quiet -p knockd -p knock -p knock-flood
bin=$(release_bin_dir)
ours=${ours:-$bin/knockd}
[[ -x $ours ]] || { echo "doors: our daemon not found at $ours" >&2; exit 1; }

srv=kdoors-srv-$$ cli=kdoors-cli-$$ sif=kds$$ cif=kdc$$
srv_ip=10.251.0.1 cli_ip=10.251.0.2
pid= flood_pid=
stop_processes() { stop_pids "$flood_pid" "$pid"; }
lab_open doors
veth_pair_up
srv_mac=$(ip netns exec "$srv" cat "/sys/class/net/$sif/address")
# Resolve the server's MAC once, so the first knock is not held up by ARP.
ip netns exec "$cli" ping -c 1 -W 1 "$srv_ip" >/dev/null 2>&1 || true

# Door i: ports P, P+6, P+13 with P = 2000 + 20 i; the last door's ports
# are LAST (three ports); its command creates $work/MARK (a new name after
# a reload, so that a straggling knock of before cannot count).
write_conf() { # FILE N "LAST" MARK
  local file=$1 n=$2 last=$3 mark=$4 i p
  {
    echo "[options]"
    echo "    LogFile = $work/knockd.log"
    for ((i = 0; i < n - 1; i++)); do
      p=$((2000 + 20 * i))
      printf '[door%d]\n    Sequence = %d,%d,%d\n    Command = true\n' "$i" "$p" $((p + 6)) $((p + 13))
    done
    printf '[last]\n    Sequence = %s\n    Seq_Timeout = 5\n    Command = touch %s/%s\n' \
      "$(tr ' ' ',' <<<"$last")" "$work" "$mark"
  } >"$file"
}
last_ports() { # N -> the last door's ports
  local p=$((2000 + 20 * ($1 - 1)))
  echo "$p $((p + 6)) $((p + 13))"
}
moved_ports="40001 40011 40021"

now() { date +%s.%N; }
# Knock PORTS every 50 ms until $work/MARK exists; print the seconds since
# T0, or ">BOUND" when it gave up after the bound.
knock_until_open() { # T0 "PORTS" MARK
  local t0=$1 ports=$2 mark=$3
  while [[ ! -e $work/$mark ]]; do
    if awk -v t0="$t0" -v now="$(now)" -v b="$bound" 'BEGIN {exit !(now - t0 > b)}'; then
      echo ">$bound"; return
    fi
    # shellcheck disable=SC2086
    ip netns exec "$cli" "$bin/knock" "$srv_ip" $ports >/dev/null 2>&1 || true
    sleep 0.05
  done
  awk -v t0="$t0" -v now="$(now)" 'BEGIN {printf "%.2f", now - t0}'
}
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
clk_tck=$(getconf CLK_TCK)

declare -A R
measure() { # NAME PROGRAM N
  local name=$1 prog=$2 n=$3 t0 last
  last=$(last_ports "$n")
  write_conf "$work/doors.conf" "$n" "$last" opened
  rm -f "$work/opened" "$work/reloaded" "$work/knockd.log"
  local extra=()
  [[ $name == ours ]] && extra=(-D)
  t0=$(now)
  ip netns exec "$srv" "$prog" -i "$sif" -c "$work/doors.conf" "${extra[@]}" >"$work/out" 2>&1 &
  pid=$!
  R[$name,$n,start]=$(knock_until_open "$t0" "$last" opened)
  R[$name,$n,reload]=-
  if [[ ${R[$name,$n,start]} != ">"* ]]; then
    write_conf "$work/doors.conf" "$n" "$moved_ports" reloaded
    t0=$(now)
    kill -HUP "$pid"
    R[$name,$n,reload]=$(knock_until_open "$t0" "$moved_ports" reloaded)
  fi
  R[$name,$n,rss]=$(awk -v k="$(status_kb "$pid" VmHWM)" 'BEGIN {printf "%.1f MiB", k / 1024}')
  R[$name,$n,filter]=$( (grep -ho 'capture filter: [0-9]* instructions' "$work/knockd.log" "$work/out" 2>/dev/null || true) | tail -1 | awk '{print $3}')
  echo "   $name, $n doors: start ${R[$name,$n,start]} s, SIGHUP ${R[$name,$n,reload]} s, peak RSS ${R[$name,$n,rss]}${R[$name,$n,filter]:+, filter ${R[$name,$n,filter]} instructions}"
  stop_pid "$pid"; pid=
}

echo "== start-up and SIGHUP until a knock on the last door works"
for n in $doors_list; do
  measure ours "$ours" "$n"
  if [[ $n -le $classic_max ]]; then
    measure classic "$classic" "$n"
  fi
done

flood_cpu() { # N -> CPU seconds and packets of our daemon under the flood
  local n=$1 before after sent
  write_conf "$work/doors.conf" "$n" "$(last_ports "$n")" opened
  rm -f "$work/knockd.log"
  ip netns exec "$srv" "$ours" -i "$sif" -c "$work/doors.conf" >"$work/out" 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -qs "listening on" "$work/knockd.log" && break; sleep 0.1; done
  sleep 0.5
  before=$(cpu_ticks "$pid")
  ip netns exec "$cli" "$bin/knock-flood" -i "$cif" --dst-mac "$srv_mac" --dst "$srv_ip" --port 2000 \
    --sources 100000 --src-net 10.0.0.0/12 --count $((flood_rate * flood_s)) --seconds "$flood_s" \
    --pps "$flood_rate" >"$work/flood.out" 2>&1
  sleep 0.5
  after=$(cpu_ticks "$pid")
  sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$work/flood.out" | tail -1)
  stop_pid "$pid"; pid=
  awk -v t=$((after - before)) -v hz="$clk_tck" -v s="${sent:-0}" \
    'BEGIN {printf "%.2f %d %.2f", t / hz, s, (s > 0 ? t / hz / s * 1e6 : 0)}'
}
if [[ $flood -eq 1 ]]; then
  big=$(tr ' ' '\n' <<<"$doors_list" | sort -n | tail -1)
  echo "== flood: $flood_rate packets/s for $flood_s s on door 0's first port, 1 door vs $big doors"
  for n in 1 "$big"; do
    read -r cpu sent us <<<"$(flood_cpu "$n")"
    R[flood,$n]="$cpu s CPU for $sent packets ($us µs per packet)"
    R[flood_us,$n]=$us
    echo "   $n doors: ${R[flood,$n]}"
  done
  ratio=$(awk -v a="${R[flood_us,$big]}" -v b="${R[flood_us,1]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
  echo "   per-packet CPU, $big doors / 1 door: $ratio"
fi

mkdir -p "$(dirname "$out")"
{
  echo "| doors | ours: start | ours: SIGHUP | ours: peak RSS | filter (instructions) | classic: start | classic: SIGHUP | classic: peak RSS |"
  echo "|---|---|---|---|---|---|---|---|"
  for n in $doors_list; do
    c_start="not run" c_reload="not run" c_rss="not run"
    if [[ -n ${R[classic,$n,start]:-} ]]; then
      c_start="${R[classic,$n,start]} s" c_reload="${R[classic,$n,reload]} s" c_rss=${R[classic,$n,rss]}
    fi
    echo "| $n | ${R[ours,$n,start]} s | ${R[ours,$n,reload]} s | ${R[ours,$n,rss]} | ${R[ours,$n,filter]:-?} | $c_start | $c_reload | $c_rss |"
  done
  if [[ $flood -eq 1 ]]; then
    echo
    echo "Flood of $flood_rate spoofed SYN/s for $flood_s s on one door's port (ours):"
    echo "1 door: ${R[flood,1]}; $big doors: ${R[flood,$big]}; ratio $ratio."
  fi
} >"$out"
echo "== written to $out"
cat "$out"
